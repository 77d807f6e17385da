package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"slipway.dev/platform/pki"
	"slipway.dev/slipctl/exitcode"
)

const tlsEnvHelp = `  SLIPWAY_TLS_CA, SLIPWAY_TLS_CERT, SLIPWAY_TLS_KEY
                 the CA, client certificate and key for mutual TLS; --tls-* override them
  SLIPWAY_INSECURE=1
                 plaintext, for a coordinator started with -insecure
`

const tlsExamples = `  slipctl tls ca create --dir tls
  slipctl tls cert create --dir tls --role coordinator --name c1
  slipctl tls cert create --dir tls --role client --name alice
  export SLIPWAY_TLS_CA=tls/ca.pem SLIPWAY_TLS_CERT=tls/client-alice.pem SLIPWAY_TLS_KEY=tls/client-alice-key.pem`

// addTLSGlobals adds --tls-ca, --tls-cert, --tls-key and --insecure, with
// their SLIPWAY_TLS_* / SLIPWAY_INSECURE defaults.
func addTLSGlobals(fs *pflag.FlagSet, g *globals, env Env) {
	for _, e := range []struct {
		dst *string
		env string
	}{{&g.sec.CAFile, "SLIPWAY_TLS_CA"}, {&g.sec.CertFile, "SLIPWAY_TLS_CERT"}, {&g.sec.KeyFile, "SLIPWAY_TLS_KEY"}} {
		if *e.dst == "" {
			*e.dst = env.Getenv(e.env)
		}
	}
	if v, err := strconv.ParseBool(env.Getenv("SLIPWAY_INSECURE")); err == nil && v {
		g.sec.Insecure = true
	}
	fs.StringVar(&g.sec.CAFile, "tls-ca", g.sec.CAFile, "PEM `file` of the Slipway CA (env SLIPWAY_TLS_CA)")
	fs.StringVar(&g.sec.CertFile, "tls-cert", g.sec.CertFile, "PEM `file` of your client certificate (env SLIPWAY_TLS_CERT)")
	fs.StringVar(&g.sec.KeyFile, "tls-key", g.sec.KeyFile, "PEM `file` of your client key (env SLIPWAY_TLS_KEY)")
	fs.BoolVar(&g.sec.Insecure, "insecure", g.sec.Insecure, "plaintext, for a coordinator started with -insecure (env SLIPWAY_INSECURE)")
}

// tlsHint turns the TLS flag errors into slipctl's names.
func tlsHint(err error) error {
	msg := strings.NewReplacer("-tls-", "--tls-", "-insecure", "--insecure").Replace(err.Error())
	if strings.Contains(msg, "no TLS material") {
		msg = "no TLS material: set --tls-ca, --tls-cert and --tls-key (or SLIPWAY_TLS_CA, SLIPWAY_TLS_CERT, SLIPWAY_TLS_KEY) to a client certificate from 'slipctl tls cert create --role client', or --insecure for a coordinator started with -insecure"
	}
	return errors.New(msg)
}

// tlsOpts are the flags of the tls commands.
type tlsOpts struct {
	dir, ca, caKey, role, name, cn string
	dns, ips                       string
	days                           int
	force                          bool
}

func tlsCmd() *command {
	return &command{
		name: "tls", summary: "make the CA and the certificates every link uses",
		help: `Slipway authenticates every link with mutual TLS. One CA signs a
certificate per component; each certificate names its holder's role and name
in a URI SAN, spiffe://slipway/<role>/<name>, and peers authorise by it:
node agents take orders only from coordinators, raft accepts only
coordinators, the API serves clients and coordinators, and every
component's -metrics-addr serves any certificate from the CA (a scraper's
is role metrics, which no gRPC service accepts).

Keys are ECDSA P-256. Files are written as PEM, keys with mode 0600.
Nothing here talks to a coordinator.`,
		examples: tlsExamples,
		subs: []*command{
			{name: "ca", summary: "the certificate authority",
				help: "Create the CA that signs every Slipway certificate.", examples: tlsExamples,
				subs: []*command{{name: "create", summary: "create ca.pem and ca-key.pem", maxArgs: 0,
					help: `Create a new CA: <dir>/ca.pem (give it to every component as -tls-ca) and
<dir>/ca-key.pem (keep it offline; it signs certificates). Refuses to
overwrite an existing CA unless --force.`,
					examples: "  slipctl tls ca create --dir /etc/slipway/tls --days 1825",
					flags: func(fs *pflag.FlagSet, o *opts) {
						fs.StringVar(&o.tls.dir, "dir", ".", "`directory` to write into")
						fs.IntVar(&o.tls.days, "days", pki.DefaultCADays, "lifetime in days")
						fs.StringVar(&o.tls.cn, "common-name", "Slipway CA", "the CA's subject common name")
						fs.BoolVar(&o.tls.force, "force", false, "overwrite existing files")
					},
					run: runCACreate}},
			},
			{name: "cert", summary: "component and client certificates",
				help: "Create certificates signed by the CA.", examples: tlsExamples,
				subs: []*command{{name: "create", summary: "create <role>-<name>.pem and its key", maxArgs: 0,
					help: `Create a certificate for one component or person, signed by the CA:
<dir>/<role>-<name>.pem and <dir>/<role>-<name>-key.pem.

Roles: coordinator (one per coordinator; name = its -id), nodeagent (name =
the agent's -node-id: the coordinator only talks to the agent its
certificate names), edge (name = its -id), client (slipctl, CI, grpcurl),
metrics (a Prometheus scraping the components' -metrics-addr over HTTPS;
accepted by no gRPC service).

localhost, 127.0.0.1 and ::1 are always in the certificate; add the host
names and addresses tools such as grpcurl will dial with --dns and --ip
(Slipway's own components authorise by the role SAN, not by host name).`,
					examples: `  slipctl tls cert create --role coordinator --name c1 --dns coord-1.internal --ip 10.0.0.11
  slipctl tls cert create --role nodeagent --name node-a
  slipctl tls cert create --role client --name ci --days 90
  slipctl tls cert create --role metrics --name prometheus`,
					flags: func(fs *pflag.FlagSet, o *opts) {
						fs.StringVar(&o.tls.dir, "dir", ".", "`directory` to write into")
						fs.StringVar(&o.tls.ca, "ca", "", "CA certificate `file` (default <dir>/ca.pem)")
						fs.StringVar(&o.tls.caKey, "ca-key", "", "CA key `file` (default <dir>/ca-key.pem)")
						fs.StringVar(&o.tls.role, "role", "", "coordinator, nodeagent, edge, client or metrics (required)")
						fs.StringVar(&o.tls.name, "name", "", "the holder's name: coordinator id, node id, edge id, person or scraper (required)")
						fs.StringVar(&o.tls.dns, "dns", "", "extra DNS `names`, comma-separated")
						fs.StringVar(&o.tls.ips, "ip", "", "extra IP `addresses`, comma-separated")
						fs.IntVar(&o.tls.days, "days", pki.DefaultCertDays, "lifetime in days (capped at the CA's)")
						fs.BoolVar(&o.tls.force, "force", false, "overwrite existing files (rotation: running components reload them)")
					},
					run: runCertCreate}},
			},
		},
	}
}

func runCACreate(_ context.Context, a *app, o *opts, _ []string) error {
	if o.tls.days <= 0 {
		return exitcode.Usagef("tls ca create: --days must be positive, got %d", o.tls.days)
	}
	certPEM, keyPEM, err := pki.CreateCA(pki.CAOptions{CommonName: o.tls.cn, Days: o.tls.days})
	if err != nil {
		return err
	}
	cert, key, err := pki.WritePair(o.tls.dir, "ca", certPEM, keyPEM, o.tls.force)
	if err != nil {
		return exitcode.Usagef("tls ca create: %v", err)
	}
	fmt.Fprintf(a.env.Stdout, "CA certificate: %s\nCA key:         %s (keep it offline; it signs every certificate)\n", cert, key)
	return nil
}

func runCertCreate(_ context.Context, a *app, o *opts, _ []string) error {
	t := o.tls
	var problems []string
	role, err := pki.ParseRole(t.role)
	if t.role == "" {
		problems = append(problems, "--role is required (coordinator, nodeagent, edge, client or metrics)")
	} else if err != nil {
		problems = append(problems, "--role: "+strings.TrimPrefix(err.Error(), "pki: "))
	}
	id := pki.Identity{Role: role, Name: t.name}
	if t.name == "" {
		problems = append(problems, "--name is required")
	} else if err := (pki.Identity{Role: pki.RoleClient, Name: t.name}).Validate(); err != nil {
		problems = append(problems, "--name: "+strings.TrimPrefix(err.Error(), "pki: "))
	}
	var ips []net.IP
	for _, s := range splitList(t.ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			problems = append(problems, fmt.Sprintf("--ip: %q is not an IP address", s))
			continue
		}
		ips = append(ips, ip)
	}
	if t.days == 0 || t.days < 0 {
		problems = append(problems, fmt.Sprintf("--days must be positive, got %d", t.days))
	}
	if len(problems) > 0 {
		return exitcode.Usagef("tls cert create: %s", strings.Join(problems, "; "))
	}
	caFile, keyFile := t.ca, t.caKey
	if caFile == "" {
		caFile = filepath.Join(t.dir, "ca.pem")
	}
	if keyFile == "" {
		keyFile = filepath.Join(t.dir, "ca-key.pem")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return exitcode.Usagef("tls cert create: CA certificate: %v (create one with 'slipctl tls ca create', or pass --ca)", err)
	}
	caKey, err := os.ReadFile(keyFile)
	if err != nil {
		return exitcode.Usagef("tls cert create: CA key: %v (pass --ca-key)", err)
	}
	ca, err := pki.LoadCA(caPEM, caKey)
	if err != nil {
		return exitcode.Usagef("tls cert create: %v", err)
	}
	certPEM, keyPEM, err := ca.CreateCert(pki.CertOptions{Identity: id, DNS: splitList(t.dns), IPs: ips, Days: t.days})
	if err != nil {
		return exitcode.Usagef("tls cert create: %v", err)
	}
	cert, key, err := pki.WritePair(t.dir, string(role)+"-"+t.name, certPEM, keyPEM, t.force)
	if err != nil {
		return exitcode.Usagef("tls cert create: %v", err)
	}
	fmt.Fprintf(a.env.Stdout, "Certificate: %s (%s)\nKey:         %s\n", cert, id, key)
	fmt.Fprintf(a.env.Stdout, "Use:         -tls-ca %s -tls-cert %s -tls-key %s\n", caFile, cert, key)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
