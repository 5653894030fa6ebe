#!/usr/bin/env bash
# Runs the whole test suite: ensures PostgreSQL and Redis (see services.sh),
# then `cargo test` over the workspace (unit tests beside the code, end-to-end
# tests in tests/). Tests create and drop their own databases (concert_test_*)
# and Redis key prefixes; nothing else is touched. Ends with one total line.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
scripts/services.sh --test-tools
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
