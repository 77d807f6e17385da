#!/usr/bin/env bash
# Placement throughput: BenchmarkPlace10kOn1k (10,000 allocations across
# 1,000 simulated nodes, pure placement, no raft) beside Nomad's published
# scheduler throughput of 1,500-3,750 allocations/s. Nomad cannot run here
# (no network for its binary), so its figure is the published one, not a
# measurement of this run; the ratio says how far placement is from being
# the bottleneck.
# Then placement with the raft commit: BenchmarkPlaceCommit10k (engine)
# places 10,000 allocations of a new service on 1,000 nodes through the
# engine and commits them through a real 3-node raft cluster (bolt logs,
# mutual TLS on loopback), beside raw raft applying no-op entries of the
# same sizes on the same cluster in the same run.
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

out=$(go test -run '^$' -bench '^BenchmarkPlaceCommit10k$' -benchtime 1x -count 1 ./engine/ 2>&1) || { echo "$out" >&2; echo "bench-placement: BenchmarkPlaceCommit10k failed" >&2; exit 1; }
metric() { awk -v m="$1" '$1 ~ /^BenchmarkPlaceCommit10k(-[0-9]+)?$/ { for (i = 1; i <= NF; i++) if ($(i+1) == m) print $i }' <<<"$out"; }
[ -n "$(metric allocs/s)" ] || { echo "$out" >&2; echo "bench-placement: no figures" >&2; exit 1; }
echo
printf '%-44s %14s %12s %10s\n' "placed and committed (10k on 1k nodes, raft)" "allocs/s" "ratio" "ms"
printf '%-44s %14.0f %12s %10.0f\n' "slipway engine: decide + place + commit" "$(metric allocs/s)" "" "$(metric ms_engine)"
printf '%-44s %14.0f %12s %10.0f\n' "raw raft: same entry sizes as no-ops (peer)" "$(metric raw_allocs/s)" "" "$(metric ms_raw)"
awk -v a="$(metric allocs/s)" -v r="$(metric raw_allocs/s)" -v e="$(metric entries)" -v m="$(metric entry_MiB)" 'BEGIN {
	printf "%-44s %14s %11.2fx\n", "ratio engine / raw raft", "", a / r
	printf "(%d raft entries, %.2f MiB in all)\n", e, m
}'
