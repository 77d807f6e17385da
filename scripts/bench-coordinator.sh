#!/usr/bin/env bash
# Committed Deploys/s and p50/p99 latency on a 3-node loopback cluster of real
# slipway-coordinator processes, with 1 and 32 concurrent clients, compared
# with raw raft applies of a same-size no-op entry measured in the same run.
# The cluster measured first is the secured one, as deployed: mutual TLS on
# gRPC and raft (coordbench makes a throwaway CA and the certificates in its
# temporary directory, removed on exit) and a deploy token on every Deploy;
# then a plaintext one without tokens (-insecure, -acl=false), one after the
# other on the same cores, and the ratio of the two.
# DURATION (default 5s) is the measuring time per row.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/slipway-coordinator" ./services/coordinator/cmd/slipway-coordinator
go build -o "$tmp/coordbench" ./services/coordinator/internal/coordbench
"$tmp/coordbench" -bin "$tmp/slipway-coordinator" -duration "${DURATION:-5s}"
