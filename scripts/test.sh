#!/usr/bin/env bash
# Runs the type check and the whole test suite once, without watching and without reading stdin, and exits
# non-zero if either failed. The integration tests start their own clamd and smbd and create their own
# users, so this needs root and the packages setup.sh installs.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHUTTLE_ROOT"

bash "$SHUTTLE_ROOT/scripts/setup.sh"

# The project's own tsc and vitest, as installed by npm ci; nothing is fetched.
bin="$SHUTTLE_ROOT/node_modules/.bin"

typecheck_status=0
say "type check: tsc -p tsconfig.test.json (sources, tests and benchmarks)"
"$bin/tsc" -p tsconfig.test.json < /dev/null || typecheck_status=$?

tests_status=0
say "tests: vitest run"
"$bin/vitest" run < /dev/null || tests_status=$?

verdict() { if (( $1 == 0 )); then printf 'passed'; else printf 'FAILED (exit status %s)' "$1"; fi; }
say "type check $(verdict "$typecheck_status"); tests $(verdict "$tests_status")"

if (( tests_status != 0 )); then exit "$tests_status"; fi
exit "$typecheck_status"
