// Package grpcapi serves the coordinator's gRPC services (DeployService,
// ClusterService, AclService and the private InternalService) over the
// replicated state, with the token checks (UnaryACL, StreamACL):
// writes go through raft on the leader (followers forward them), reads are
// local unless the caller asks for a leader-verified read.
package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/acl"
	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/secretstore"
	"slipway.dev/coordinator/signals"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// Raft is what the API needs from the consensus layer (*raftnode.Node).
type Raft interface {
	ID() string
	Addr() string
	HadState() bool
	BootIndex() uint64
	AppliedIndex() uint64
	CaughtUp() bool
	IsLeader() bool
	Leader() (id, addr string)
	Apply(ctx context.Context, cmd *statev1.Command) (any, error)
	VerifyLeader(ctx context.Context) error
	AddServer(ctx context.Context, s raftnode.Server) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	Status() (raftnode.Status, error)
}

// Interface guards.
var _ Raft = (*raftnode.Node)(nil)

// forwardedKey marks a request a follower forwarded, so that a node that
// lost leadership meanwhile answers UNAVAILABLE instead of forwarding again.
const forwardedKey = "x-slipway-forwarded"

// registerRetry is the least time between a follower's attempts to register
// its addresses with the leader.
const registerRetry = 2 * time.Second

// leaderWait is how long a follower waits for a leader (and its gRPC
// address) to be known before answering UNAVAILABLE.
const leaderWait = 5 * time.Second

// API holds what the services share.
type API struct {
	raft     Raft
	fsm      *state.FSM
	grpcAddr string
	logger   *slog.Logger

	mu         sync.Mutex
	conns      map[string]*grpc.ClientConn
	creds      *rpc.Creds
	registered time.Time // last registration attempt of a follower
	signals    *signals.Store
	gateAllow  analysis.Allowlist
	secrets    *secretstore.Store // nil: no keyring
	heartbeats *heartbeat.View    // nil: not leading (SetHeartbeats)
}

// Access is who may call each of the coordinator's gRPC services, by the
// role in their certificate; tokens then decide what a client may do.
// InternalService (joins, forwarding helpers, raw applies) is for
// coordinators only.
var Access = map[string][]pki.Role{
	"slipway.deploy.v1.DeployService":   {pki.RoleClient, pki.RoleCoordinator},
	"slipway.deploy.v1.SecretService":   {pki.RoleClient, pki.RoleCoordinator},
	"slipway.cluster.v1.ClusterService": {pki.RoleClient, pki.RoleCoordinator},
	"slipway.acl.v1.AclService":         {pki.RoleClient, pki.RoleCoordinator},
	"slipway.state.v1.InternalService":  {pki.RoleCoordinator},
	// Edges report golden signals; a follower forwards them.
	"slipway.edge.v1.SignalService": {pki.RoleEdge, pki.RoleCoordinator},
	// Node agents stream heartbeats to the leader; the node is the
	// certificate's name.
	"slipway.cluster.v1.NodeHeartbeatService": {pki.RoleNodeAgent},
}

// New returns the API of the node r applying to fsm; grpcAddr is this node's
// advertised gRPC address, and creds (a coordinator certificate) reach the
// leader when forwarding.
func New(r Raft, fsm *state.FSM, grpcAddr string, creds *rpc.Creds, logger *slog.Logger) *API {
	if logger == nil {
		logger = slog.Default()
	}
	return &API{raft: r, fsm: fsm, grpcAddr: grpcAddr, creds: creds, logger: logger, conns: map[string]*grpc.ClientConn{}}
}

// Register registers DeployService, ClusterService, AclService and
// InternalService on s. Tokens are enforced by UnaryACL and StreamACL,
// installed on s when ACLs are enabled.
func (a *API) Register(s *rpc.Server) {
	registerDeploy(s, a)
	registerCluster(s, a)
	registerACL(s, a)
	registerInternal(s, a)
	registerSignals(s, a)
	registerSecrets(s, a)
	registerHeartbeats(s, a)
}

// Close closes the connections opened to forward requests.
func (a *API) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for addr, c := range a.conns {
		_ = c.Close()
		delete(a.conns, addr)
	}
}

// Self is this node's addresses, as registered in the state.
func (a *API) Self() *statev1.PeerAddress {
	return &statev1.PeerAddress{Id: a.raft.ID(), RaftAddress: a.raft.Addr(), GrpcAddress: a.grpcAddr}
}

// RegisterSelf records this node's addresses in the replicated state when
// they are missing or stale there: directly on the leader (so that followers
// can forward writes to it), through the leader's InternalService.Join on a
// follower (so that ListPeers shows every peer's gRPC address). A follower
// tries at most every registerRetry.
func (a *API) RegisterSelf(ctx context.Context) error {
	self := a.Self()
	if p, ok := a.fsm.Peer(self.GetId()); ok && p.GetGrpcAddress() == self.GetGrpcAddress() && p.GetRaftAddress() == self.GetRaftAddress() {
		return nil
	}
	if !a.raft.IsLeader() {
		if id, _ := a.raft.Leader(); id == "" || !a.member() {
			return nil // a removed node must not add itself back
		}
		a.mu.Lock()
		wait := time.Until(a.registered.Add(registerRetry))
		if wait <= 0 {
			a.registered = time.Now()
		}
		a.mu.Unlock()
		if wait > 0 {
			return nil
		}
		jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		conn, err := a.leaderConn(jctx)
		if err != nil || conn == nil {
			return fmt.Errorf("grpcapi: register %s with the leader: %w", self.GetId(), errors.Join(err, errNoLeader))
		}
		if _, err := statev1.NewInternalServiceClient(conn).Join(forwardContext(jctx, self.GetId()), &statev1.JoinRequest{Peer: self}); err != nil {
			return fmt.Errorf("grpcapi: register %s with the leader: %w", self.GetId(), err)
		}
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.raft.Apply(actx, &statev1.Command{Op: &statev1.Command_RegisterPeer{RegisterPeer: &statev1.RegisterPeerOp{Peer: self}}}); err != nil {
		return fmt.Errorf("grpcapi: register %s: %w", self.GetId(), err)
	}
	return nil
}

// member reports whether this node is in its view of the raft
// configuration.
func (a *API) member() bool {
	st, err := a.raft.Status()
	if err != nil {
		return false
	}
	for _, s := range st.Servers {
		if s.ID == a.raft.ID() {
			return true
		}
	}
	return false
}

// catchUpWait bounds the wait for the log replay of a local read whose
// context has no deadline.
const catchUpWait = 10 * time.Second

// errCatchingUp: the node is still replaying its raft log after a restart.
var errCatchingUp = errors.New("grpcapi: still replaying the raft log")

// awaitCaughtUp returns once this node has replayed the log it had at start
// (see raftnode.Node.CaughtUp), so that a local read does not miss state it
// had before a restart. It waits until shortly before ctx's deadline
// (catchUpWait without one) and then fails with errCatchingUp.
func (a *API) awaitCaughtUp(ctx context.Context) error {
	if a.raft.CaughtUp() {
		return nil
	}
	// Give up a little before the caller's deadline, so that it gets the
	// reason rather than DEADLINE_EXCEEDED.
	until := time.Now().Add(catchUpWait)
	if dl, ok := ctx.Deadline(); ok {
		until = dl.Add(-min(time.Until(dl)/10, 200*time.Millisecond))
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := a.fsm.Changed()
		if a.raft.CaughtUp() {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err()
			}
			return fmt.Errorf("%s has applied index %d of the %d it had at start; retry: %w",
				a.raft.ID(), a.raft.AppliedIndex(), a.raft.BootIndex(), errCatchingUp)
		case <-changed:
		case <-tick.C: // the leader's commit index moves without a change here
		}
	}
}

// toStatus maps domain and raft errors to gRPC status codes. It is the only
// place that does.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (validation, or forwarded from the leader)
	}
	if errors.Is(err, raftnode.ErrOutcomeUnknown) {
		return rpc.WithReason(codes.Unavailable, err.Error(), rpc.ReasonOutcomeUnknown, requestMeta(err))
	}
	var me *state.MountError
	if errors.As(err, &me) {
		return rpc.InvalidArgument("spec", []rpc.FieldViolation{{Field: me.Field, Description: me.Description}})
	}
	var rc *state.ReleaseChangedError
	if errors.As(err, &rc) {
		return rpc.WithReason(codes.FailedPrecondition, rc.Error(), rpc.ReasonReleaseChanged,
			map[string]string{rpc.MetaCurrentRelease: strconv.FormatUint(rc.Current, 10)})
	}
	var c codes.Code
	switch {
	case errors.Is(err, state.ErrNotFound):
		c = codes.NotFound
	case errors.Is(err, state.ErrSecretExists):
		c = codes.AlreadyExists
	case errors.Is(err, state.ErrSecretInUse), errors.Is(err, secretstore.ErrNoKeyring):
		c = codes.FailedPrecondition
	case errors.Is(err, state.ErrActiveRollout), errors.Is(err, state.ErrRolloutFinal), errors.Is(err, state.ErrNoEarlierRelease),
		errors.Is(err, errFailedPrecondition):
		c = codes.FailedPrecondition
	case errors.Is(err, errAlreadyExists), errors.Is(err, state.ErrRequestReused):
		c = codes.AlreadyExists
	case errors.Is(err, raftnode.ErrTimeout):
		c = codes.Unavailable
	case errors.Is(err, state.ErrInvalid):
		c = codes.InvalidArgument
	case errors.Is(err, state.ErrUnsupportedVersion), errors.Is(err, state.ErrACLBootstrapped):
		c = codes.FailedPrecondition
	case errors.Is(err, acl.ErrUnauthenticated):
		c = codes.Unauthenticated
	case errors.Is(err, acl.ErrPermissionDenied):
		c = codes.PermissionDenied
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, errNoLeader), errors.Is(err, errCatchingUp):
		c = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		c = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		c = codes.Canceled
	default:
		c = codes.Internal
	}
	if c == codes.Unavailable {
		// Every other UNAVAILABLE is raised before the entry reaches the
		// log: nothing was or will be applied.
		return rpc.WithReason(c, err.Error(), rpc.ReasonNotCommitted, requestMeta(err))
	}
	return status.Error(c, err.Error())
}

// requestError names the request id of the write that failed with err, so
// that an unknown outcome tells the caller which id to retry with.
type requestError struct {
	err       error
	requestID string
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// withRequest ties err (nil stays nil) to the request id rid.
func withRequest(err error, rid string) error {
	if err == nil || rid == "" {
		return err
	}
	return &requestError{err: err, requestID: rid}
}

// requestMeta is the ErrorInfo metadata naming err's request id, if any.
func requestMeta(err error) map[string]string {
	var re *requestError
	if errors.As(err, &re) {
		return map[string]string{rpc.MetaRequestID: re.requestID}
	}
	return nil
}

// forwardedOutcome maps the error of a write forwarded to the leader: an
// UNAVAILABLE the leader did not answer itself (no ErrorInfo: the link broke
// or the leader died mid-call) may have been applied, so it becomes
// OUTCOME_UNKNOWN naming rid. Everything else is the leader's answer.
func forwardedOutcome(err error, rid string) error {
	if err == nil || status.Code(err) != codes.Unavailable {
		return err
	}
	if reason, _ := rpc.Reason(err); reason != "" {
		return err
	}
	return rpc.WithReason(codes.Unavailable, "the call forwarded to the leader failed, the write may still be applied; retry with request_id "+rid+": "+status.Convert(err).Message(),
		rpc.ReasonOutcomeUnknown, map[string]string{rpc.MetaRequestID: rid})
}

var (
	errNoLeader = errors.New("grpcapi: no leader known")
	// errFailedPrecondition: the cluster's state does not allow the request
	// (transfer without another voter, removing the last voter).
	errFailedPrecondition = errors.New("grpcapi: failed precondition")
	// errAlreadyExists: the request would duplicate a member of the cluster.
	errAlreadyExists = errors.New("grpcapi: already exists")
)

// leaderConn returns a connection to the leader's gRPC address, waiting up
// to leaderWait for one to be known. It fails with errNoLeader when this
// request was already forwarded once.
func (a *API) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return nil, fmt.Errorf("%s is not the leader and the request was already forwarded: %w", a.raft.ID(), errNoLeader)
	}
	deadline := time.Now().Add(leaderWait)
	for {
		id, _ := a.raft.Leader()
		if id != "" && id != a.raft.ID() {
			if p, ok := a.fsm.Peer(id); ok && p.GetGrpcAddress() != "" {
				return a.dial(p.GetGrpcAddress())
			}
		}
		if id == a.raft.ID() && a.raft.IsLeader() {
			return nil, nil // became leader meanwhile: serve locally
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s knows no leader (or not its gRPC address) after %s: %w", a.raft.ID(), leaderWait, errNoLeader)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (a *API) dial(addr string) (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.conns[addr]; ok {
		return c, nil
	}
	c, err := rpc.Dial(addr, a.creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return nil, fmt.Errorf("grpcapi: dial leader: %w", err)
	}
	a.conns[addr] = c
	return c, nil
}

// onLeader runs local on the leader, or forward with a connection to the
// leader on a follower. Errors come back as gRPC statuses.
func onLeader[Resp any](ctx context.Context, a *API, local func(context.Context) (Resp, error), forward func(context.Context, *grpc.ClientConn) (Resp, error)) (Resp, error) {
	var zero Resp
	if !a.raft.IsLeader() {
		conn, err := a.leaderConn(ctx)
		if err != nil {
			return zero, toStatus(err)
		}
		if conn != nil {
			resp, err := forward(forwardContext(ctx, a.raft.ID()), conn)
			return resp, err // already a status from the leader
		}
	}
	resp, err := local(ctx)
	if err != nil {
		return zero, toStatus(err)
	}
	return resp, nil
}

// hopByHop are request headers that describe one connection or call, not
// the caller's request, so they are not copied onto a forwarded call.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "host": true, "content-type": true, "user-agent": true,
	"content-length": true, "proxy-authenticate": true, "proxy-authorization": true, "trailer": true,
}

// forwardContext is ctx (deadline and cancellation included) with the
// caller's metadata as outgoing metadata, minus hop-by-hop headers, pseudo
// headers and keys reserved by gRPC, plus the forwarded marker naming self.
func forwardContext(ctx context.Context, self string) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, vs := range in {
		k = strings.ToLower(k)
		if hopByHop[k] || strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == forwardedKey {
			continue
		}
		out[k] = append(out[k], vs...)
	}
	out.Set(forwardedKey, self)
	return metadata.NewOutgoingContext(ctx, out)
}

// apply commits cmd and returns the FSM response as type T.
func apply[T any](ctx context.Context, a *API, cmd *statev1.Command) (T, error) {
	var zero T
	res, err := a.raft.Apply(ctx, cmd)
	if err != nil {
		return zero, err
	}
	t, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("grpcapi: unexpected apply response %T", res)
	}
	return t, nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "gen-" + hex.EncodeToString(b[:])
}
