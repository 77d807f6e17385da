package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestValidateCanaryRouting(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(u *deployv1.UpdateStrategy)
		want   []rpc.FieldViolation
	}{
		{name: "sticky and header routes", mutate: func(u *deployv1.UpdateStrategy) {
			u.Canary.Sticky = &deployv1.Stickiness{Enabled: true, MaxAge: dur(time.Hour)}
			u.Canary.HeaderRoutes = []*deployv1.HeaderRoute{{Header: "X-Canary", Value: "always"}, {Cookie: "beta"}}
		}},
		{name: "not canary", mutate: func(u *deployv1.UpdateStrategy) {
			u.Strategy = deployv1.Strategy_STRATEGY_ROLLING
			u.Canary.Sticky = &deployv1.Stickiness{Enabled: true}
			u.Canary.HeaderRoutes = []*deployv1.HeaderRoute{{Header: "X-Canary"}}
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.canary.sticky", Description: "sticky canaries need strategy canary"},
			{Field: "spec.update.canary.header_routes", Description: "header routes need strategy canary"},
		}},
		{name: "bad fields", mutate: func(u *deployv1.UpdateStrategy) {
			u.Canary.Sticky = &deployv1.Stickiness{Enabled: true, Cookie: "a b", MaxAge: dur(800 * time.Hour)}
			u.Canary.HeaderRoutes = []*deployv1.HeaderRoute{{Header: "X", Cookie: "y"}, {}, {Cookie: "beta", Value: "a;b"}}
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.canary.sticky.cookie", Description: `"a b" is not a valid HTTP header name`},
			{Field: "spec.update.canary.sticky.max_age", Description: "must be at most 168h0m0s, got 800h0m0s"},
			{Field: "spec.update.canary.header_routes[0]", Description: "header and cookie are exclusive; set one"},
			{Field: "spec.update.canary.header_routes[1]", Description: "needs header or cookie"},
			{Field: "spec.update.canary.header_routes[2].value", Description: `"a;b" has a character a cookie value cannot hold (';')`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s.Update)
			got := Validate(s)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
	n := valid()
	n.Update.Canary.Sticky = &deployv1.Stickiness{Enabled: true}
	if got := Normalize(n).GetUpdate().GetCanary().GetSticky().GetCookie(); got != "slipway-web" {
		t.Errorf("normalized sticky cookie = %q, want slipway-web", got)
	}
	_ = strings.TrimSpace
}
