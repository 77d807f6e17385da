#!/usr/bin/env bash
# The compose cluster (deployments/compose/docker-compose.yml):
#   scripts/compose.sh up     build the static binaries and the FROM-scratch
#                             images locally (no registry), start the cluster
#                             and wait until raft has a leader whose engine
#                             sees both node agents (discovered in Consul)
#   scripts/compose.sh down   stop it, remove its volumes and every demo
#                             container the node agents started
# `make compose-up` / `make compose-down` call it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMPOSE=(docker-compose -p slipway -f deployments/compose/docker-compose.yml)
NODES="compose-node-1 compose-node-2"
say() { printf '==> %s\n' "$*"; }

remove_instances() {
	for n in $NODES; do
		ids=$(docker ps -aq --filter "label=slipway.node=$n")
		[ -z "$ids" ] || { docker rm -f -v $ids >/dev/null; say "removed $(echo $ids | wc -w) instance container(s) of $n"; }
	done
}

build_images() {
	local work=$ROOT/bin/compose
	mkdir -p "$work"
	say "static binaries (CGO_ENABLED=0)"
	for c in coordinator:services/coordinator/cmd/slipway-coordinator nodeagent:services/nodeagent/cmd/slipway-nodeagent edge:services/edge/cmd/slipway-edge; do
		name=${c%%:*} pkg=${c#*:}
		mkdir -p "$work/$name/data"
		(cd "$ROOT/$(dirname "$(dirname "$pkg")")" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags '-s -w' -o "$work/$name/" "./cmd/$(basename "$pkg")")
	done
	mkdir -p "$work/consul/data"
	consul_version=$(awk '/github.com\/hashicorp\/consul /{print $NF}' tools/consul/go.mod)
	if [ ! -x "$work/consul/consul" ] || [ "$(cat "$work/consul/.version" 2>/dev/null)" != "$consul_version" ]; then
		say "static consul $consul_version from tools/consul (a few minutes, once)"
		(cd tools/consul && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$work/consul/consul" github.com/hashicorp/consul)
		echo "$consul_version" >"$work/consul/.version"
	fi
	for name in coordinator nodeagent edge consul; do
		DOCKER_BUILDKIT=0 docker build -q -t "slipway/$name:dev" -f "deployments/docker/$name.Dockerfile" "$work/$name" >/dev/null 2>"$work/build.err" ||
			{ cat "$work/build.err" >&2; exit 1; }
		say "image slipway/$name:dev"
	done
	scripts/demo-images.sh
}

wait_ready() {
	local deadline=$((SECONDS + 90))
	until [ "$(curl -fsS http://127.0.0.1:18500/v1/catalog/service/slipway-nodeagent 2>/dev/null | grep -o '"node_id"' | wc -l)" -ge 2 ] &&
		bin/slipctl --addr 127.0.0.1:17400 cluster leader 2>/dev/null | grep -q '^leader [^-]' &&
		[ "$(bin/slipctl --addr 127.0.0.1:17400 cluster nodes 2>/dev/null | grep -c ' ready ')" -ge 2 ]; do
		if [ $SECONDS -ge $deadline ]; then
			"${COMPOSE[@]}" ps >&2
			"${COMPOSE[@]}" logs --tail 20 >&2
			echo "compose: the cluster did not come up within 90s" >&2
			exit 1
		fi
		sleep 0.5
	done
}

case ${1:-} in
up)
	[ -x bin/slipctl ] || make build
	build_images
	"${COMPOSE[@]}" up -d
	say "waiting for a raft leader that sees both node agents (through Consul)"
	wait_ready
	bin/slipctl --addr 127.0.0.1:17400 cluster peers
	bin/slipctl --addr 127.0.0.1:17400 cluster nodes
	cat <<'TXT'
==> the cluster is up:
  export SLIPWAY_ADDR=127.0.0.1:17400      # coordinator-1 (17402, 17403: the others)
  bin/slipctl cluster peers
  bin/slipctl cluster nodes
  bin/slipctl deploy -f deployments/examples/canary.yaml --wait
  curl -H 'Host: api.local' http://127.0.0.1:18080/
  Consul UI: http://127.0.0.1:18500/ui
  make compose-down                         # stops it and removes the demo containers
TXT
	;;
down)
	"${COMPOSE[@]}" down -v --remove-orphans
	remove_instances
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
