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
	"time"

	"slipway.dev/edge/internal/h1server"
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
	// Limits are the client limits as nginx directives' values.
	Limits LimitsData
}

// LimitsData holds the edge's client limits (h1server.Limits, the flags
// both modes share) as nginx directive values; an empty value leaves the
// directive out (nginx's default).
type LimitsData struct {
	ReadHeaderTimeout, ReadBodyTimeout, IdleTimeout, WriteTimeout string
	// MaxBodyBytes is client_max_body_size (0: unlimited).
	MaxBodyBytes string
	// HeaderBuffer is the size of large_client_header_buffers (4 of them):
	// a request line or field longer than it is refused.
	HeaderBuffer string
	// PerClient is limit_conn per client address (0: none).
	PerClient int
}

// NginxLimits renders l (defaults filled in) for the template. Header count
// and the connection cap have no nginx directive; worker_connections
// bounds connections per worker instead.
func NginxLimits(l h1server.Limits) LimitsData {
	l = l.WithDefaults()
	ms := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms"
	}
	d := LimitsData{ReadHeaderTimeout: ms(l.ReadHeaderTimeout), ReadBodyTimeout: ms(l.ReadBodyTimeout),
		IdleTimeout: ms(l.IdleTimeout), WriteTimeout: ms(l.WriteTimeout), MaxBodyBytes: "0"}
	if l.MaxBodyBytes > 0 {
		d.MaxBodyBytes = strconv.FormatInt(l.MaxBodyBytes, 10)
	}
	if l.MaxHeaderBytes > 0 {
		d.HeaderBuffer = strconv.FormatInt(int64(max(l.MaxHeaderBytes, 1024)), 10)
	}
	if l.MaxRequestsPerClient > 0 {
		d.PerClient = l.MaxRequestsPerClient
	}
	return d
}

// Render renders nginx.conf.
func Render(d ConfigData) ([]byte, error) {
	for _, h := range d.Hosts {
		if d := specrules.RouteHost(h); d != "" {
			return nil, fmt.Errorf("nginx: render: host %q: %s", h, d)
		}
	}
	if d.Limits == (LimitsData{}) {
		d.Limits = NginxLimits(h1server.Limits{})
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
//	S <cookie> <max-age seconds>        (a sticky route)
//
// in a deterministic order.
func Encode(generation uint64, t routetable.Table) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "G\t%d\n", generation)
	for _, svc := range t.Services() {
		r := t.Routes[svc]
		fmt.Fprintf(&b, "R\t%s\t%s\t%s\n", r.Service, r.Host, r.Path)
		if st := r.Sticky; st != nil {
			fmt.Fprintf(&b, "S\t%s\t%d\n", st.Cookie, st.MaxAge)
		}
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
