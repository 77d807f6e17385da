#!/usr/bin/env bash
# Runs every benchmark script (scripts/bench-*.sh); each prints its own table
# comparing Slipway with a peer measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for b in scripts/bench-*.sh; do
	[ -e "$b" ] || continue
	echo "==> $b"
	bash "$b" || status=1
done
exit $status
