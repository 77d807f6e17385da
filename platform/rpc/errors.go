package rpc

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FieldViolation names one invalid field and says what is wrong with it.
type FieldViolation struct {
	// Field is the path of the field, e.g. "spec.update.canary.steps[1].weight".
	Field string
	// Description says what is wrong.
	Description string
}

// String renders the violation as "field: description".
func (v FieldViolation) String() string { return v.Field + ": " + v.Description }

// InvalidArgument returns an INVALID_ARGUMENT status whose message lists every
// violation and whose details carry a google.rpc.BadRequest.
func InvalidArgument(what string, vs []FieldViolation) error {
	parts := make([]string, len(vs))
	br := &errdetails.BadRequest{}
	for i, v := range vs {
		parts[i] = v.String()
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	st := status.New(codes.InvalidArgument, fmt.Sprintf("invalid %s: %s", what, strings.Join(parts, "; ")))
	if ds, err := st.WithDetails(br); err == nil {
		st = ds
	}
	return st.Err()
}

// Violations extracts the field violations from an INVALID_ARGUMENT error,
// or nil if it carries none.
func Violations(err error) []FieldViolation {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var out []FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out = append(out, FieldViolation{Field: fv.GetField(), Description: fv.GetDescription()})
			}
		}
	}
	return out
}

// ErrorDomain is the google.rpc.ErrorInfo domain of Slipway's error reasons.
const ErrorDomain = "slipway.dev"

// Reasons of the google.rpc.ErrorInfo on the answer to a write
// (slipway.deploy.v1.ErrorReason without its prefix).
const (
	// ReasonNotCommitted: the write was not applied and will not be.
	ReasonNotCommitted = "NOT_COMMITTED"
	// ReasonOutcomeUnknown: the write may still be applied; retry with the
	// request id in the metadata.
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
	// ReasonReleaseChanged (on FAILED_PRECONDITION): a Deploy's
	// expected_release is no longer the service's latest release, named in
	// the metadata under MetaCurrentRelease.
	ReasonReleaseChanged = "RELEASE_CHANGED"
)

// MetaCurrentRelease is the ErrorInfo metadata key naming the service's
// latest release on a RELEASE_CHANGED answer.
const MetaCurrentRelease = "current_release"

// ReasonNotLeader is the ErrorInfo reason (with FAILED_PRECONDITION) of a
// call only the leader serves, refused by a coordinator that does not lead
// (NodeHeartbeatService); MetaLeaderAddress and MetaLeaderID in its
// metadata name the leader when the refusing coordinator knows it.
const ReasonNotLeader = "NOT_LEADER"

// ErrorInfo metadata keys naming the leader on a ReasonNotLeader answer.
const (
	MetaLeaderAddress = "leader_address"
	MetaLeaderID      = "leader_id"
)

// MetaRequestID is the ErrorInfo metadata key naming the request id to
// retry an OUTCOME_UNKNOWN write with.
const MetaRequestID = "request_id"

// WithReason returns a status error of code c and message msg carrying a
// google.rpc.ErrorInfo with reason in ErrorDomain and the metadata md.
func WithReason(c codes.Code, msg, reason string, md map[string]string) error {
	st := status.New(c, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md}); err == nil {
		st = ds
	}
	return st.Err()
}

// Reason returns the reason and metadata of the first google.rpc.ErrorInfo
// in ErrorDomain that err carries; "" when it carries none.
func Reason(err error) (string, map[string]string) {
	st, ok := status.FromError(err)
	if !ok {
		return "", nil
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == ErrorDomain {
			return ei.GetReason(), ei.GetMetadata()
		}
	}
	return "", nil
}
