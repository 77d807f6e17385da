// Package buildinfo holds the version and commit every Slipway binary is
// stamped with at build time, and prints them for -version.
//
// make build sets them with the linker:
//
//	go build -ldflags "-X slipway.dev/platform/buildinfo.Version=v0.3.0 -X slipway.dev/platform/buildinfo.Commit=0123abcd"
//
// A plain go build leaves Version "dev" and takes the commit from the Go
// toolchain's VCS stamp when there is one.
package buildinfo

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set by the linker (-X); see the package doc.
var (
	// Version is the release version, e.g. "v0.3.0" or "v0.3.0-4-g0123abc".
	Version = "dev"
	// Commit is the commit the binary was built from.
	Commit = ""
)

// Info is what a binary knows about its build.
type Info struct {
	// Version is the release version ("dev" for an unstamped build).
	Version string `json:"version"`
	// Commit is the commit hash, "unknown" when neither the linker nor the
	// toolchain recorded one.
	Commit string `json:"commit"`
	// Modified is true when the toolchain saw uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the Go release that built it.
	Go string `json:"go"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns the build's information.
func Get() Info {
	in := Info{Version: Version, Commit: Commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.modified":
				in.Modified = in.Modified || (s.Value == "true" && Commit == "")
			}
		}
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// String renders the information on one line for program, e.g.
// "slipctl v0.3.0 (commit 0123abcd, go1.26.0, linux/amd64)".
func (in Info) String() string {
	commit := in.Commit
	if in.Modified {
		commit += "+modified"
	}
	return fmt.Sprintf("%s (commit %s, %s, %s)", in.Version, commit, in.Go, in.Platform)
}

// Line is program's version line.
func Line(program string) string { return program + " " + Get().String() }

// Flag registers -version on fs, so that -h lists it and parsing accepts
// it; main acts on it before parsing, with Requested.
func Flag(fs *flag.FlagSet) *bool {
	return fs.Bool("version", false, "print the version and commit, and exit")
}

// Requested reports whether args (without the program name) ask for the
// version: -version or --version anywhere before "--", or "version" as the
// only argument.
func Requested(args []string) bool {
	if len(args) == 1 && args[0] == "version" {
		return true
	}
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-version", "--version", "-version=true", "--version=true":
			return true
		}
	}
	return false
}

// Print writes program's version line to w.
func Print(w io.Writer, program string) {
	fmt.Fprintln(w, Line(program))
}
