#!/usr/bin/env bash
# The compose cluster (deployments/compose/docker-compose.yml):
#   scripts/compose.sh up     build the static binaries and the FROM-scratch
#                             images locally (no registry), make a throwaway
#                             CA and one certificate per container (mutual
#                             TLS on every link) plus an operator client
#                             certificate, start the cluster, bootstrap the
#                             first ACL token and wait until raft has a
#                             leader whose engine sees both node agents
#                             (discovered in Consul)
#   scripts/compose.sh down   stop it, remove its volumes, its certificates
#                             and token, and every demo container the node
#                             agents started
# `make compose-up` / `make compose-down` call it.
#
# Credentials live under .run/compose (gitignored):
#   tls/ca.pem, tls/ca-key.pem            the CA (the key is never mounted)
#   tls/client-operator{,-key}.pem        the operator's client certificate
#   tls/<container>/                      mounted read-only at /etc/slipway/tls
#                                         in that container only: ca.pem and
#                                         its own <role>-<name>{,-key}.pem
#   keyring.json                          the secrets keyring; a copy in each
#                                         coordinator's tls/<container>/
#   token                                 the bootstrap (admin) ACL token
#   env                                   SLIPWAY_* exports for slipctl
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMPOSE=(docker-compose -p slipway -f deployments/compose/docker-compose.yml)
NODES="compose-node-1 compose-node-2"
STATE=$ROOT/.run/compose
TLS=$STATE/tls
ADDR=127.0.0.1:17400
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
	local stamp="-X slipway.dev/platform/buildinfo.Version=$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev) -X slipway.dev/platform/buildinfo.Commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
	for c in coordinator:services/coordinator/cmd/slipway-coordinator nodeagent:services/nodeagent/cmd/slipway-nodeagent edge:services/edge/cmd/slipway-edge; do
		name=${c%%:*} pkg=${c#*:}
		mkdir -p "$work/$name/data"
		(cd "$ROOT/$(dirname "$(dirname "$pkg")")" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w $stamp" -o "$work/$name/" "./cmd/$(basename "$pkg")")
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

# cert CONTAINER ROLE NAME IP [UID]: the container's own directory holds the
# CA certificate and its certificate (name = -id / -node-id; localhost,
# 127.0.0.1 and ::1 are always included, the container's fixed address and
# host name are added). UID owns the directory when the container does not
# run as root (the key is 0600).
cert() {
	local dir=$TLS/$1 role=$2 name=$3 ip=$4 uid=${5:-}
	mkdir -p "$dir"
	cp "$TLS/ca.pem" "$dir/ca.pem"
	bin/slipctl tls cert create --dir "$dir" --ca "$TLS/ca.pem" --ca-key "$TLS/ca-key.pem" \
		--role "$role" --name "$name" --dns "$1" --ip "$ip" >/dev/null
	chmod 0700 "$dir"
	if [ -n "$uid" ]; then
		if [ "$(id -u)" = 0 ]; then
			chown -R "$uid:$uid" "$dir"
		else
			# Not root: the unprivileged container user cannot be given the
			# files; make this throwaway certificate readable instead.
			chmod 0755 "$dir" && chmod 0644 "$dir"/*
		fi
	fi
}

make_tls() {
	if [ -f "$TLS/ca.pem" ] && [ -f "$TLS/client-operator.pem" ]; then
		say "certificates: reusing $TLS"
		return
	fi
	rm -rf "$TLS"
	mkdir -p "$TLS"
	chmod 0700 "$STATE" "$TLS"
	bin/slipctl tls ca create --dir "$TLS" --common-name "Slipway compose CA" --days 365 >/dev/null
	cert coordinator-1 coordinator coordinator-1 172.28.0.11 65534
	cert coordinator-2 coordinator coordinator-2 172.28.0.12 65534
	cert coordinator-3 coordinator coordinator-3 172.28.0.13 65534
	cert nodeagent-1 nodeagent compose-node-1 172.28.0.21
	cert nodeagent-2 nodeagent compose-node-2 172.28.0.22
	cert edge edge edge-1 172.28.0.30 65534
	bin/slipctl tls cert create --dir "$TLS" --role client --name operator >/dev/null
	say "certificates: a throwaway CA and one certificate per container in $TLS"
}

# make_keyring: the keyring that encrypts secrets and configs in the raft
# state, created once per cluster (.run/compose/keyring.json, kept like the
# CA) with `slipway-coordinator keyring init`; every coordinator gets the
# same keys, as a copy in its own directory (mounted read-only at
# /etc/slipway/tls/keyring.json, -keyring-file through
# SLIPWAY_KEYRING_FILE).
make_keyring() {
	if [ ! -s "$STATE/keyring.json" ]; then
		bin/slipway-coordinator keyring init -file "$STATE/keyring.json" >/dev/null
		chmod 0600 "$STATE/keyring.json"
		say "keyring: created $STATE/keyring.json"
	else
		say "keyring: reusing $STATE/keyring.json"
	fi
	for c in coordinator-1 coordinator-2 coordinator-3; do
		install -m 0600 "$STATE/keyring.json" "$TLS/$c/keyring.json"
		if [ "$(id -u)" = 0 ]; then
			chown 65534:65534 "$TLS/$c/keyring.json"
		else
			chmod 0644 "$TLS/$c/keyring.json" # as cert does for a non-root user
		fi
	done
}

# The operator's credentials for slipctl (and grpcurl).
export SLIPWAY_ADDR=$ADDR
export SLIPWAY_TLS_CA=$TLS/ca.pem SLIPWAY_TLS_CERT=$TLS/client-operator.pem SLIPWAY_TLS_KEY=$TLS/client-operator-key.pem

# bootstrap_token: the first management token, once per cluster, kept in
# .run/compose/token (a slipctl without the acl command sends none).
bootstrap_token() {
	if [ -s "$STATE/token" ]; then
		SLIPWAY_TOKEN=$(cat "$STATE/token")
		export SLIPWAY_TOKEN
		return 0
	fi
	bin/slipctl acl --help >/dev/null 2>&1 || return 0
	local out rc=0
	out=$(bin/slipctl acl bootstrap --description "compose operator" -o json 2>&1) || rc=$?
	case $rc in
	0)
		(umask 077 && jq -r .secret <<<"$out" >"$STATE/token")
		SLIPWAY_TOKEN=$(cat "$STATE/token")
		export SLIPWAY_TOKEN
		say "ACL: bootstrapped the management token into $STATE/token"
		;;
	4)
		# Bootstrapped already, by someone else: its secret is not ours.
		echo "compose: $out" >&2
		echo "compose: the cluster's ACLs were bootstrapped without $STATE/token; run make compose-down first" >&2
		exit 1
		;;
	*) return 1 ;; # no leader yet: try again
	esac
}

wait_ready() {
	local deadline=$((SECONDS + 90)) have_token=0
	until [ "$have_token" = 1 ] &&
		[ "$(curl -fsS http://127.0.0.1:18500/v1/catalog/service/slipway-nodeagent 2>/dev/null | grep -o '"node_id"' | wc -l)" -ge 2 ] &&
		bin/slipctl cluster leader 2>/dev/null | grep -q '^leader [^-]' &&
		[ "$(bin/slipctl cluster nodes 2>/dev/null | grep -c ' ready ')" -ge 2 ]; do
		if [ "$have_token" = 0 ] && bootstrap_token; then have_token=1; fi
		if [ $SECONDS -ge $deadline ]; then
			"${COMPOSE[@]}" ps >&2
			"${COMPOSE[@]}" logs --tail 20 >&2
			echo "compose: the cluster did not come up within 90s" >&2
			exit 1
		fi
		sleep 0.5
	done
}

write_env() {
	{
		echo "# source this file: slipctl (and grpcurl below) use the operator's certificate"
		echo "export SLIPWAY_ADDR=$ADDR"
		echo "export SLIPWAY_TLS_CA=$SLIPWAY_TLS_CA"
		echo "export SLIPWAY_TLS_CERT=$SLIPWAY_TLS_CERT"
		echo "export SLIPWAY_TLS_KEY=$SLIPWAY_TLS_KEY"
		[ -z "${SLIPWAY_TOKEN:-}" ] || echo "export SLIPWAY_TOKEN=\$(cat $STATE/token)"
	} >"$STATE/env"
	chmod 0600 "$STATE/env"
}

case ${1:-} in
up)
	bin/slipctl tls --help >/dev/null 2>&1 || make build
	build_images
	make_tls
	make_keyring
	"${COMPOSE[@]}" up -d
	say "waiting for a raft leader that sees both node agents (through Consul)"
	wait_ready
	write_env
	bin/slipctl cluster peers
	bin/slipctl cluster nodes
	auth=
	[ -z "${SLIPWAY_TOKEN:-}" ] || auth=" -H \"authorization: Bearer \$SLIPWAY_TOKEN\""
	cat <<TXT
==> the cluster is up, on mutual TLS (certificates in .run/compose/tls):
  source .run/compose/env                   # SLIPWAY_ADDR=$ADDR (coordinator-1; 17402, 17403: the others),
                                            # SLIPWAY_TLS_CA/CERT/KEY: the operator's client certificate${SLIPWAY_TOKEN:+,
                                            # SLIPWAY_TOKEN: the bootstrap (admin) ACL token}
  bin/slipctl cluster peers
  bin/slipctl cluster nodes
  bin/slipctl deploy -f deployments/examples/canary.yaml --wait
  curl -H 'Host: api.local' http://127.0.0.1:18080/
  bin/grpcurl -cacert .run/compose/tls/ca.pem -cert .run/compose/tls/client-operator.pem \\
    -key .run/compose/tls/client-operator-key.pem$auth \\
    $ADDR list
  Consul UI: http://127.0.0.1:18500/ui
  make compose-down                         # stops it, removes the demo containers and .run/compose
TXT
	;;
down)
	"${COMPOSE[@]}" down -v --remove-orphans
	remove_instances
	rm -rf "$STATE"
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
