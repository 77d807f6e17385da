#!/usr/bin/env bash
# Edge benchmarks, printed as tables: (a) built-in proxy vs nginx (Lua
# balancer) throughput and p99 on the same demo backend in the same run (wrk),
# as ratios, with the CPU the target's processes used during the run
# (utime+stime from /proc: the edge and its nginx master/workers, or the demo
# backend for "backend direct") and requests per CPU-second, also as ratios
# to nginx: on a small machine wrk, the backend and the proxy share the
# cores, so req/CPU-s is the steadier measure of the proxy's cost;
# (b) propagation latency from a Consul KV change to the first request routed
# by the new table, p50/p99, per mode.
# SLIPWAY_BENCH_DURATION sets each wrk run (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BIN="${SLIPWAY_BIN:-$PWD/bin}"
echo "== edge: built-in proxy vs nginx; propagation latency =="
SLIPWAY_BENCH=1 go test -count=1 -run '^TestBenchEdge$' -v -timeout 10m ./services/edge/e2e \
  | grep -v -E '^(=== |--- |PASS|ok |\s+harness_test|\s+time=)' || true
