#!/usr/bin/env bash
# Installs, at pinned versions, everything the build, tests and demo need that
# this machine lacks: Go tools and a Consul agent into ./bin, and nginx (with
# the Lua module), wrk and Chromium from Debian. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/bin
stamps=$bin/.stamps
mkdir -p "$stamps"

PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.0
BUF=v1.75.0
GRPCURL=v1.9.3
# The CNCF distribution registry: a real registry on loopback for the node
# agent's pull tests (credentials, progress, timeouts).
REGISTRY=v3.0.0
CONSUL=$(awk '/github.com\/hashicorp\/consul /{print $NF}' tools/consul/go.mod)

step() { printf '==> %s\n' "$*"; }

# go_tool NAME PACKAGE VERSION
go_tool() {
	local name=$1 pkg=$2 ver=$3
	if [ -x "$bin/$name" ] && [ -f "$stamps/$name-$ver" ]; then return; fi
	step "installing $name $ver"
	GOWORK=off GOBIN="$bin" go install "$pkg@$ver"
	rm -f "$stamps/$name-"*
	touch "$stamps/$name-$ver"
}

go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO"
go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC"
go_tool buf github.com/bufbuild/buf/cmd/buf "$BUF"
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL"
go_tool registry github.com/distribution/distribution/v3/cmd/registry "$REGISTRY"

if ! [ -x "$bin/consul" ] || ! [ -f "$stamps/consul-$CONSUL" ]; then
	step "building consul $CONSUL from the Go module proxy (a few minutes, once)"
	(cd tools/consul && GOWORK=off GOFLAGS=-mod=mod go build -o "$bin/consul" github.com/hashicorp/consul)
	rm -f "$stamps/consul-"*
	touch "$stamps/consul-$CONSUL"
fi

# Caddy, a peer of the edge in make bench only: built from the module proxy
# when SLIPWAY_TOOLS_BENCH=1 (make bench sets it). It takes minutes to build
# on an idle machine (25 min on a loaded 2-core one), so make test and CI
# do not wait for it.
CADDY=v2.11.9
# consul-template, the seed's zero-downtime peer in make bench
# (scripts/bench-edge-flips.sh): it renders an nginx upstream from Consul and
# reloads nginx on each flip. Bench-only like Caddy.
CONSUL_TEMPLATE=v0.41.1
if [ "${SLIPWAY_TOOLS_BENCH:-}" = 1 ]; then
	go_tool caddy github.com/caddyserver/caddy/v2/cmd/caddy "$CADDY"
	go_tool consul-template github.com/hashicorp/consul-template "$CONSUL_TEMPLATE"
fi

need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light)
[ -f /usr/share/nginx/modules/ngx_http_lua_module.so ] || need_apt+=(libnginx-mod-http-lua)
[ -f /usr/share/lua/5.1/resty/core.lua ] || need_apt+=(lua-resty-core)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# Prometheus: the analysis provider's tests query a real server.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# promtool (same package) checks deployments/prometheus/slipway-alerts.yml.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# HAProxy: a peer of the edge in make bench (scripts/bench-edge.sh).
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# Headless Chromium for the dashboard's browser tests (chromedp).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The fault suite's test hosts: network namespaces, veths, a bridge (ip),
# partitions and packet loss (iptables).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "tools: missing Debian packages ${need_apt[*]}; run as root or install them" >&2
		exit 1
	fi
	step "installing ${need_apt[*]} from Debian"
	apt-get update -qq
	# Keep the packaged nginx service from starting: Slipway runs its own.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
	rm -f /usr/sbin/policy-rc.d
fi
step "tools ready in ./bin"
