#!/usr/bin/env bash
# Failover: the leader of three real coordinator processes (engine on,
# mutual TLS and tokens, real Consul and a process-driver agent) is
# SIGKILLed right after it acknowledged a Deploy, RUNS times (default 20);
# from the kill to a new leader known to a survivor, and to the rollout
# resumed (the first step the new leader committed for it), p50/p99. The
# peer is raft itself: the configured heartbeat timeout is the least a
# follower waits before it stands, and "resumed / leader" is what the
# engine adds on top of the election.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLIPWAY_BIN=${SLIPWAY_BIN:-$PWD/bin}
cd services/coordinator
out=$(FAILOVER_RUNS=${RUNS:-20} go test -run '^$' -bench '^BenchmarkFailover$' -benchtime 1x -count 1 -timeout 30m ./engine/ 2>&1) || { echo "$out" >&2; echo "bench-failover: failed" >&2; exit 1; }
metric() { awk -v m="$1" '$1 ~ /^BenchmarkFailover(-[0-9]+)?$/ { for (i = 1; i <= NF; i++) if ($(i+1) == m) print $i }' <<<"$out"; }
runs=$(metric runs | cut -d. -f1)
[ -n "$runs" ] || { echo "$out" >&2; echo "bench-failover: no figures" >&2; exit 1; }
printf '%-52s %10s %10s\n' "leader SIGKILL, $runs runs (heartbeat timeout 300ms)" "p50 ms" "p99 ms"
printf '%-52s %10.0f %10.0f\n' "new leader known to a survivor" "$(metric ms_leader_p50)" "$(metric ms_leader_p99)"
printf '%-52s %10.0f %10.0f\n' "rollout resumed (first step by the new leader)" "$(metric ms_resumed_p50)" "$(metric ms_resumed_p99)"
awk -v l="$(metric ms_leader_p50)" -v r="$(metric ms_resumed_p50)" 'BEGIN { printf "%-52s %9.2fx\n", "resumed / new leader (p50)", r / l }'
