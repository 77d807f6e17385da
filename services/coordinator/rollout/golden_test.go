package rollout

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var writeGolden = flag.Bool("write-golden", false, "write missing golden machine states to testdata/golden")

// goldenScripts are the scripts whose machine states (half way through and
// at the end) are kept as written by the coordinator that recorded them.
var goldenScripts = []string{"rolling", "blue_green", "canary", "canary_pause", "supersede", "lost_instances", "rolling_failures"}

// TestGoldenMachineStatesStillDecode: the machine state is JSON inside the
// replicated log (RolloutStepOp.machine, MachineRecord.state). A state a
// coordinator wrote must decode field for field (no field unknown, none
// renamed) and encode to the same bytes again.
func TestGoldenMachineStatesStillDecode(t *testing.T) {
	if *writeGolden {
		writeMissingMachines(t)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden machine states (%v): run with -write-golden", err)
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.TrimSpace(raw)
		var st State
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			t.Errorf("%s no longer decodes: %v", name, err)
			continue
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, raw) {
			t.Errorf("%s encodes differently now:\nrecorded %s\nnow      %s", name, raw, again)
		}
	}
}

func writeMissingMachines(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range goldenScripts {
		raw, err := os.ReadFile(filepath.Join("testdata", s+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		var lines [][]string
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			text := sc.Text()
			if i := strings.Index(text, "#"); i >= 0 {
				text = text[:i]
			}
			if f := strings.Fields(text); len(f) > 0 {
				lines = append(lines, f)
			}
		}
		w := newWorld(t)
		for i, f := range lines {
			if err := w.exec(f); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			if i == len(lines)/2 || i == len(lines)-1 {
				suffix := "-end.json"
				if i == len(lines)/2 {
					suffix = "-mid.json"
				}
				name := filepath.Join(dir, s+suffix)
				if _, err := os.Stat(name); err == nil {
					continue // never rewritten
				}
				if err := os.WriteFile(name, append(bytes.Clone(w.state), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestMachineStateFieldsAreTagged: every field of State (and of the types
// it holds) names its JSON key explicitly, so renaming a Go field cannot
// silently change the log format.
func TestMachineStateFieldsAreTagged(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map || ty.Kind() == reflect.Pointer {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || ty.PkgPath() != reflect.TypeFor[State]().PkgPath() || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			if tag, ok := f.Tag.Lookup("json"); !ok || tag == "" {
				t.Errorf("%s.%s has no json tag: the machine state is part of the replicated log", path, f.Name)
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeFor[State](), "State")
	if len(seen) < 4 {
		t.Fatalf("walked only %d types", len(seen))
	}
}
