package render

import (
	"fmt"
	"io"
	"strings"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
)

// PolicyName is the short name of a policy ("deploy").
func PolicyName(p aclv1.Policy) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "POLICY_"))
}

func policies(t *aclv1.Token) string {
	names := make([]string, 0, len(t.GetPolicies()))
	for _, p := range t.GetPolicies() {
		names = append(names, PolicyName(p))
	}
	return strings.Join(names, ",")
}

func globs(t *aclv1.Token) string {
	if len(t.GetServices()) == 0 {
		return "-"
	}
	return strings.Join(t.GetServices(), ",")
}

// NewToken prints a token just created with its secret, and how to use it.
func NewToken(w io.Writer, t *aclv1.Token, secret string) error {
	tw := table(w)
	row(tw, "accessor:", t.GetAccessorId())
	row(tw, "secret:", secret)
	row(tw, "description:", t.GetDescription())
	row(tw, "policies:", policies(t))
	row(tw, "services:", globs(t))
	row(tw, "created:", Time(t.GetCreatedAt()))
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nThe secret is shown only now. Use it with:\n  export SLIPWAY_TOKEN=%s\n  grpcurl -H 'authorization: Bearer %s' ...\n", secret, secret)
	return err
}

// Tokens prints tokens as a table (never secrets).
func Tokens(w io.Writer, ts []*aclv1.Token) error {
	tw := table(w)
	row(tw, "ACCESSOR", "DESCRIPTION", "POLICIES", "SERVICES", "CREATED", "CREATED BY")
	for _, t := range ts {
		by := t.GetCreatedBy()
		if by == "" {
			by = "bootstrap"
		}
		row(tw, t.GetAccessorId(), t.GetDescription(), policies(t), globs(t), Time(t.GetCreatedAt()), by)
	}
	return tw.Flush()
}

// Policies prints the policies and the methods each allows.
func Policies(w io.Writer, ps []*aclv1.PolicyInfo) error {
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		scope := ""
		if p.GetScoped() {
			scope = " (scoped by service globs)"
		}
		fmt.Fprintf(w, "%s%s: %s\n", p.GetName(), scope, p.GetDescription())
		for _, m := range p.GetMethods() {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
	return nil
}
