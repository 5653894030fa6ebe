#!/usr/bin/env bash
# Runs the whole service on this machine: ensures PostgreSQL and Redis (see
# services.sh), creates the `concert` database if missing, builds the release
# binary and starts `concert standalone` (migrate, seed demo data into an empty
# database, api + workers in one process). Ctrl-C stops it gracefully.
# Extra arguments go to `concert` (e.g. `scripts/run.sh api`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-env.sh
scripts/services.sh
if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname = 'concert'" | grep -q 1; then
  echo "[run] creating database concert"
  PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE concert"
fi
cargo build --release --bin concert
exec "$CARGO_TARGET_DIR/release/concert" "${@:-standalone}"
