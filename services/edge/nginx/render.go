// Package nginx runs nginx as the edge's data plane: routes are posted at
// run time into a lua_shared_dict read by balancer_by_lua, and the config is
// re-rendered and reloaded only when the set of hosts or listeners changes.
package nginx

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"slipway.dev/edge/routetable"
	"slipway.dev/platform/specrules"
)

//go:embed nginx.conf.tmpl
var confTemplate string

//go:embed slipway.lua
var luaModule []byte

var tmpl = template.Must(template.New("nginx.conf").Parse(confTemplate))

// ConfigData is what the nginx.conf template is rendered from.
type ConfigData struct {
	// Version increases with every rendered config; /config on the control
	// endpoint returns it, which is how a reload is verified.
	Version uint64
	// Dir is nginx's prefix directory (absolute).
	Dir string
	// User is the worker user; empty keeps nginx's default.
	User string
	// Workers is worker_processes.
	Workers int
	// Listen is the client listener (host:port or port).
	Listen string
	// ControlAddr is the loopback control endpoint.
	ControlAddr string
	// Hosts are the server names, sorted.
	Hosts []string
	// WorkerShutdownTimeout bounds how long old workers live after a reload.
	WorkerShutdownTimeout string
	// AccessLog writes logs/access.log.
	AccessLog bool
}

// Render renders nginx.conf.
func Render(d ConfigData) ([]byte, error) {
	for _, h := range d.Hosts {
		if d := specrules.RouteHost(h); d != "" {
			return nil, fmt.Errorf("nginx: render: host %q: %s", h, d)
		}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("nginx: render: %w", err)
	}
	return b.Bytes(), nil
}

// Encode serialises a table for the Lua module: tab-separated lines
//
//	G <generation>
//	R <service> <host> <path>
//	B <release> <weight> <host:port host:port ...>
//	P header|cookie <name> <value> <release>
//
// in a deterministic order.
func Encode(generation uint64, t routetable.Table) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "G\t%d\n", generation)
	for _, svc := range t.Services() {
		r := t.Routes[svc]
		fmt.Fprintf(&b, "R\t%s\t%s\t%s\n", r.Service, r.Host, r.Path)
		for _, be := range r.Backends {
			addrs := make([]string, 0, len(be.Upstreams))
			for _, u := range be.Upstreams {
				addrs = append(addrs, u.Address)
			}
			fmt.Fprintf(&b, "B\t%d\t%d\t%s\n", be.Release, be.Weight, strings.Join(addrs, " "))
		}
		for _, p := range r.Pins {
			kind := "header"
			if p.Kind == routetable.PinCookie {
				kind = "cookie"
			}
			fmt.Fprintf(&b, "P\t%s\t%s\t%s\t%s\n", kind, p.Name, p.Value, strconv.FormatUint(p.Release, 10))
		}
	}
	return b.Bytes()
}

func sameHosts(a, b []string) bool { return slices.Equal(a, b) }
