package command

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/specfile"
)

// specViolations is every violation found in one spec file, each at its
// file and line; it exits with the usage code (2), like INVALID_ARGUMENT.
type specViolations struct {
	errs specfile.Errors
}

func (v *specViolations) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid argument: %d violation(s):", len(v.errs))
	for _, e := range v.errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// locate returns the field violations as errors at their lines of f, with
// exit code 2; nil for none.
func locate(f *specfile.File, vs []rpc.FieldViolation) error {
	if len(vs) == 0 {
		return nil
	}
	errs := make(specfile.Errors, len(vs))
	for i, v := range vs {
		errs[i] = f.Locate(v.Field, v.Description)
	}
	return exitcode.With(exitcode.Usage, &specViolations{errs: errs})
}

// locateStatus maps the field violations of an INVALID_ARGUMENT answer to
// the lines of f, so a rule only the coordinator applies still names the
// line; any other error is returned as it is.
func locateStatus(f *specfile.File, err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if f == nil || !errors.As(err, &se) || se.GRPCStatus().Code() != codes.InvalidArgument {
		return err
	}
	var vs []rpc.FieldViolation
	for _, d := range se.GRPCStatus().Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				vs = append(vs, rpc.FieldViolation{Field: fv.GetField(), Description: fv.GetDescription()})
			}
		}
	}
	if len(vs) == 0 {
		return err
	}
	return locate(f, vs)
}
