#!/usr/bin/env bash
# Zero-downtime benchmark of the edge, printed as a table: 20 blue/green flips
# and a full canary under keep-alive wrk load (-t2 -c64), counting every failed request
# (wrk's socket errors and non-2xx answers) and the p99, for the built-in
# proxy, nginx mode and the stack Slipway replaces - consul-template
# rendering an nginx upstream from Consul and reloading nginx on each change -
# against the same two demo backends in the same run. It runs
# BenchmarkEdgeFlips (services/edge/e2e), which needs wrk, nginx and
# consul-template (built into ./bin by scripts/tools.sh with
# SLIPWAY_TOOLS_BENCH=1, as make bench does).
# SLIPWAY_BENCH_FLIP_DURATION sets each system's run (default 120s: over 2M
# requests each at the idle machine's rate), SLIPWAY_BENCH_FLIPS the flips
# per run (default 20). SLIPWAY_BENCH_QUICK=1 smoke-tests the script (8s,
# 4 flips per system): its figures are not results.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BIN="${SLIPWAY_BIN:-$PWD/bin}"
echo "== edge: failed requests across blue/green flips under load (Slipway vs consul-template + nginx) =="
set +e
go test -run '^$' -bench '^BenchmarkEdgeFlips$' -benchtime 1x -count 1 -v -timeout 20m ./services/edge/e2e \
  | grep -v -E '^(goos:|goarch:|pkg:|cpu:|BenchmarkEdgeFlips|=== |--- (PASS|BENCH)|PASS$|ok |\s+harness_test|\s+time=)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
	echo "bench-edge-flips: BenchmarkEdgeFlips failed (exit $status)" >&2
fi
exit "$status"
