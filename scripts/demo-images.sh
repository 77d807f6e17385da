#!/usr/bin/env bash
# Builds the demo app (deployments/demo) as local Docker images
# slipway/demo:v1..v5 FROM scratch, and the same binaries as process-driver
# executables bin/images/slipway_demo_v1..v5 (the process driver maps image
# "a/b:c" to <process-dir>/a_b_c). No network needed. Quick when up to date:
# an image carrying the label slipway.demo.source=<hash of the sources and
# version> is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${SLIPWAY_IMAGES_DIR:-$ROOT/bin/images}
# version:colour[:error rate]: v5 answers 4% of requests with 500 (its
# /healthz passing), the guide's fifth act.
VERSIONS=${DEMO_VERSIONS:-"v1:blue v2:green v3:red v4:yellow v5:purple:4"}
mkdir -p "$OUT"
# Concurrent runs (parallel test binaries) take turns.
exec 9>"$OUT/.lock"
flock 9
src_hash=$(cat deployments/demo/go.mod deployments/demo/main.go | sha256sum | cut -c1-16)
have_docker=1
docker info >/dev/null 2>&1 || { have_docker=0; echo "demo-images: Docker Engine not answering; building process executables only" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for vc in $VERSIONS; do
	IFS=: read -r v colour rate <<<"$vc"
	hash="$src_hash-$v-$colour${rate:+-errors$rate}"
	exe="$OUT/slipway_demo_$v"
	if [ ! -x "$exe" ] || [ "$(cat "$exe.source" 2>/dev/null)" != "$hash" ]; then
		(cd deployments/demo && CGO_ENABLED=0 GOWORK=off go build -trimpath \
			-ldflags "-s -w -X main.version=$v -X main.colour=$colour${rate:+ -X main.errorRate=$rate}" -o "$exe" .)
		echo "$hash" >"$exe.source"
		echo "demo-images: built $exe"
	fi
	[ "$have_docker" = 1 ] || continue
	cur=$(docker image inspect --format '{{index .Config.Labels "slipway.demo.source"}}' "slipway/demo:$v" 2>/dev/null || true)
	if [ "$cur" = "$hash" ]; then
		echo "demo-images: slipway/demo:$v up to date"
		continue
	fi
	ctx="$work/$v"
	mkdir -p "$ctx"
	cp "$exe" "$ctx/demo"
	cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY demo /demo
ENV PORT=8080
EXPOSE 8080
LABEL slipway.demo.source="$hash" slipway.demo.version="$v" slipway.demo.colour="$colour"
HEALTHCHECK --interval=1s --timeout=1s --start-period=1s --retries=2 CMD ["/demo", "-healthcheck"]
ENTRYPOINT ["/demo"]
DOCKERFILE
	DOCKER_BUILDKIT=0 docker build -q -t "slipway/demo:$v" "$ctx" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	echo "demo-images: built slipway/demo:$v ($colour)"
done
