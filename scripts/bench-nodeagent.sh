#!/usr/bin/env bash
# Node agent benchmark: allocation start to registered-and-passing in Consul
# (p50/p99 over 20 starts) beside `docker run` of the same image to its
# /healthz answering, measured in the same run, with the ratio. The agent
# runs as deployed, on mutual TLS: the bench makes a throwaway CA, the
# agent's certificate (named by its node id) and a coordinator certificate
# for its own calls under its temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
[ -x bin/consul ] || scripts/tools.sh
go build -o bin/ ./services/nodeagent/cmd/slipway-nodeagent ./services/nodeagent/cmd/slipway-nodeagent-bench
scripts/demo-images.sh >/dev/null
exec bin/slipway-nodeagent-bench -bin bin -n "${BENCH_N:-20}" -image "${BENCH_IMAGE:-slipway/demo:v1}"
