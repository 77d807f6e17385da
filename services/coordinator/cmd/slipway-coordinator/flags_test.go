package main

import (
	"flag"
	"strings"
	"testing"
)

func TestEnvDefaults(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	dir := fs.String("data-dir", "x", "")
	n := fs.Int("bootstrap-expect", 0, "")
	t.Setenv("SLIPWAY_DATA_DIR", "/var/lib/slipway")
	t.Setenv("SLIPWAY_BOOTSTRAP_EXPECT", "3")
	if err := envDefaults(fs); err != nil {
		t.Fatal(err)
	}
	if *dir != "/var/lib/slipway" || *n != 3 {
		t.Errorf("from env: data-dir=%q bootstrap-expect=%d", *dir, *n)
	}
	// The command line wins over the environment.
	if err := fs.Parse([]string{"-bootstrap-expect", "5"}); err != nil || *n != 5 {
		t.Errorf("command line: bootstrap-expect=%d, %v", *n, err)
	}
	t.Setenv("SLIPWAY_BOOTSTRAP_EXPECT", "three")
	err := envDefaults(fs)
	if err == nil || !strings.Contains(err.Error(), "SLIPWAY_BOOTSTRAP_EXPECT") {
		t.Errorf("bad env value: err = %v, want it to name SLIPWAY_BOOTSTRAP_EXPECT", err)
	}
}
