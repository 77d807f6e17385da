#!/usr/bin/env bash
# Edge benchmarks, printed as tables: (a) built-in proxy vs nginx (Lua
# balancer) throughput and p99 on the same demo backend in the same run (wrk),
# as ratios, with the CPU the target's processes used during the run
# (utime+stime from /proc: the edge and its nginx master/workers, or the demo
# backend for "backend direct") and requests per CPU-second, also as ratios
# to nginx: on a small machine wrk, the backend and the proxy share the
# cores, so req/CPU-s is the steadier measure of the proxy's cost;
# (b) propagation latency from a Consul KV change to the first request routed
# by the new table, p50/p99, per mode, idle and (c) while wrk (-t2 -c64
# keep-alive) loads the edge being measured.
# The edges run as deployed, with mutual TLS on their gRPC listener
# (certificates from the test's throwaway CA, platform/testenv); the HTTP
# path measured is the same as without it.
# It runs BenchmarkEdge (services/edge/e2e) once, which needs wrk and nginx
# (make tools); the go test header, result and PASS/ok lines are filtered out
# so only the tables (and any failure) are printed.
# Peers in the same run, alternated over 3 rounds: the backend direct,
# plain nginx (no Lua), HAProxy (Debian haproxy) and Caddy (built into ./bin
# by make tools), each a keep-alive reverse proxy with 2 workers/threads.
# SLIPWAY_BENCH_DURATION sets each wrk run (default 10s).
# SLIPWAY_BENCH_QUICK=1 smoke-tests the whole script in about a minute (2s
# runs, one round, 20 propagation flips): its figures are not results.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BIN="${SLIPWAY_BIN:-$PWD/bin}"
echo "== edge: built-in proxy vs nginx; propagation latency =="
set +e
go test -run '^$' -bench '^BenchmarkEdge$' -benchtime 1x -count 1 -v -timeout 10m ./services/edge/e2e \
  | grep -v -E '^(goos:|goarch:|pkg:|cpu:|BenchmarkEdge|=== |--- (PASS|BENCH)|PASS$|ok |\s+harness_test|\s+time=)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
	echo "bench-edge: BenchmarkEdge failed (exit $status)" >&2
fi
exit "$status"
