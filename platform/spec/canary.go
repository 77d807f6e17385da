package spec

import (
	"fmt"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// MaxHeaderRoutes bounds update.canary.header_routes.
const MaxHeaderRoutes = 8

// StickyCookie is the sticky canary cookie of service: the spec's, or
// "slipway-<service>".
func StickyCookie(service string, s *deployv1.Stickiness) string {
	if c := s.GetCookie(); c != "" {
		return c
	}
	return "slipway-" + service
}

// validateCanaryRouting checks update.canary.sticky and header_routes.
func validateCanaryRouting(v *violations, at string, u *deployv1.UpdateStrategy) {
	c := u.GetCanary()
	canary := u.GetStrategy() == deployv1.Strategy_STRATEGY_CANARY
	if st := c.GetSticky(); st != nil {
		path := at + ".canary.sticky"
		if !canary && st.GetEnabled() {
			v.add(path, "sticky canaries need strategy canary")
		}
		if name := st.GetCookie(); name != "" {
			v.check(path+".cookie", specrules.HeaderName(name))
		}
		validDuration(v, path+".max_age", st.GetMaxAge()) // at most 168h, as every duration
	}
	hr := c.GetHeaderRoutes()
	if len(hr) > 0 && !canary {
		v.add(at+".canary.header_routes", "header routes need strategy canary")
	}
	if len(hr) > MaxHeaderRoutes {
		v.add(at+".canary.header_routes", "%d routes, more than the %d allowed", len(hr), MaxHeaderRoutes)
	}
	for i, r := range hr {
		path := fmt.Sprintf("%s.canary.header_routes[%d]", at, i)
		switch {
		case r.GetHeader() != "" && r.GetCookie() != "":
			v.add(path, "header and cookie are exclusive; set one")
		case r.GetHeader() != "":
			v.check(path+".header", specrules.HeaderName(r.GetHeader()))
			v.check(path+".value", specrules.HeaderValue(r.GetValue()))
		case r.GetCookie() != "":
			v.check(path+".cookie", specrules.HeaderName(r.GetCookie()))
			if d := cookieValue(r.GetValue()); d != "" {
				v.add(path+".value", "%s", d)
			}
		default:
			v.add(path, "needs header or cookie")
		}
	}
}

// cookieValue describes why v cannot be a cookie's value (RFC 6265
// cookie-octets), or returns "".
func cookieValue(v string) string {
	if len(v) > 256 {
		return fmt.Sprintf("is %d bytes, more than the 256 allowed", len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return fmt.Sprintf("%q has a character a cookie value cannot hold (%q)", v, c)
		}
	}
	return ""
}
