#!/usr/bin/env bash
# Canary detection: BenchmarkDetection (services/coordinator/analysis) runs
# the pure judge on synthetic traffic from a seeded generator (DETECTION_RATE
# requests/s, default 200, a modest service; DETECTION_RUNS seeds per
# cell, default 20): a canary with error rate e at weight w, stable at 0.1%.
# For each cell: the median seconds from the canary's weight to the
# reverting verdict and the median canary errors served until then, for
# Slipway's analysis (10s windows, failure_limit 2; "floor" adds the 99%
# success floor to the comparison, "compare" is the comparison alone) beside
# a Flagger-style fixed threshold (99% success over 1m, 2 failed checks) on
# the same traffic; "rev" is how many runs reverted within 15 minutes (for
# e=0.1%, a healthy canary, those are false reverts). Not the real stack: the
# end-to-end tests show the real one reverts a 5% canary at 50% after its 2
# failed 2s windows in 5-6 s.
set -euo pipefail
cd "$(dirname "$0")/../services/coordinator"
out=$(go test -run '^$' -bench '^BenchmarkDetection$' -benchtime 1x -count 1 ./analysis/)
rows=$(grep -c '^BenchmarkDetection/' <<<"$out" || true)
if [ "$rows" -ne 12 ]; then
	echo "$out" >&2
	echo "bench-detection: want 12 result rows, got $rows" >&2
	exit 1
fi
awk '
function metric(name,   i) { for (i = 1; i < NF; i++) if ($(i+1) == name) return $i; return "?" }
function show(s) { return (s + 0 >= 900) ? ">900" : s }
BEGIN {
	printf "%-6s %-4s | %-22s | %-22s | %-22s | %s\n", "e", "w", "slipway floor+compare", "slipway compare", "flagger 99%/1m", "bad flagger/floor"
	printf "%-6s %-4s | %6s %8s %6s | %6s %8s %6s | %6s %8s %6s |\n", "", "", "s", "bad", "rev", "s", "bad", "rev", "s", "bad", "rev"
}
/^BenchmarkDetection\// {
	split($1, p, "/"); e = substr(p[2], 3); w = p[3]; sub(/-[0-9]+$/, "", w); w = substr(w, 3)
	fb = metric("floor-bad"); lb = metric("flagger-bad")
	ratio = (fb + 0 > 0) ? sprintf("%.1fx", lb / fb) : "-"
	printf "%-6s %-4s | %6s %8s %3d/%-2d | %6s %8s %3d/%-2d | %6s %8s %3d/%-2d | %s\n", e, w,
		show(metric("floor-s")), fb, metric("floor-reverted"), metric("runs"),
		show(metric("compare-s")), metric("compare-bad"), metric("compare-reverted"), metric("runs"),
		show(metric("flagger-s")), lb, metric("flagger-reverted"), metric("runs"), ratio
}' <<<"$out"
