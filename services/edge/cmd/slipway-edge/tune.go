package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the GOGC value tuneGC sets for the built-in proxy.
const defaultGCPercent = 400

// tuneGC sets the garbage collector's target percentage (GOGC) to
// defaultGCPercent unless the GOGC environment variable is set, and returns
// the previous value. The proxy's live heap is small and its garbage per
// request roughly constant, so a higher target trades a few MB of heap for
// much less GC CPU per request.
func tuneGC() int {
	if os.Getenv("GOGC") != "" {
		prev := debug.SetGCPercent(defaultGCPercent)
		debug.SetGCPercent(prev)
		return prev
	}
	return debug.SetGCPercent(defaultGCPercent)
}
