package buildinfo

import (
	"bytes"
	"flag"
	"runtime"
	"strings"
	"testing"
)

func TestLineNamesVersionCommitAndPlatform(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v1.2.3", "0123456789ab"
	var b bytes.Buffer
	Print(&b, "slipctl")
	want := "slipctl v1.2.3 (commit 0123456789ab, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if b.String() != want {
		t.Errorf("Print() = %q, want %q", b.String(), want)
	}
	if in := Get(); in.Modified {
		t.Errorf("a stamped commit must not be marked modified by the toolchain's stamp: %+v", in)
	}
}

func TestUnstampedBuildIsDev(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "dev", ""
	in := Get()
	if in.Version != "dev" || in.Commit == "" {
		t.Errorf("Get() = %+v, want version dev and a commit (the toolchain's or \"unknown\")", in)
	}
}

func TestFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	v := Flag(fs)
	if err := fs.Parse([]string{"-version"}); err != nil || !*v {
		t.Fatalf("-version: %v, set %v", err, *v)
	}
	if !strings.Contains(fs.Lookup("version").Usage, "version") {
		t.Errorf("usage %q", fs.Lookup("version").Usage)
	}
}

func TestRequested(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"-version"}, true},
		{[]string{"--version"}, true},
		{[]string{"version"}, true},
		{[]string{"-log-level", "debug", "-version"}, true},
		{[]string{"-id", "version"}, false},
		{[]string{"--", "-version"}, false},
		{nil, false},
	} {
		if got := Requested(tt.args); got != tt.want {
			t.Errorf("Requested(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}
