package dashboard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// callTimeout bounds each call to the API.
const callTimeout = 10 * time.Second

// api calls the coordinator's gRPC API as the user: every call carries the
// user's token, and the API's interceptors authorise it.
type api struct {
	conn grpc.ClientConnInterface
}

func (a *api) ctx(ctx context.Context, secret string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret), cancel
}

func (a *api) deploy() deployv1.DeployServiceClient { return deployv1.NewDeployServiceClient(a.conn) }

func (a *api) whoAmI(ctx context.Context, secret string) (*aclv1.Token, error) {
	ctx, cancel := a.ctx(ctx, secret)
	defer cancel()
	resp, err := aclv1.NewAclServiceClient(a.conn).WhoAmI(ctx, &aclv1.WhoAmIRequest{})
	return resp.GetToken(), err
}

func (a *api) services(ctx context.Context, secret string) ([]*deployv1.Service, error) {
	ctx, cancel := a.ctx(ctx, secret)
	defer cancel()
	resp, err := a.deploy().ListServices(ctx, &deployv1.ListServicesRequest{})
	return resp.GetServices(), err
}

func (a *api) service(ctx context.Context, secret, name string) (*deployv1.Service, error) {
	ctx, cancel := a.ctx(ctx, secret)
	defer cancel()
	resp, err := a.deploy().GetService(ctx, &deployv1.GetServiceRequest{Name: name})
	return resp.GetService(), err
}

func (a *api) rollouts(ctx context.Context, secret, service string, activeOnly bool, limit int32) ([]*deployv1.Rollout, error) {
	ctx, cancel := a.ctx(ctx, secret)
	defer cancel()
	resp, err := a.deploy().ListRollouts(ctx, &deployv1.ListRolloutsRequest{Service: service, ActiveOnly: activeOnly, Limit: limit})
	return resp.GetRollouts(), err
}

func (a *api) releases(ctx context.Context, secret, service string, limit int32) ([]*deployv1.Release, []*deployv1.AuditEvent, error) {
	ctx, cancel := a.ctx(ctx, secret)
	defer cancel()
	resp, err := a.deploy().ListReleases(ctx, &deployv1.ListReleasesRequest{Service: service, Limit: limit})
	return resp.GetReleases(), resp.GetAudit(), err
}

// describe is an API error as a sentence for people: the status message
// (which names what is wrong) without the gRPC wrapping.
func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// httpStatus maps an API error's code to an HTTP status for the actions.
func httpStatus(err error) int {
	switch status.Code(err) {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition, codes.AlreadyExists:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unavailable, codes.DeadlineExceeded:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"ok": false, "error": msg})
}

func urlEscape(s string) string { return url.QueryEscape(s) }
