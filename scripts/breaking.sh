#!/usr/bin/env bash
# buf breaking (FILE level, buf.yaml) of the working tree's proto against
# the previous main, so that the public API cannot break by accident.
#
# What "previous main" is:
#   BREAKING_AGAINST=<git ref>   that ref (e.g. origin/main, a release tag)
#   on a branch other than main  its merge-base with main (or origin/main)
#   on main (or no main branch)  HEAD~1 (CI on a fresh clone of main)
# With no earlier commit (a first commit, a shallow clone) it says so and
# skips. BREAKING_AGAINST=none skips on purpose (a deliberate break, named
# in the commit message).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-bin/buf}
against=${BREAKING_AGAINST:-}
if [[ "$against" == none ]]; then
	echo "buf breaking: skipped (BREAKING_AGAINST=none)"
	exit 0
fi
if [[ -z "$against" ]]; then
	branch=$(git symbolic-ref --quiet --short HEAD 2>/dev/null || true)
	main=main
	git rev-parse --verify --quiet main >/dev/null || main=origin/main
	if [[ -n "$branch" && "$branch" != main ]] && git rev-parse --verify --quiet "$main" >/dev/null; then
		against=$(git merge-base HEAD "$main" || true)
		if [[ "$against" == "$(git rev-parse HEAD)" ]]; then
			against=""
		fi
	fi
	if [[ -z "$against" ]]; then
		if ! against=$(git rev-parse --verify --quiet 'HEAD~1^{commit}'); then
			echo "buf breaking: no previous commit to compare with (first commit or shallow clone); skipped"
			exit 0
		fi
	fi
fi
sha=$(git rev-parse --verify "$against^{commit}")
if ! git cat-file -e "$sha:buf.yaml" 2>/dev/null; then
	echo "buf breaking: $against has no buf.yaml; skipped"
	exit 0
fi
echo "buf breaking (FILE) against $against ($(git rev-parse --short "$sha"))"
"$BUF" breaking --against ".git#ref=$sha"
