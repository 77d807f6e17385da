#!/usr/bin/env bash
# The guided demo on the embedded default stack (`make run`; `make run
# ONCE=1` exits after the summary, non-zero if any request failed). This
# script only builds what the demo needs and hands over to the Go guide
# (deployments/guide/cmd/slipway-guide), which starts Consul, a coordinator,
# a node agent and an edge, plays the releases under live traffic and stops
# everything it started on exit (also on Ctrl-C and on failure). The stack
# runs on mutual TLS: the guide makes a throwaway CA and one certificate per
# component under .run/tls and prints how to use slipctl and grpcurl with the
# operator's certificate.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/slipway-coordinator ] && [ -x bin/slipway-nodeagent ] && [ -x bin/slipway-edge ] && [ -x bin/slipctl ] || make build
[ -x bin/consul ] || scripts/tools.sh
scripts/demo-images.sh
go build -o bin/slipway-guide ./deployments/guide/cmd/slipway-guide
args=()
[ -n "${ONCE:-}" ] && args+=(-once)
exec bin/slipway-guide "${args[@]}" "$@"
