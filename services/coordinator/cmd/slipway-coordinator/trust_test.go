package main_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// TestTrustRefusesOutsiders runs three real coordinators on mutual TLS and
// tries every way in that an outsider on the network has: plaintext, a
// certificate from another CA, an expired certificate, a client certificate
// calling the coordinators' internal RPCs, and forged raft AppendEntries
// with no certificate or a non-coordinator one. Nothing gets in, and the
// leader, term and membership are what they were. It also rotates a
// coordinator's certificate on disk and sees it served without a restart.
func TestTrustRefusesOutsiders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three coordinator processes")
	}
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := c.WaitLeader(wctx, []int{0, 1, 2})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	boot, err := aclv1.NewAclServiceClient(c.Conn(leader)).Bootstrap(ctx, &aclv1.BootstrapRequest{})
	if err != nil {
		t.Fatalf("acl bootstrap: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+boot.GetSecret())
	peers := func(i int) *clusterv1.ListPeersResponse {
		t.Helper()
		resp, err := clusterv1.NewClusterServiceClient(c.Conn(i)).ListPeers(authed, &clusterv1.ListPeersRequest{})
		if err != nil {
			t.Fatalf("list peers on %s: %v", c.Procs[i].ID, err)
		}
		return resp
	}
	before := peers(follower)

	call := func(conn *grpc.ClientConn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := clusterv1.NewClusterServiceClient(conn).GetLeader(cctx, &clusterv1.GetLeaderRequest{})
		return err
	}
	dialRaw := func(t *testing.T, tc credentials.TransportCredentials) *grpc.ClientConn {
		conn, err := grpc.NewClient(c.Procs[follower].GRPCAddr, grpc.WithTransportCredentials(tc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	t.Run("plaintext client", func(t *testing.T) {
		if err := call(dialRaw(t, insecure.NewCredentials())); status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable (no TLS, no answer)", err)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		other := testenv.NewPKI(t).Creds(t, pki.RoleCoordinator, "c0")
		conn, err := rpc.Dial(c.Procs[follower].GRPCAddr, other, rpc.Expect{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := call(conn); err == nil {
			t.Fatal("a coordinator certificate from another CA was served")
		}
	})
	t.Run("expired certificate", func(t *testing.T) {
		files, err := c.PKI.IssueFiles(pki.RoleClient, "expired", func(o *pki.CertOptions) { o.Days = -1 })
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		tc := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err := call(dialRaw(t, tc)); err == nil {
			t.Fatal("an expired client certificate was served")
		}
	})
	t.Run("client certificate calling Join", func(t *testing.T) {
		_, err := statev1.NewInternalServiceClient(c.Conn(follower)).Join(authed, &statev1.JoinRequest{Peer: &statev1.PeerAddress{
			Id: "intruder", RaftAddress: "127.0.0.1:1", GrpcAddress: "127.0.0.1:2"}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Join with a client certificate: got %v, want PermissionDenied", err)
		}
	})
	t.Run("forged AppendEntries", func(t *testing.T) {
		forged := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
			Term:      before.GetTerm() + 100, Leader: []byte("127.0.0.1:1"),
			PrevLogEntry: before.GetCommitIndex(), PrevLogTerm: before.GetTerm(),
			Entries:           []*raft.Log{{Index: before.GetCommitIndex() + 1, Term: before.GetTerm() + 100, Type: raft.LogCommand, Data: []byte("x")}},
			LeaderCommitIndex: before.GetCommitIndex() + 1,
		}
		target := raft.ServerAddress(c.Procs[follower].RaftAddr)
		logger := hclog.NewNullLogger()
		plain, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, 2*time.Second, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		var resp raft.AppendEntriesResponse
		if err := plain.AppendEntries("c0", target, forged, &resp); err == nil {
			t.Errorf("AppendEntries over plain TCP was answered: %+v", resp)
		}
		for _, role := range []pki.Role{pki.RoleEdge, pki.RoleClient, pki.RoleNodeAgent} {
			creds := c.PKI.Files(t, role, "intruder")
			cr, err := rpc.NewCreds(creds.Security(), nil)
			if err != nil {
				t.Fatal(err)
			}
			// A dialler that accepts any server: the check under test is the
			// coordinator's, on the accepting side.
			sl, err := rpc.NewStreamLayer("127.0.0.1:0", nil, cr, role)
			if err != nil {
				t.Fatal(err)
			}
			tr := raft.NewNetworkTransportWithLogger(anyServer{sl, cr}, 1, 2*time.Second, logger)
			if err := tr.AppendEntries("c0", target, forged, &resp); err == nil {
				t.Errorf("AppendEntries with a %s certificate was answered: %+v", role, resp)
			}
			tr.Close()
		}
	})

	t.Run("rotation without restart", func(t *testing.T) {
		serial := func() string {
			conn, err := rpc.Dial(c.Procs[follower].GRPCAddr, c.Client, rpc.ExpectRole(pki.RoleCoordinator))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var p peer.Peer
			if _, err := clusterv1.NewClusterServiceClient(conn).GetLeader(ctx, &clusterv1.GetLeaderRequest{}, grpc.Peer(&p)); err != nil {
				t.Fatal(err)
			}
			return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
		}
		old := serial()
		if _, err := c.PKI.IssueFiles(pki.RoleCoordinator, c.Procs[follower].ID); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, "the rotated certificate served", func() error {
			if s := serial(); s == old {
				return errorString("still the old certificate " + s)
			}
			return nil
		})
	})

	// Nothing changed: the same leader, term and three members everywhere.
	for _, i := range []int{0, 1, 2} {
		after := peers(i)
		if after.GetLeaderId() != before.GetLeaderId() || after.GetTerm() != before.GetTerm() || len(after.GetPeers()) != 3 {
			t.Errorf("%s after the attempts: leader %s term %d peers %d; before: leader %s term %d peers 3",
				c.Procs[i].ID, after.GetLeaderId(), after.GetTerm(), len(after.GetPeers()), before.GetLeaderId(), before.GetTerm())
		}
	}
}

// anyServer is a raft stream layer that dials with creds and accepts any
// server certificate.
type anyServer struct {
	*rpc.StreamLayer
	creds *rpc.Creds
}

func (s anyServer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := s.creds.ClientTLS(rpc.Expect{})
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

type errorString string

func (e errorString) Error() string { return string(e) }
