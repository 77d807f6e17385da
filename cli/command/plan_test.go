package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/slipctl/exitcode"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestValidateNamesEveryViolationAtItsLine checks validate offline: the
// coordinator's own rules (platform/spec), each violation at its line.
func TestValidateNamesEveryViolationAtItsLine(t *testing.T) {
	bad := writeFile(t, "bad.yaml", `name: Web_1
image: slipway/demo:v2
count: -1
port: 70000
env:
  PORT: "80"
check: {http: /healthz, interval: 1s, timeout: 2s}
update:
  strategy: canary
  canary:
    steps:
      - {weight: 50, pause: 10s}
      - {weight: 20}
`)
	good := writeFile(t, "good.yaml", "name: web\nimage: slipway/demo:v2\nport: 8080\n")
	code, out, errOut := run(t, nil, "validate", "-f", good, "-f", bad)
	if code != exitcode.Usage {
		t.Errorf("exit %d, want %d", code, exitcode.Usage)
	}
	if want := good + ": valid (service web)\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	got := strings.Split(strings.TrimSpace(errOut), "\n")
	want := []string{
		"slipctl: invalid argument: 6 violation(s):",
		"  " + bad + `:1: name: "Web_1" is not a DNS label (lower-case letters, digits and '-', starting with a letter and not ending with '-')`,
		"  " + bad + ":3: count: must be between 0 and 1000, got -1",
		"  " + bad + ":4: port: must be between 1 and 65535, got 70000",
		"  " + bad + `:6: env["PORT"]: PORT is set by the node agent`,
		"  " + bad + ":7: check.timeout: 2s must not exceed the interval (1s)",
		"  " + bad + ":13: update.canary.steps[1].weight: 20 must be greater than the previous step's weight (50)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stderr mismatch (-want +got):\n%s", diff)
	}

	// A file that does not parse: its problems, at their lines, too.
	broken := writeFile(t, "broken.yaml", "name: web\nimage: slipway/demo:v2\nport: 80\nreplicas: 3\n")
	code, _, errOut = run(t, nil, "validate", "-f", broken)
	if code != exitcode.Usage || !strings.Contains(errOut, broken+`:4: replicas: unknown field "replicas"`) {
		t.Errorf("broken file: exit %d, stderr %q", code, errOut)
	}

	// JSON for scripts: every file with its violations.
	code, out, _ = run(t, nil, "validate", "-f", good, "-f", bad, "-o", "json")
	var res struct {
		Files []struct {
			File       string
			Valid      bool
			Violations []struct {
				Line  int
				Field string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitcode.Usage || len(res.Files) != 2 {
		t.Fatalf("validate -o json: exit %d, %v\n%s", code, err, out)
	}
	if !res.Files[0].Valid || res.Files[1].Valid || len(res.Files[1].Violations) != 6 ||
		res.Files[1].Violations[5].Line != 13 || res.Files[1].Violations[5].Field != "update.canary.steps[1].weight" {
		t.Errorf("validate -o json = %+v", res)
	}

	if code, _, errOut := run(t, nil, "validate"); code != exitcode.Usage || !strings.Contains(errOut, "-f FILE is required") {
		t.Errorf("validate without -f: exit %d, stderr %q", code, errOut)
	}
}

// TestValidateExamples checks the example specs with the command itself.
func TestValidateExamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "deployments", "examples", "*.yaml"))
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	args := []string{"validate"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	if code, out, errOut := run(t, nil, args...); code != exitcode.OK || strings.Count(out, ": valid") != len(files) {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}
