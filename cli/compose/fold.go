package compose

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// colourWord finds the colour of a hand-made blue/green pair in a service
// name: "web-blue", "blue_web", "web.green".
var colourWord = regexp.MustCompile(`(^|[-_.])(blue|green)($|[-_.])`)

// colourless is name without its colour word, or "" when it has none.
func colourless(name string) (base, colour string) {
	m := colourWord.FindStringSubmatchIndex(name)
	if m == nil {
		return "", ""
	}
	colour = name[m[4]:m[5]]
	base = name[:m[0]] + sepOf(name, m)
	base += name[m[1]:]
	return strings.Trim(base, "-_."), colour
}

func sepOf(name string, m []int) string {
	if m[2] != m[3] && m[6] != m[7] {
		return name[m[2]:m[3]] // both sides had a separator: keep one
	}
	return ""
}

// withoutColour is a copy of s without what a colour tells apart: name,
// image, and labels or env whose value is the colour.
func withoutColour(s *deployv1.ServiceSpec, colour string) *deployv1.ServiceSpec {
	c := proto.Clone(s).(*deployv1.ServiceSpec)
	c.Name, c.Image = "", ""
	for k, v := range c.Labels {
		if strings.EqualFold(v, colour) {
			delete(c.Labels, k)
		}
	}
	for k, v := range c.Env {
		if strings.EqualFold(v, colour) {
			delete(c.Env, k)
		}
	}
	return c
}

// foldBlueGreen replaces each pair of services that differ only in their
// image and a colour (X-blue and X-green, labelled or configured with
// their colour) with one service X with a blue_green strategy: Slipway
// keeps the two colours itself. The blue one's image is the first release;
// the warning says how to release the green one's.
func foldBlueGreen(services []Service) []Service {
	type half struct {
		i      int
		colour string
	}
	byBase := map[string][]half{}
	for i, s := range services {
		if base, colour := colourless(s.Compose); base != "" {
			byBase[base] = append(byBase[base], half{i, colour})
		}
	}
	drop := map[int]bool{}
	for base, halves := range byBase {
		if len(halves) != 2 || halves[0].colour == halves[1].colour {
			continue
		}
		blue, green := halves[0], halves[1]
		if blue.colour != "blue" {
			blue, green = green, blue
		}
		b, g := services[blue.i], services[green.i]
		if !proto.Equal(withoutColour(b.Spec, "blue"), withoutColour(g.Spec, "green")) {
			continue
		}
		spec := withoutColour(b.Spec, "blue")
		spec.Name, spec.Image = serviceName(base), b.Spec.Image
		spec.Count = max(b.Spec.Count, g.Spec.Count)
		if spec.Update == nil {
			spec.Update = &deployv1.UpdateStrategy{}
		}
		u := spec.Update
		u.Strategy = deployv1.Strategy_STRATEGY_BLUE_GREEN
		var dropped []Warning
		if u.MaxParallel != 0 || u.MaxSurge != "" || u.MaxUnavailable != "" || u.Stagger != nil {
			dropped = append(dropped, Warning{Service: b.Compose, Key: "deploy.update_config", Kind: Unsupported,
				Message: "parallelism, delay and order not imported: a blue/green release starts the new colour at full count and switches traffic at once"})
		}
		u.MaxParallel, u.MaxSurge, u.MaxUnavailable, u.Stagger = 0, "", "", nil
		folded := Service{Compose: b.Compose + "+" + g.Compose, Spec: spec,
			Warnings: append(append([]Warning(nil), b.Warnings...), g.Warnings...),
			Commands: dedupe(append(append([]string(nil), b.Commands...), g.Commands...))}
		msg := fmt.Sprintf("a hand-made blue/green pair: folded with %s into service %q with strategy blue_green (Slipway keeps both colours); the first release runs %s's image %s", g.Compose, spec.Name, b.Compose, b.Spec.Image)
		if g.Spec.Image != b.Spec.Image {
			msg += fmt.Sprintf("; release %s's with: slipctl set-image %s %s", g.Compose, spec.Name, g.Spec.Image)
		}
		folded.Warnings = append(append([]Warning{{Service: b.Compose, Kind: Caution, Message: msg}}, folded.Warnings...), dropped...)
		services[blue.i] = folded
		drop[green.i] = true
	}
	var out []Service
	for i, s := range services {
		if !drop[i] {
			out = append(out, s)
		}
	}
	return out
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
