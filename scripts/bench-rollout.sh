#!/usr/bin/env bash
# Rolling update of 5 instances (max_parallel 1, min_healthy_time 1s) through
# the real stack, against the sum of its parts measured in the same run,
# reported as a ratio (1.00 = no overhead beyond the parts):
#   process driver: BenchmarkRollingFive (engine): parts = 5 x (one instance
#     replaced through the stack with min_healthy_time ~0 + min_healthy_time);
#   docker driver:  BenchmarkRollingFiveDocker (e2e, with an edge in proxy
#     mode): parts = 5 x (docker run of the new image until /healthz answers
#     + min_healthy_time).
# The docker row is skipped when no Docker Engine answers. Every component
# runs on mutual TLS with certificates from the test's throwaway CA
# (platform/testenv), as deployed.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BIN=${SLIPWAY_BIN:-$PWD/bin}
cd services/coordinator
metric() { awk -v b="$1" -v m="$2" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 1; i <= NF; i++) if ($(i+1) == m) print $i }' <<<"$3"; }
run() { # name package -> sets out
	out=$(go test -run '^$' -bench "^$1\$" -benchtime 1x -count 1 "$2" 2>&1) || { echo "$out" >&2; echo "bench-rollout: $1 failed" >&2; exit 1; }
}
printf '%-40s %10s %12s %10s\n' "rolling update of 5 instances" "total s" "sum parts s" "ratio"
run BenchmarkRollingFive ./engine/
total=$(metric BenchmarkRollingFive s_total "$out")
one=$(metric BenchmarkRollingFive s_one_replace "$out")
ratio=$(metric BenchmarkRollingFive ratio_vs_sum "$out")
[ -n "$ratio" ] || { echo "$out" >&2; echo "bench-rollout: no ratio from BenchmarkRollingFive" >&2; exit 1; }
awk -v t="$total" -v o="$one" -v r="$ratio" 'BEGIN { printf "%-40s %10.2f %12.2f %9.2fx\n", "process driver (5 x (replace + 1s))", t, 5 * (o + 1), r }'
if ! docker info >/dev/null 2>&1; then
	echo "docker driver: skipped (Docker Engine not answering)"
	exit 0
fi
run BenchmarkRollingFiveDocker ./e2e/
total=$(metric BenchmarkRollingFiveDocker s_total "$out")
sum=$(metric BenchmarkRollingFiveDocker s_sum "$out")
start=$(metric BenchmarkRollingFiveDocker s_container_start "$out")
ratio=$(metric BenchmarkRollingFiveDocker ratio_vs_sum "$out")
[ -n "$ratio" ] || { echo "$out" >&2; echo "bench-rollout: no ratio from BenchmarkRollingFiveDocker" >&2; exit 1; }
awk -v t="$total" -v s="$sum" -v r="$ratio" -v c="$start" 'BEGIN { printf "%-40s %10.2f %12.2f %9.2fx\n", sprintf("docker driver (5 x (start %.2fs + 1s))", c), t, s, r }'
