#!/usr/bin/env bash
# The guided demo on the embedded default stack. At this stage: a single-node
# coordinator on localhost:7400, the example spec deployed through slipctl,
# and the release history read back. Ctrl-C stops it; ONCE=1 exits after the
# walkthrough (non-zero if any step failed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/bin
state=$root/.run
addr=${SLIPWAY_ADDR:-127.0.0.1:7400}
raft=${SLIPWAY_RAFT_ADDR:-127.0.0.1:7401}
export SLIPWAY_ADDR=$addr

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

rm -rf "$state" && mkdir -p "$state"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting a single-node coordinator on $addr (raft $raft, data in .run/)"
"$bin/slipway-coordinator" -id demo-1 -bootstrap -data-dir "$state/coordinator" \
	-grpc-addr "$addr" -raft-addr "$raft" -log-level warn >"$state/coordinator.log" 2>&1 &
pids+=($!)

for i in $(seq 1 100); do
	if "$bin/slipctl" cluster leader >/dev/null 2>&1; then break; fi
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		echo "coordinator exited; its log:" >&2
		cat "$state/coordinator.log" >&2
		exit 1
	fi
	sleep 0.1
done
"$bin/slipctl" cluster leader

say "grpcurl -plaintext $addr list"
"$bin/grpcurl" -plaintext "$addr" list

say "slipctl deploy -f deployments/examples/canary.yaml --request-id demo-1"
"$bin/slipctl" deploy -f deployments/examples/canary.yaml --request-id demo-1 --reason "make run"

say "the same request again is idempotent: no second release"
"$bin/slipctl" deploy -f deployments/examples/canary.yaml --request-id demo-1 --reason "make run"

say "slipctl services"
"$bin/slipctl" services

say "slipctl history web"
"$bin/slipctl" history web

say "slipctl rollout list"
"$bin/slipctl" rollout list

say "a spec with mistakes is refused, every violation named"
cat >"$state/bad.yaml" <<'YAML'
name: Web_1
image: "UPPER/case:bad tag"
count: -1
port: 70000
update: {strategy: canary, canary: {steps: [{weight: 50}, {weight: 10}]}}
YAML
if "$bin/slipctl" deploy -f "$state/bad.yaml"; then
	echo "bad spec was accepted" >&2
	exit 1
fi

say "grpcurl -plaintext -d '{\"name\":\"web\"}' $addr slipway.deploy.v1.DeployService/GetService"
"$bin/grpcurl" -plaintext -d '{"name":"web"}' "$addr" slipway.deploy.v1.DeployService/GetService

if [ -n "${ONCE:-}" ]; then
	say "done (ONCE=1)"
	exit 0
fi
say "the coordinator stays up on $addr: try 'bin/slipctl services' or grpcurl; Ctrl-C to stop"
wait "${pids[0]}"
