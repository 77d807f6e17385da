#!/usr/bin/env bash
# Placement throughput: BenchmarkPlace10kOn1k (10,000 allocations across
# 1,000 simulated nodes, pure placement, no raft) beside Nomad's published
# scheduler throughput of 1,500-3,750 allocations/s. Nomad cannot run here
# (no network for its binary), so its figure is the published one, not a
# measurement of this run; the ratio says how far placement is from being
# the bottleneck.
set -euo pipefail
cd "$(dirname "$0")/../services/coordinator"
out=$(go test -run '^$' -bench '^BenchmarkPlace10kOn1k$' -benchtime "${BENCHTIME:-5x}" -count 1 ./placement/)
rate=$(awk '/^BenchmarkPlace10kOn1k/ { for (i = 1; i <= NF; i++) if ($(i+1) == "allocs/s") print $i }' <<<"$out")
if [ -z "$rate" ]; then
	echo "$out" >&2
	echo "bench-placement: no allocs/s in the benchmark output" >&2
	exit 1
fi
printf '%-44s %14s %12s\n' "placement (10k allocations on 1k nodes)" "allocs/s" "ratio"
printf '%-44s %14.0f %12s\n' "slipway placement.Place" "$rate" "1.00"
awk -v r="$rate" 'BEGIN {
	printf "%-44s %14d %11.1fx\n", "nomad published, low (1,500/s)", 1500, r / 1500
	printf "%-44s %14d %11.1fx\n", "nomad published, high (3,750/s)", 3750, r / 3750
}'
