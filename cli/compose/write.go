package compose

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Marshal renders spec as a spec file in the form people write (and
// slipctl deploy -f reads): proto field names in the proto's order,
// durations such as "10s", enums without their prefix ("rolling",
// "delay"), file modes in octal. comment lines, when given, head the file.
func Marshal(spec *deployv1.ServiceSpec, comment []string) ([]byte, error) {
	root := message(spec.ProtoReflect())
	var b bytes.Buffer
	for _, c := range comment {
		if c == "" {
			b.WriteString("#\n")
			continue
		}
		b.WriteString("# " + c + "\n")
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("compose: render spec %s: %w", spec.GetName(), err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func scalar(v, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}

func message(m protoreflect.Message) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		n.Content = append(n.Content, scalar(string(fd.Name()), "!!str"), value(fd, m.Get(fd)))
	}
	return n
}

func value(fd protoreflect.FieldDescriptor, v protoreflect.Value) *yaml.Node {
	switch {
	case fd.IsMap():
		mp := v.Map()
		keys := make([]string, 0, mp.Len())
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k.String())
			return true
		})
		sort.Strings(keys)
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			n.Content = append(n.Content, scalar(k, "!!str"), single(fd.MapValue(), mp.Get(protoreflect.ValueOfString(k).MapKey())))
		}
		return n
	case fd.IsList():
		l := v.List()
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if l.Len() > 0 && fd.Kind() != protoreflect.MessageKind {
			n.Style = yaml.FlowStyle
		}
		for i := 0; i < l.Len(); i++ {
			n.Content = append(n.Content, single(fd, l.Get(i)))
		}
		return n
	}
	return single(fd, v)
}

func single(fd protoreflect.FieldDescriptor, v protoreflect.Value) *yaml.Node {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		if fd.Message().FullName() == "google.protobuf.Duration" {
			d := &durationpb.Duration{}
			d.Seconds = v.Message().Get(fd.Message().Fields().ByName("seconds")).Int()
			d.Nanos = int32(v.Message().Get(fd.Message().Fields().ByName("nanos")).Int())
			return scalar(d.AsDuration().String(), "!!str")
		}
		return message(v.Message())
	case protoreflect.StringKind:
		return scalar(v.String(), "!!str")
	case protoreflect.BoolKind:
		return scalar(strconv.FormatBool(v.Bool()), "!!bool")
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		name := string(ev.Name())
		prefix := strings.ToUpper(camelToSnake(string(fd.Enum().Name()))) + "_"
		return scalar(strings.ToLower(strings.TrimPrefix(name, prefix)), "!!str")
	case protoreflect.Uint32Kind:
		if fd.Name() == "mode" {
			return scalar(fmt.Sprintf("0o%o", v.Uint()), "!!int")
		}
		return scalar(strconv.FormatUint(v.Uint(), 10), "!!int")
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return scalar(strconv.FormatInt(v.Int(), 10), "!!int")
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind, protoreflect.Fixed32Kind:
		return scalar(strconv.FormatUint(v.Uint(), 10), "!!int")
	case protoreflect.DoubleKind, protoreflect.FloatKind:
		return scalar(strconv.FormatFloat(v.Float(), 'g', -1, 64), "!!float")
	}
	return scalar(v.String(), "!!str")
}

// camelToSnake turns "RestartMode" into "Restart_Mode".
func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}
