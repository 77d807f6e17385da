// Package catalog is the naming contract between Slipway's components and
// Consul: how instances are registered, where traffic intent and edge
// acknowledgements live in the KV store.
package catalog

import (
	"fmt"
	"strconv"
	"strings"
)

const (
	// Tag marks every Consul service instance that Slipway manages.
	Tag = "slipway"
	// ReleaseTagPrefix prefixes the release tag, e.g. "release=3".
	ReleaseTagPrefix = "release="
	// TrackTagPrefix prefixes the track tag, e.g. "track=canary".
	TrackTagPrefix = "track="

	// MetaRelease, MetaTrack, MetaAllocation and MetaNode are the service
	// meta keys of a managed instance.
	MetaRelease    = "slipway_release"
	MetaTrack      = "slipway_track"
	MetaAllocation = "slipway_alloc"
	MetaNode       = "slipway_node"
	// MetaPortPrefix prefixes the service meta key of a named port of a
	// managed instance: port_<name> holds its host port.
	MetaPortPrefix = "port_"

	// AgentService is the Consul service each node agent registers itself
	// as; the coordinator discovers nodes from it.
	AgentService = "slipway-nodeagent"
	// MetaNodeID, MetaCPU, MetaMemory and MetaDriver are the agent's meta
	// keys; labels are "label_<key>".
	MetaNodeID      = "node_id"
	MetaCPU         = "cpu_mhz"
	MetaMemory      = "memory_mb"
	MetaDriver      = "driver"
	MetaLabelPrefix = "label_"
	// MetaBoot is the agent's boot id: random per agent process, so a
	// leader sees an agent that restarted (and lost the secret values it
	// holds in memory only) and sends it its whole desired set at once.
	MetaBoot = "boot_id"

	// RoutesPrefix is the KV prefix of traffic intents, one key per service
	// holding a protojson slipway.edge.v1.TrafficIntent.
	RoutesPrefix = "slipway/routes/"
	// EdgesPrefix is the KV prefix of edge acknowledgements (the route
	// barrier), one session-bound key per edge holding a protojson
	// slipway.edge.v1.EdgeAck.
	EdgesPrefix = "slipway/edges/"
	// FencesPrefix is the KV prefix of the nodes the coordinators' leader
	// fences, one key per node id (its value says since when and why, for
	// people): the edges route none of the instances such a node still
	// registers (service meta MetaNode). The leader fences a node it lost
	// (its stream silent past the heartbeat TTL, or its Consul check gone
	// past the grace) once its allocations are replaced elsewhere, and
	// lifts the fence once the node is back and runs nothing it no longer
	// owns.
	FencesPrefix = "slipway/fences/"
)

// FenceKey is the KV key of a node's fence.
func FenceKey(node string) string { return FencesPrefix + node }

// ReleaseTag returns the release tag for release n.
func ReleaseTag(n uint64) string { return ReleaseTagPrefix + strconv.FormatUint(n, 10) }

// TrackTag returns the track tag for a track.
func TrackTag(track string) string { return TrackTagPrefix + track }

// RouteKey is the KV key of a service's traffic intent.
func RouteKey(service string) string { return RoutesPrefix + service }

// EdgeKey is the KV key of an edge's acknowledgement.
func EdgeKey(edgeID string) string { return EdgesPrefix + edgeID }

// AgentServiceID is the Consul service id of a node's agent.
func AgentServiceID(nodeID string) string { return AgentService + "-" + nodeID }

// ReleaseFromTags finds the release number in an instance's tags.
func ReleaseFromTags(tags []string) (uint64, error) {
	for _, t := range tags {
		if s, ok := strings.CutPrefix(t, ReleaseTagPrefix); ok {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("catalog: bad release tag %q: %w", t, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("catalog: no %q tag in %v", ReleaseTagPrefix, tags)
}
