package rpc_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
)

const restricted = "test.v1.CoordinatorOnly"

// serve starts a TLS server whose test.v1.CoordinatorOnly service (a copy of
// the health service) only coordinators may call.
func serve(t *testing.T, creds *rpc.Creds) string {
	t.Helper()
	srv := rpc.NewServer(rpc.ServerConfig{Name: "test", Creds: creds, Access: map[string][]pki.Role{restricted: {pki.RoleCoordinator}}})
	for _, name := range []string{restricted, "test.v1.Unlisted"} {
		srv.RegisterService(checkService(name), struct{}{})
	}
	lis, err := rpc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return lis.Addr().String()
}

// checkService is a service named name with one method, Check, that answers
// an empty health response.
func checkService(name string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Check", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(healthpb.HealthCheckRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &healthpb.HealthCheckResponse{}, nil }
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/" + name + "/Check"}, h)
		}}},
	}
}

func call(t *testing.T, addr string, creds *rpc.Creds, want rpc.Expect, service string) (*peer.Peer, error) {
	t.Helper()
	conn, err := rpc.Dial(addr, creds, want)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return invoke(conn, service)
}

func invoke(conn *grpc.ClientConn, service string) (*peer.Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	err := conn.Invoke(ctx, "/"+service+"/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.Peer(&p))
	return &p, err
}

func TestRoleCheckPerService(t *testing.T) {
	p := testenv.NewPKI(t)
	addr := serve(t, p.Creds(t, pki.RoleCoordinator, "c1"))
	any := rpc.Expect{}

	if _, err := call(t, addr, p.Creds(t, pki.RoleCoordinator, "c2"), any, restricted); err != nil {
		t.Fatalf("coordinator calling a coordinator-only service: %v", err)
	}
	_, err := call(t, addr, p.Creds(t, pki.RoleEdge, "e1"), any, restricted)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "role edge") {
		t.Fatalf("edge calling a coordinator-only service: got %v, want PermissionDenied naming the role", err)
	}
	if _, err := call(t, addr, p.Creds(t, pki.RoleEdge, "e1"), any, "grpc.health.v1.Health"); err != nil {
		t.Fatalf("edge calling health: %v", err)
	}
	_, err = call(t, addr, p.Creds(t, pki.RoleCoordinator, "c2"), any, "test.v1.Unlisted")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a service missing from Access: got %v, want PermissionDenied (default deny)", err)
	}
	// A scraper's certificate reads /metrics and nothing else: not even the
	// services open to every other role.
	_, err = call(t, addr, p.Creds(t, pki.RoleMetrics, "prometheus"), any, "grpc.health.v1.Health")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "role metrics") {
		t.Fatalf("metrics role calling health: got %v, want PermissionDenied naming the role", err)
	}
}

func TestRefusedPeers(t *testing.T) {
	p := testenv.NewPKI(t)
	addr := serve(t, p.Creds(t, pki.RoleCoordinator, "c1"))

	t.Run("plaintext client", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := invoke(conn, "grpc.health.v1.Health"); status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable (no TLS handshake)", err)
		}
	})
	t.Run("TLS client without a certificate", func(t *testing.T) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := invoke(conn, "grpc.health.v1.Health"); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other := testenv.NewPKI(t)
		if _, err := call(t, addr, other.Creds(t, pki.RoleCoordinator, "c9"), rpc.Expect{}, "grpc.health.v1.Health"); err == nil {
			t.Fatal("a certificate from another CA was served")
		}
	})
	t.Run("expired certificate", func(t *testing.T) {
		files := p.Issue(t, pki.RoleCoordinator, "old", func(o *pki.CertOptions) { o.Days = -1 })
		if _, err := rpc.NewCreds(files.Security(), nil); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("loading an expired certificate: got %v, want an error saying it expired", err)
		}
	})
	t.Run("server with the wrong identity", func(t *testing.T) {
		_, err := call(t, addr, p.Creds(t, pki.RoleCoordinator, "c2"), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: "node-1"}, "grpc.health.v1.Health")
		if err == nil || !strings.Contains(err.Error(), "want nodeagent") {
			t.Fatalf("dialling node-1 but reaching a coordinator: got %v, want the role named", err)
		}
	})
}

func TestCertificateRotationWithoutRestart(t *testing.T) {
	p := testenv.NewPKI(t)
	files := p.Issue(t, pki.RoleCoordinator, "c1")
	creds, err := rpc.NewCreds(files.Security(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, creds)
	client := p.Creds(t, pki.RoleClient, "alice")
	serial := func() string {
		pr, err := call(t, addr, client, rpc.ExpectRole(pki.RoleCoordinator), "grpc.health.v1.Health")
		if err != nil {
			t.Fatal(err)
		}
		return pr.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	p.Issue(t, pki.RoleCoordinator, "c1") // rewrites the same files
	testenv.Eventually(t, 5*time.Second, "a new connection sees the rotated certificate", func() error {
		if s := serial(); s == before {
			return errString("still serving serial " + s)
		}
		return nil
	})
}

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		s    rpc.Security
		want string
	}{
		{rpc.Security{}, "-insecure"},
		{rpc.Security{CAFile: "ca.pem"}, "missing -tls-cert, -tls-key"},
		{rpc.Security{Insecure: true, CertFile: "x"}, "exclusive"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error containing %q", tc.s, err, tc.want)
		}
	}
	if err := (rpc.Security{Insecure: true}).Validate(); err != nil {
		t.Errorf("-insecure alone: %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
