package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/acl"
	"slipway.dev/coordinator/secretstore"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

type secretServer struct {
	deployv1.UnimplementedSecretServiceServer
	a *API
}

func registerSecrets(s *rpc.Server, a *API) {
	deployv1.RegisterSecretServiceServer(s, &secretServer{a: a})
}

// SetSecrets gives the API the store that seals secrets (nil: none, every
// secret write and every spec mounting one is refused). Call it before
// serving.
func (a *API) SetSecrets(s *secretstore.Store) { a.secrets = s }

// noKeyring is the answer of a coordinator without a keyring.
func noKeyring() error {
	return status.Error(codes.FailedPrecondition, secretstore.ErrNoKeyring.Error())
}

func validateSecretWrite(name string, data []byte, needData bool, services ...string) error {
	var vs []rpc.FieldViolation
	if d := specrules.Identifier(name); d != "" {
		vs = append(vs, rpc.FieldViolation{Field: "name", Description: fmt.Sprintf("%q %s", name, d)})
	}
	bad := acl.GlobErrors(services)
	for i := range services {
		if d, ok := bad[i]; ok {
			vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("services[%d]", i), Description: d})
		}
	}
	if needData || len(data) > 0 {
		switch {
		case len(data) == 0:
			vs = append(vs, rpc.FieldViolation{Field: "data", Description: "must not be empty"})
		case len(data) > secretstore.MaxValueBytes:
			vs = append(vs, rpc.FieldViolation{Field: "data", Description: fmt.Sprintf("is %d bytes, more than the %d allowed", len(data), secretstore.MaxValueBytes)})
		}
	}
	if len(vs) > 0 {
		return rpc.InvalidArgument("request", vs)
	}
	return nil
}

func (s *secretServer) CreateSecret(ctx context.Context, req *deployv1.CreateSecretRequest) (*deployv1.CreateSecretResponse, error) {
	if err := validateSecretWrite(req.GetName(), req.GetData(), true, req.GetServices()...); err != nil {
		return nil, err
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.CreateSecretResponse, error) {
		if !s.a.secrets.Enabled() {
			return nil, noKeyring()
		}
		kind := state.NormalKind(req.GetKind())
		v, err := s.a.secrets.Seal(kind, req.GetName(), 1, req.GetData(), accessor(ctx))
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		res, err := apply[state.SecretResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: kind, Name: req.GetName(), Version: v,
			SetServices: true, Services: req.GetServices()}}})
		if err != nil {
			return nil, err
		}
		return &deployv1.CreateSecretResponse{Secret: res.Secret}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.CreateSecretResponse, error) {
		return deployv1.NewSecretServiceClient(c).CreateSecret(ctx, req)
	})
}

func (s *secretServer) UpdateSecret(ctx context.Context, req *deployv1.UpdateSecretRequest) (*deployv1.UpdateSecretResponse, error) {
	if err := validateSecretWrite(req.GetName(), req.GetData(), !req.GetSetServices(), req.GetServices()...); err != nil {
		return nil, err
	}
	switch {
	case len(req.GetServices()) > 0 && !req.GetSetServices():
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "services", Description: "needs set_services (which replaces the scope with them)"}})
	case len(req.GetData()) == 0 && req.GetRedeploy():
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "redeploy", Description: "needs data: a scope change alone makes no new version to roll out"}})
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.UpdateSecretResponse, error) {
		kind := state.NormalKind(req.GetKind())
		if len(req.GetData()) == 0 {
			// A scope change only: no value is sealed, no keyring needed.
			res, err := apply[state.SecretResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{
				Kind: kind, Name: req.GetName(), SetServices: true, Services: req.GetServices(), By: accessor(ctx)}}})
			if err != nil {
				return nil, err
			}
			return &deployv1.UpdateSecretResponse{Secret: res.Secret}, nil
		}
		if !s.a.secrets.Enabled() {
			return nil, noKeyring()
		}
		cur, err := s.a.fsm.Secret(kind, req.GetName())
		if err != nil {
			return nil, err
		}
		next := cur.GetVersion() + 1
		v, err := s.a.secrets.Seal(kind, req.GetName(), next, req.GetData(), accessor(ctx))
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		res, err := apply[state.SecretResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: kind, Name: req.GetName(), Version: v,
			SetServices: req.GetSetServices(), Services: req.GetServices()}}})
		if err != nil {
			return nil, err
		}
		resp := &deployv1.UpdateSecretResponse{Secret: res.Secret}
		if !req.GetRedeploy() {
			return resp, nil
		}
		var failed []string
		for _, svc := range res.Secret.GetUsedBy() {
			rel, err := s.a.redeploy(ctx, svc, kind, req.GetName(), next)
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", svc, err))
				continue
			}
			resp.Releases = append(resp.Releases, rel)
		}
		if len(failed) > 0 {
			return nil, status.Errorf(codes.Aborted, "%s %s is stored as version %d, but redeploying failed for %s (deploy them again to pick it up)",
				state.KindName(kind), req.GetName(), next, strings.Join(failed, "; "))
		}
		return resp, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.UpdateSecretResponse, error) {
		return deployv1.NewSecretServiceClient(c).UpdateSecret(ctx, req)
	})
}

// redeploy deploys a new release of service: its latest release's spec
// with the mounts of the secret pinned to version, superseding any active
// rollout.
func (a *API) redeploy(ctx context.Context, service string, kind deployv1.SecretKind, name string, version uint64) (*deployv1.Release, error) {
	rels, _, err := a.fsm.Releases(service, 1)
	if err != nil {
		return nil, err
	}
	if len(rels) == 0 {
		return nil, fmt.Errorf("service %s has no release", service)
	}
	spec := proto.CloneOf(rels[0].GetSpec())
	list := spec.GetSecrets()
	if kind == deployv1.SecretKind_SECRET_KIND_CONFIG {
		list = spec.GetConfigs()
	}
	for _, m := range list {
		if m.GetName() == name {
			m.Version = version
		}
	}
	res, err := apply[state.DeployResult](ctx, a, &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{
		Spec: spec, RequestId: newRequestID(), Supersede: true, CreatedBy: "secret update",
		Reason: fmt.Sprintf("%s %s updated to version %d", state.KindName(kind), name, version), AccessorId: accessor(ctx),
	}}})
	if err != nil {
		return nil, err
	}
	return res.Release, nil
}

func (s *secretServer) GetSecret(ctx context.Context, req *deployv1.GetSecretRequest) (*deployv1.GetSecretResponse, error) {
	if err := validateSecretWrite(req.GetName(), nil, false); err != nil {
		return nil, err
	}
	return read(ctx, s.a, deployv1.ReadConsistency_READ_CONSISTENCY_LOCAL, func() (*deployv1.GetSecretResponse, error) {
		sec, err := s.a.fsm.Secret(req.GetKind(), req.GetName())
		if err != nil {
			return nil, err
		}
		return &deployv1.GetSecretResponse{Secret: sec}, nil
	}, nil)
}

func (s *secretServer) ListSecrets(ctx context.Context, req *deployv1.ListSecretsRequest) (*deployv1.ListSecretsResponse, error) {
	return read(ctx, s.a, deployv1.ReadConsistency_READ_CONSISTENCY_LOCAL, func() (*deployv1.ListSecretsResponse, error) {
		return &deployv1.ListSecretsResponse{Secrets: s.a.fsm.Secrets(req.GetKind())}, nil
	}, nil)
}

func (s *secretServer) DeleteSecret(ctx context.Context, req *deployv1.DeleteSecretRequest) (*deployv1.DeleteSecretResponse, error) {
	if err := validateSecretWrite(req.GetName(), nil, false); err != nil {
		return nil, err
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.DeleteSecretResponse, error) {
		res, err := apply[state.SecretResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_DeleteSecret{DeleteSecret: &statev1.DeleteSecretOp{
			Kind: state.NormalKind(req.GetKind()), Name: req.GetName(), By: accessor(ctx)}}})
		if err != nil {
			return nil, err
		}
		return &deployv1.DeleteSecretResponse{Secret: res.Secret}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.DeleteSecretResponse, error) {
		return deployv1.NewSecretServiceClient(c).DeleteSecret(ctx, req)
	})
}

func (s *secretServer) RekeySecrets(ctx context.Context, req *deployv1.RekeySecretsRequest) (*deployv1.RekeySecretsResponse, error) {
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.RekeySecretsResponse, error) {
		if !s.a.secrets.Enabled() {
			return nil, noKeyring()
		}
		recs, primary, n, err := s.a.secrets.Rekey()
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		if n == 0 {
			return &deployv1.RekeySecretsResponse{KeyId: primary}, nil
		}
		res, err := apply[state.RekeyResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_RekeySecrets{RekeySecrets: &statev1.RekeySecretsOp{Secrets: recs}}})
		if err != nil {
			return nil, err
		}
		return &deployv1.RekeySecretsResponse{KeyId: primary, Rekeyed: uint32(res.Rekeyed)}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.RekeySecretsResponse, error) {
		return deployv1.NewSecretServiceClient(c).RekeySecrets(ctx, req)
	})
}

// checkMounts checks, on the leader, that every secret and config a
// normalized spec mounts exists (with the version it names) and allows the
// spec's service. Violations name the field. The state checks again, and
// pins the unversioned mounts to the latest version, when it applies the
// deploy.
func (a *API) checkMounts(spec *deployv1.ServiceSpec) error {
	if len(spec.GetSecrets())+len(spec.GetConfigs()) == 0 {
		return nil
	}
	if !a.secrets.Enabled() {
		return status.Error(codes.FailedPrecondition, "spec.secrets: "+secretstore.ErrNoKeyring.Error())
	}
	var vs []rpc.FieldViolation
	for _, kind := range []struct {
		field string
		kind  deployv1.SecretKind
		list  []*deployv1.FileMount
	}{{"spec.secrets", deployv1.SecretKind_SECRET_KIND_SECRET, spec.GetSecrets()}, {"spec.configs", deployv1.SecretKind_SECRET_KIND_CONFIG, spec.GetConfigs()}} {
		for i, m := range kind.list {
			field := fmt.Sprintf("%s[%d]", kind.field, i)
			sec, err := a.fsm.Secret(kind.kind, m.GetName())
			if errors.Is(err, state.ErrNotFound) {
				vs = append(vs, rpc.FieldViolation{Field: field + ".name", Description: fmt.Sprintf("%s %q does not exist (create it with 'slipctl %s create %s --from-file FILE')",
					state.KindName(kind.kind), m.GetName(), state.KindName(kind.kind), m.GetName())})
				continue
			}
			if err != nil {
				return err
			}
			if d := state.ScopeViolation(kind.kind, m.GetName(), sec.GetServices(), spec.GetName()); d != "" {
				vs = append(vs, rpc.FieldViolation{Field: field + ".name", Description: d})
				continue
			}
			if m.GetVersion() == 0 {
				continue
			}
			found := false
			for _, v := range sec.GetVersions() {
				found = found || v.GetVersion() == m.GetVersion()
			}
			if !found {
				vs = append(vs, rpc.FieldViolation{Field: field + ".version", Description: fmt.Sprintf("%s %q has no version %d (latest %d)",
					state.KindName(kind.kind), m.GetName(), m.GetVersion(), sec.GetVersion())})
			}
		}
	}
	if len(vs) > 0 {
		return rpc.InvalidArgument("spec", vs)
	}
	return nil
}
