// Package specfile reads service specs written by people, in YAML or JSON,
// into deployv1.ServiceSpec.
//
// The proto is the schema: keys are the proto field names (or their
// lowerCamelCase JSON names), and anything unknown is an error naming the
// field and its line. On top of protojson it accepts what people write:
// durations such as "500ms", "3s", "5m" or "1h" wherever a duration goes,
// strategy names "rolling", "blue_green" (or "blue-green") and "canary" in
// any case as well as the enum names, any enum value without its prefix
// ("no_data: hold"), "pause: manual" on a canary step, and
// scalars of any type where a string goes (env: {PORT: 8080}).
package specfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// ErrSyntax is wrapped by errors about a document that is not YAML or JSON.
var ErrSyntax = errors.New("specfile: syntax error")

// Error is a problem with one field of a spec file.
type Error struct {
	// File is the file name, empty when reading from a reader.
	File string `json:"file,omitempty"`
	// Line is the 1-based line of the offending value, zero if unknown.
	Line int `json:"line,omitempty"`
	// Field is the path of the field, e.g. "update.canary.steps[1].pause".
	Field string `json:"field,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// Error renders the problem as "file:line: field: message".
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem found in one spec file.
type Errors []*Error

// Error renders one problem per line.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// ReadFile reads the spec in the named file; "-" reads standard input.
func ReadFile(name string) (*deployv1.ServiceSpec, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Parse(name, data)
}

// Parse reads one spec from data, YAML or JSON. name is used in errors only.
// Every field problem is reported at once, as Errors.
func Parse(name string, data []byte) (*deployv1.ServiceSpec, error) {
	f, err := Load(name, data)
	if err != nil {
		return nil, err
	}
	return f.Spec, nil
}

// File is a spec read from a file, with the line of every field in it, so
// that problems found later (by the coordinator's rules) can name the line.
type File struct {
	// Name is the file name as shown in errors ("<stdin>" for "-").
	Name string
	// Spec is the spec the file holds.
	Spec *deployv1.ServiceSpec
	// lines maps API field paths ("spec.update.canary.steps[1].weight") to
	// the 1-based line of the field's key.
	lines map[string]int
}

// Open reads the spec in the named file like ReadFile, keeping its lines.
func Open(name string) (*File, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Load(name, data)
}

// Line returns the line of field, a path in the API's form (as in
// google.rpc.BadRequest: "spec.update.canary.steps[1].weight",
// `spec.env["KEY"]`), or of the nearest enclosing field the file gives when
// the field itself is absent (a missing weight is reported at its step);
// zero when the file gives none of them, e.g. a required field left out.
func (f *File) Line(field string) int {
	for p := field; p != ""; p = parent(p) {
		if l, ok := f.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parent strips the last element of a field path: "a.b[2]" -> "a.b",
// "a.b" -> "a", "a" -> "".
func parent(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i > 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i > 0 {
		return p[:i]
	}
	return ""
}

// Locate turns a violation of field (API form) into an Error naming this
// file and the field's line; the field is shown without "spec.", as in the
// errors Parse reports.
func (f *File) Locate(field, message string) *Error {
	shown := strings.TrimPrefix(field, "spec.")
	if field == "spec" {
		shown = ""
	}
	return &Error{File: f.Name, Line: f.Line(field), Field: shown, Message: message}
}

// Load reads one spec from data, YAML or JSON, like Parse, keeping the line
// of every field.
func Load(name string, data []byte) (*File, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w: %v", displayName(name), ErrSyntax, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if len(next.Content) > 0 {
			line = next.Content[0].Line
		}
		return nil, Errors{{File: displayName(name), Line: line, Message: "a spec file holds one spec; found a second YAML document"}}
	}
	root := &doc
	if root.Kind == 0 || root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, Errors{{File: displayName(name), Message: "the file is empty; a spec needs at least name, image and port"}}
		}
		root = root.Content[0]
	}
	c := &converter{file: displayName(name), lines: map[string]int{"spec": root.Line}}
	spec := &deployv1.ServiceSpec{}
	obj := c.message(root, spec.ProtoReflect().Descriptor(), "", "spec")
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: encode spec: %w", displayName(name), err)
	}
	if err := protojson.Unmarshal(js, spec); err != nil {
		return nil, Errors{{File: displayName(name), Message: strings.TrimPrefix(err.Error(), "proto: ")}}
	}
	return &File{Name: displayName(name), Spec: spec, lines: c.lines}, nil
}

func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// converter turns a YAML tree into the JSON protojson expects, guided by the
// message descriptors, and collects every problem.
type converter struct {
	file string
	errs Errors
	// lines records the line of each field by its API path (see File.Line).
	lines map[string]int
}

func (c *converter) fail(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// message converts a mapping into a JSON object for md. path is the field
// path as written (for errors), api the same path with proto field names
// and a "spec" root (for File.Line).
func (c *converter) message(n *yaml.Node, md protoreflect.MessageDescriptor, path, api string) map[string]any {
	n = resolve(n)
	where := path
	if where == "" {
		where = "spec"
	}
	if n.Kind != yaml.MappingNode {
		c.fail(n, where, "must be a mapping of fields, got %s", describe(n))
		return nil
	}
	out := map[string]any{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		fpath := join(path, k.Value)
		fd := md.Fields().ByName(protoreflect.Name(k.Value))
		if fd == nil {
			fd = md.Fields().ByJSONName(k.Value)
		}
		if fd == nil {
			c.fail(k, fpath, "unknown field %q (known: %s)", k.Value, knownFields(md))
			continue
		}
		if seen[string(fd.Name())] {
			c.fail(k, fpath, "is given twice")
			continue
		}
		seen[string(fd.Name())] = true
		fapi := api + "." + string(fd.Name())
		c.lines[fapi] = k.Line
		if isNull(v) {
			continue
		}
		// A canary step's pause may be "manual": hold until promoted.
		if md.FullName() == "slipway.deploy.v1.CanaryStep" && fd.Name() == "pause" &&
			v.Kind == yaml.ScalarNode && strings.EqualFold(v.Value, "manual") {
			out["manual"] = true
			continue
		}
		if val, ok := c.field(v, fd, fpath, fapi); ok {
			out[string(fd.Name())] = val
		}
	}
	return out
}

func knownFields(md protoreflect.MessageDescriptor) string {
	names := make([]string, md.Fields().Len())
	for i := range names {
		names[i] = string(md.Fields().Get(i).Name())
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// field converts the value of one field, list or map included.
func (c *converter) field(n *yaml.Node, fd protoreflect.FieldDescriptor, path, api string) (any, bool) {
	switch {
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			c.fail(n, path, "must be a mapping, got %s", describe(n))
			return nil, false
		}
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
			kpath := fmt.Sprintf("%s[%q]", path, k.Value)
			kapi := fmt.Sprintf("%s[%q]", api, k.Value)
			c.lines[kapi] = k.Line
			if k.Kind != yaml.ScalarNode {
				c.fail(k, path, "keys must be plain values, got %s", describe(k))
				continue
			}
			if _, dup := out[k.Value]; dup {
				c.fail(k, kpath, "is given twice")
				continue
			}
			if isNull(v) {
				// An empty value is the empty string: KEY: with nothing after it.
				v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Line: v.Line}
			}
			if val, ok := c.single(v, fd.MapValue(), kpath, kapi); ok {
				out[k.Value] = val
			}
		}
		return out, true
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			c.fail(n, path, "must be a list, got %s", describe(n))
			return nil, false
		}
		out := []any{}
		for i, e := range n.Content {
			e = resolve(e)
			epath := fmt.Sprintf("%s[%d]", path, i)
			eapi := fmt.Sprintf("%s[%d]", api, i)
			c.lines[eapi] = e.Line
			if isNull(e) {
				c.fail(e, epath, "must not be empty")
				continue
			}
			if val, ok := c.single(e, fd, epath, eapi); ok {
				out = append(out, val)
			}
		}
		return out, true
	default:
		return c.single(n, fd, path, api)
	}
}

// single converts one value of fd's kind.
func (c *converter) single(n *yaml.Node, fd protoreflect.FieldDescriptor, path, api string) (any, bool) {
	if fd.Kind() == protoreflect.MessageKind {
		if fd.Message().FullName() == "google.protobuf.Duration" {
			return c.duration(n, path)
		}
		m := c.message(n, fd.Message(), path, api)
		return m, m != nil
	}
	if n.Kind != yaml.ScalarNode {
		c.fail(n, path, "must be a single value, got %s", describe(n))
		return nil, false
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return n.Value, true
	case protoreflect.BoolKind:
		switch strings.ToLower(n.Value) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		c.fail(n, path, "must be true or false, got %q", n.Value)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return c.integer(n, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return c.integer(n, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if fd.FullName() == "slipway.deploy.v1.FileMount.mode" {
			return c.fileMode(n, path)
		}
		return c.integer(n, path, 0, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return c.integer(n, path, 0, math.MaxInt64)
	case protoreflect.EnumKind:
		return c.enum(n, fd.Enum(), path)
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		v, err := strconv.ParseFloat(strings.TrimSuffix(n.Value, "%"), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			c.fail(n, path, "must be a number, got %q", n.Value)
			return nil, false
		}
		return v, true
	default:
		c.fail(n, path, "fields of kind %s are not supported in spec files", fd.Kind())
	}
	return nil, false
}

// fileMode reads permission bits as chmod does: always octal, written
// 0400, 0o400 or 400 (a decimal reading of 0400 would be 0620).
func (c *converter) fileMode(n *yaml.Node, path string) (any, bool) {
	s := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(n.Value), "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		c.fail(n, path, "must be octal permission bits such as 0400 or 0644, got %q", n.Value)
		return nil, false
	}
	return int64(v), true
}

func (c *converter) integer(n *yaml.Node, path string, lo, hi int64) (any, bool) {
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 10, 64)
	if err != nil {
		c.fail(n, path, "must be a whole number, got %q", n.Value)
		return nil, false
	}
	if v < lo || v > hi {
		c.fail(n, path, "%d is out of range (%d to %d)", v, lo, hi)
		return nil, false
	}
	return v, true
}

// duration accepts Go durations ("500ms", "1h30m") and protojson's form
// ("1.5s"), and returns protojson's form.
func (c *converter) duration(n *yaml.Node, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		c.fail(n, path, "must be a duration such as 500ms, 30s, 5m or 1h, got %s", describe(n))
		return nil, false
	}
	s := strings.TrimSpace(n.Value)
	if s == "0" {
		return "0s", true
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			c.fail(n, path, "%q needs a unit, e.g. %ss or %sms", s, s, s)
		} else {
			c.fail(n, path, "%q is not a duration such as 500ms, 30s, 5m or 1h", s)
		}
		return nil, false
	}
	return formatDuration(d), true
}

// formatDuration renders d in protojson's form: seconds with up to nine
// decimals and an "s".
func formatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign = "-"
		d = -d
	}
	secs, nanos := int64(d/time.Second), int64(d%time.Second)
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", nanos), "0")
	return fmt.Sprintf("%s%d.%ss", sign, secs, frac)
}

// strategyNames maps what people write to Strategy values.
var strategyNames = map[string]deployv1.Strategy{
	"rolling":    deployv1.Strategy_STRATEGY_ROLLING,
	"blue_green": deployv1.Strategy_STRATEGY_BLUE_GREEN,
	"blue-green": deployv1.Strategy_STRATEGY_BLUE_GREEN,
	"bluegreen":  deployv1.Strategy_STRATEGY_BLUE_GREEN,
	"canary":     deployv1.Strategy_STRATEGY_CANARY,
}

func (c *converter) enum(n *yaml.Node, ed protoreflect.EnumDescriptor, path string) (any, bool) {
	if ed.FullName() == "slipway.deploy.v1.Strategy" {
		if s, ok := strategyNames[strings.ToLower(n.Value)]; ok {
			return s.String(), true
		}
	}
	if v := ed.Values().ByName(protoreflect.Name(strings.ToUpper(n.Value))); v != nil && v.Number() != 0 {
		return string(v.Name()), true
	}
	// The short form of any enum: "hold" for NO_DATA_POLICY_HOLD.
	if z := ed.Values().ByNumber(0); z != nil {
		prefix := strings.TrimSuffix(string(z.Name()), "UNSPECIFIED")
		short := strings.ToUpper(strings.ReplaceAll(n.Value, "-", "_"))
		if v := ed.Values().ByName(protoreflect.Name(prefix + short)); v != nil && v.Number() != 0 && prefix != string(z.Name()) {
			return string(v.Name()), true
		}
	}
	if ed.FullName() == "slipway.deploy.v1.Strategy" {
		c.fail(n, path, "unknown strategy %q (want rolling, blue_green or canary)", n.Value)
		return nil, false
	}
	prefix := enumPrefix(ed)
	var names []string
	for i := 0; i < ed.Values().Len(); i++ {
		if v := ed.Values().Get(i); v.Number() != 0 {
			names = append(names, strings.ToLower(strings.TrimPrefix(string(v.Name()), prefix)))
		}
	}
	c.fail(n, path, "unknown value %q (want one of %s)", n.Value, strings.Join(names, ", "))
	return nil, false
}

// enumPrefix is the prefix every value of an enum carries, taken from its
// zero value ("RESTART_MODE_" of RESTART_MODE_UNSPECIFIED); "" if none.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	zero := ed.Values().ByNumber(0)
	if zero == nil {
		return ""
	}
	p, ok := strings.CutSuffix(string(zero.Name()), "UNSPECIFIED")
	if !ok {
		return ""
	}
	return p
}
