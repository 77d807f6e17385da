package command

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/spec"
	"slipway.dev/slipctl/specfile"
)

var updateCompose = flag.Bool("update", false, "rewrite the golden files under testdata/compose")

// composeEnv is the environment the golden Compose files are interpolated
// with: nothing of the test's own.
var composeEnv = []string{"TAG=v2", "GREETING=hello from env", "EMPTY_VAR="}

// TestImportComposeGolden runs slipctl import compose on every
// testdata/compose/*.compose.yml and compares the exit code, stdout,
// stderr (the warnings) and every spec file written with NAME.golden
// (go test -run TestImportComposeGolden -update rewrites them). Every
// spec written must read back, through the file format deploy -f reads,
// as a spec the coordinator's rules accept.
func TestImportComposeGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "compose", "*.compose.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden Compose files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".compose.yml")
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			args := []string{"import", "compose", file, "--out", out}
			if b, err := os.ReadFile(strings.TrimSuffix(file, ".compose.yml") + ".args"); err == nil {
				args = append(args, strings.Fields(string(b))...)
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), args, Env{
				Stdout: &stdout, Stderr: &stderr,
				Getenv:  func(string) string { return "" },
				Environ: func() []string { return composeEnv },
				Now:     time.Now,
			})
			var got strings.Builder
			clean := func(s string) string { return strings.ReplaceAll(s, out, "OUT") }
			fmt.Fprintf(&got, "== exit %d\n== stdout\n%s== stderr\n%s", code, clean(stdout.String()), clean(stderr.String()))
			written, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
			sort.Strings(written)
			for _, w := range written {
				b, err := os.ReadFile(w)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&got, "== file %s\n%s", filepath.Base(w), b)
				f, err := specfile.Open(w)
				if err != nil {
					t.Errorf("%s does not read back: %v", filepath.Base(w), err)
					continue
				}
				if vs := spec.Validate(f.Spec); vs != nil {
					t.Errorf("%s: the coordinator's rules refuse it: %v", filepath.Base(w), vs)
				}
			}
			if code != 0 && len(written) > 0 {
				t.Errorf("exit %d but %d file(s) written: a refused import must write nothing", code, len(written))
			}
			golden := strings.TrimSuffix(file, ".compose.yml") + ".golden"
			if *updateCompose {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if d := cmp.Diff(string(want), got.String()); d != "" {
				t.Errorf("import compose %s differs from %s (-want +got):\n%s", file, golden, d)
			}
		})
	}
}

// TestImportComposeOutputs checks the other ways out: --out - prints the
// specs on stdout separated by ---, each readable by deploy -f; an existing
// spec file is not overwritten without --force (and nothing is written);
// -o json lists the files, warnings and secret commands per service.
func TestImportComposeOutputs(t *testing.T) {
	file := filepath.Join("testdata", "compose", "webapp.compose.yml")
	runEnv := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), args, Env{Stdout: &stdout, Stderr: &stderr,
			Getenv: func(string) string { return "" }, Environ: func() []string { return composeEnv }, Now: time.Now})
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := runEnv("import", "compose", "-f", file, "--out", "-")
	if code != 0 {
		t.Fatalf("--out -: exit %d\n%s", code, errOut)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 3 {
		t.Fatalf("--out - printed %d documents, want 3 (cache, db, web):\n%s", len(docs), out)
	}
	for i, want := range []string{"cache", "db", "web"} {
		f, err := specfile.Load("-", []byte(docs[i]))
		if err != nil || f.Spec.GetName() != want {
			t.Errorf("document %d: %v, service %q, want %q", i, err, specName(f), want)
		}
	}
	if !strings.Contains(errOut, "slipctl secret create db_password --service db --service web --from-file ./secrets/db_password.txt") {
		t.Errorf("--out -: the secret command is not on stderr:\n%s", errOut)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runEnv("import", "compose", file, "--out", dir)
	if code != 2 || !strings.Contains(errOut, "web.yaml exists; nothing written (--force overwrites)") {
		t.Errorf("existing file: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "db.yaml")); err == nil {
		t.Error("db.yaml written though web.yaml existed")
	}
	code, out, errOut = runEnv("import", "compose", file, "--out", dir, "--force", "-o", "json")
	if code != 0 {
		t.Fatalf("--force -o json: exit %d\n%s", code, errOut)
	}
	var res importJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if len(res.Services) != 3 || res.Services[2].Service != "web" || res.Services[2].File != filepath.Join(dir, "web.yaml") ||
		len(res.Services[2].Commands) != 1 || len(res.Services[2].Warnings) == 0 {
		t.Errorf("-o json = %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "web.yaml")); !strings.Contains(string(b), "image: example/web:v2") {
		t.Errorf("--force did not overwrite web.yaml:\n%s", b)
	}

	code, _, errOut = runEnv("import", "compose", file, "--service", "nosuch", "--out", dir)
	if code != 2 || !strings.Contains(errOut, `--service "nosuch": no such service in the file (it has cache, db, web)`) {
		t.Errorf("--service nosuch: exit %d, stderr %q", code, errOut)
	}
}

func specName(f *specfile.File) string {
	if f == nil {
		return ""
	}
	return f.Spec.GetName()
}
