#!/usr/bin/env bash
# Committed Deploys/s and p50/p99 latency on a 3-node loopback cluster of real
# slipway-coordinator processes, with 1 and 32 concurrent clients, compared
# with raw raft applies of a same-size no-op entry measured in the same run.
# DURATION (default 5s) is the measuring time per row.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/slipway-coordinator" ./services/coordinator/cmd/slipway-coordinator
go build -o "$tmp/coordbench" ./services/coordinator/internal/coordbench
"$tmp/coordbench" -bin "$tmp/slipway-coordinator" -duration "${DURATION:-5s}"
