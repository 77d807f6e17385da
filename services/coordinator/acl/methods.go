package acl

import (
	"slices"
	"sort"
	"strings"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Rollouts tells which service a rollout belongs to (the FSM).
type Rollouts interface {
	// RolloutService returns the service of rollout id, false when unknown.
	RolloutService(id string) (string, bool)
}

// rule is what one method needs; service, when set, extracts the service
// the request concerns.
type rule struct {
	any     []Policy
	service func(req any, r Rollouts) string
	all     bool
	filter  func(req any) bool // true: answer filtered (a listing)
	open    bool               // any valid token
	public  bool               // no token
}

// The services whose methods are public (the standard health and
// reflection services) and the coordinators' internal service.
const (
	healthService    = "grpc.health.v1.Health"
	reflectionPrefix = "grpc.reflection."
	internalService  = "slipway.state.v1.InternalService"
	signalService    = "slipway.edge.v1.SignalService"
	heartbeatService = "slipway.cluster.v1.NodeHeartbeatService"
)

var (
	reads      = []Policy{Read, Deploy, Operate}
	deploys    = []Policy{Deploy}
	rollbacks  = []Policy{Deploy, Operate}
	operates   = []Policy{Operate}
	reads0     = []Policy{Read}
	adminsOnly = []Policy{Admin}
)

func rolloutOf(id string, r Rollouts) string {
	if r != nil {
		if s, ok := r.RolloutService(id); ok {
			return s
		}
	}
	return ServiceOfRolloutID(id)
}

// ServiceOfRolloutID is the service named by a rollout id ("web-3" is
// release 3 of web), for rollouts the state does not know (yet): the call
// is then authorised as if it were about that service.
func ServiceOfRolloutID(id string) string {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || i == len(id)-1 || strings.Trim(id[i+1:], "0123456789") != "" {
		return id
	}
	return id[:i]
}

func byRollout(get func(req any) string) func(any, Rollouts) string {
	return func(req any, r Rollouts) string { return rolloutOf(get(req), r) }
}

// rules maps every full method of the coordinator's public services to what
// it needs. A method missing here needs admin (default deny).
var rules = map[string]rule{
	deployv1.DeployService_Deploy_FullMethodName: {any: deploys, service: func(req any, _ Rollouts) string {
		return req.(*deployv1.DeployRequest).GetSpec().GetName()
	}},
	deployv1.DeployService_RollbackService_FullMethodName: {any: rollbacks, service: func(req any, _ Rollouts) string {
		return req.(*deployv1.RollbackServiceRequest).GetService()
	}},
	deployv1.DeployService_PromoteRollout_FullMethodName: {any: operates, service: byRollout(func(req any) string { return req.(*deployv1.PromoteRolloutRequest).GetId() })},
	deployv1.DeployService_PauseRollout_FullMethodName:   {any: operates, service: byRollout(func(req any) string { return req.(*deployv1.PauseRolloutRequest).GetId() })},
	deployv1.DeployService_ResumeRollout_FullMethodName:  {any: operates, service: byRollout(func(req any) string { return req.(*deployv1.ResumeRolloutRequest).GetId() })},
	deployv1.DeployService_AbortRollout_FullMethodName:   {any: operates, service: byRollout(func(req any) string { return req.(*deployv1.AbortRolloutRequest).GetId() })},
	deployv1.DeployService_GetRollout_FullMethodName:     {any: reads, service: byRollout(func(req any) string { return req.(*deployv1.GetRolloutRequest).GetId() })},
	deployv1.DeployService_WatchRollout_FullMethodName:   {any: reads, service: byRollout(func(req any) string { return req.(*deployv1.WatchRolloutRequest).GetId() })},
	deployv1.DeployService_WatchEvents_FullMethodName: {any: reads,
		service: func(req any, _ Rollouts) string { return req.(*deployv1.WatchEventsRequest).GetService() },
		filter:  func(req any) bool { return req.(*deployv1.WatchEventsRequest).GetService() == "" }},
	deployv1.DeployService_ListRollouts_FullMethodName: {any: reads,
		service: func(req any, _ Rollouts) string { return req.(*deployv1.ListRolloutsRequest).GetService() },
		filter:  func(req any) bool { return req.(*deployv1.ListRolloutsRequest).GetService() == "" }},
	deployv1.DeployService_GetService_FullMethodName: {any: reads, service: func(req any, _ Rollouts) string {
		return req.(*deployv1.GetServiceRequest).GetName()
	}},
	deployv1.DeployService_ListServices_FullMethodName: {any: reads, filter: func(any) bool { return true }},
	deployv1.DeployService_ListReleases_FullMethodName: {any: reads, service: func(req any, _ Rollouts) string {
		return req.(*deployv1.ListReleasesRequest).GetService()
	}},

	clusterv1.ClusterService_ListPeers_FullMethodName: {any: reads0},
	// Like Consul's /v1/status/leader: who leads is no secret, and tools
	// find the cluster with it before they hold a token.
	clusterv1.ClusterService_GetLeader_FullMethodName:          {public: true},
	clusterv1.ClusterService_ListNodes_FullMethodName:          {any: reads0},
	clusterv1.ClusterService_AddPeer_FullMethodName:            {any: adminsOnly},
	clusterv1.ClusterService_RemovePeer_FullMethodName:         {any: adminsOnly},
	clusterv1.ClusterService_TransferLeadership_FullMethodName: {any: adminsOnly},
	clusterv1.ClusterService_DrainNode_FullMethodName:          {any: operates, all: true},

	// Secrets: writes are admin's (a value mounted into any service's
	// instances is an admin matter); reads return names, versions and
	// digests only, to any reader of every service.
	deployv1.SecretService_CreateSecret_FullMethodName: {any: adminsOnly},
	deployv1.SecretService_UpdateSecret_FullMethodName: {any: adminsOnly},
	deployv1.SecretService_DeleteSecret_FullMethodName: {any: adminsOnly},
	deployv1.SecretService_RekeySecrets_FullMethodName: {any: adminsOnly},
	deployv1.SecretService_GetSecret_FullMethodName:    {any: reads, all: true},
	deployv1.SecretService_ListSecrets_FullMethodName:  {any: reads, all: true},

	aclv1.AclService_Bootstrap_FullMethodName:    {public: true},
	aclv1.AclService_WhoAmI_FullMethodName:       {open: true},
	aclv1.AclService_ListPolicies_FullMethodName: {open: true},
	aclv1.AclService_CreateToken_FullMethodName:  {any: adminsOnly},
	aclv1.AclService_ListTokens_FullMethodName:   {any: adminsOnly},
	aclv1.AclService_RevokeToken_FullMethodName:  {any: adminsOnly},
}

// Required returns what a call of fullMethod with req needs. Health,
// reflection, AclService.Bootstrap and ClusterService.GetLeader are public,
// InternalService is Internal, SignalService is Edge, NodeHeartbeatService is
// NodeAgent, and a method this
// package does not know needs admin. req is the request message (nil for a
// stream not yet read: the caller evaluates again once it arrives).
func Required(fullMethod string, req any, r Rollouts) Need {
	n := Need{Method: fullMethod}
	svc := serviceName(fullMethod)
	switch {
	case svc == healthService || strings.HasPrefix(svc, reflectionPrefix):
		n.Public = true
		return n
	case svc == internalService:
		n.Internal = true
		return n
	case svc == signalService:
		n.Edge = true
		return n
	case svc == heartbeatService:
		n.NodeAgent = true
		return n
	}
	ru, ok := rules[fullMethod]
	if !ok {
		n.Any = adminsOnly
		return n
	}
	n.Public = ru.public
	if ru.open {
		return n
	}
	n.Any, n.AllServices = ru.any, ru.all
	if req == nil {
		return n
	}
	if ru.filter != nil && ru.filter(req) {
		n.Filter = true
		return n
	}
	if ru.service != nil {
		n.Service = ru.service(req, r)
	}
	return n
}

// NeedsRequest reports whether the method's permission depends on its
// request (a stream must then be evaluated again on its first message).
func NeedsRequest(fullMethod string) bool {
	ru, ok := rules[fullMethod]
	return ok && (ru.service != nil || ru.filter != nil)
}

func serviceName(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// PolicyDoc describes one policy for people and for ListPolicies.
type PolicyDoc struct {
	// Policy is the policy.
	Policy Policy
	// Description says what it allows.
	Description string
	// Methods are the full methods it allows, sorted ("*" for admin).
	Methods []string
}

var descriptions = map[Policy]string{
	Deploy:  "Deploy, RollbackService and the reads (Get, List, Watch) of the services matching the token's globs",
	Operate: "promote, pause, resume, abort and rollback of the services matching the token's globs, the reads of those services, and DrainNode when a glob is \"*\"",
	Read:    "every read of the deploy and cluster APIs (rollouts, services, releases and audit, peers, nodes, the names and versions of secrets)",
	Admin:   "everything: peers (add, remove, transfer leadership), tokens (create, list, revoke), secrets and configs (create, update, delete, rekey) and all the other policies",
}

// Describe lists every policy with the methods it allows, derived from the
// same table Required uses.
func Describe() []PolicyDoc {
	out := make([]PolicyDoc, 0, len(Policies))
	for _, p := range Policies {
		d := PolicyDoc{Policy: p, Description: descriptions[p]}
		if p == Admin {
			d.Methods = []string{"*"}
		} else {
			for m, ru := range rules {
				if slices.Contains(ru.any, p) {
					d.Methods = append(d.Methods, m)
				}
			}
			sort.Strings(d.Methods)
		}
		out = append(out, d)
	}
	return out
}
