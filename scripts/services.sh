#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer.
# For each: already up -> nothing; installed but down -> start it; absent ->
# install the Debian package (apt-get), then start it. Prints what it does.
# Set CONCERT_SKIP_SERVICES=1 to manage the services yourself.
set -euo pipefail

[ "${CONCERT_SKIP_SERVICES:-0}" = 1 ] && exit 0

say() { echo "[services] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else say "need root for: $*"; exit 1; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
apt_install() {
  say "installing Debian package(s): $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "$what did not come up"; exit 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
pg_login() { PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT 1'; }
pg_sql() { PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qtAc "$1"; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then
    say "PostgreSQL is up"
  else
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    [ -d "/etc/postgresql/$version/main" ] || as_root pg_createcluster "$version" main
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL pg_up
  fi
  # A fresh Debian cluster asks TCP clients for a password: give `postgres` the
  # password the default DATABASE_URL uses. Trust-auth clusters need nothing.
  if ! pg_login >/dev/null 2>&1; then
    say "setting the local postgres role's password to match the default DATABASE_URL"
    as_postgres psql -qc "ALTER USER postgres PASSWORD 'postgres'"
  fi
  # A production PostgreSQL analyses its tables as they change; some images
  # ship `autovacuum = off` (a conf.d file), and then the service's tables are
  # never analysed and its plans are guessed (docs/DURABILITY.md, "What the
  # service expects of PostgreSQL"). ALTER SYSTEM overrides conf.d; a reload applies it.
  if [ "$(pg_sql 'SHOW autovacuum')" != on ]; then
    say "turning on PostgreSQL autovacuum (ALTER SYSTEM SET autovacuum = on; reload)"
    pg_sql "ALTER SYSTEM SET autovacuum = on" >/dev/null
    pg_sql "SELECT pg_reload_conf()" >/dev/null
  fi
}

# Redis must keep an append-only file fsynced on every write (SPEC §5,
# Durability): a 202 is a promise, and the api and worker refuse a Redis that
# would forget accepted jobs on a restart. A running Redis is switched over
# with CONFIG SET (it writes its AOF into its own `dir`); one started here
# keeps it in $CONCERT_REDIS_DIR.
redis_cli() { redis-cli -h 127.0.0.1 -p 6379 "$@"; }
ensure_redis() {
  if command -v redis-cli >/dev/null && [ "$(redis_cli ping 2>/dev/null)" = PONG ]; then
    say "Redis is up"
    if [ "$(redis_cli CONFIG GET appendonly 2>/dev/null | sed -n 2p)" != yes ] ||
       [ "$(redis_cli CONFIG GET appendfsync 2>/dev/null | sed -n 2p)" != always ]; then
      say "turning on Redis persistence: appendonly yes, appendfsync always"
      redis_cli CONFIG SET appendfsync always >/dev/null
      redis_cli CONFIG SET appendonly yes >/dev/null
    fi
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  local dir=${CONCERT_REDIS_DIR:-/var/lib/concert-redis}
  mkdir -p "$dir" 2>/dev/null || as_root mkdir -p "$dir"
  say "starting Redis (AOF, appendfsync always, in $dir)"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly yes --appendfsync always --dir "$dir" >/dev/null
  wait_for Redis sh -c '[ "$(redis-cli -h 127.0.0.1 -p 6379 ping)" = PONG ]'
}

# `--test-tools`: also the command-line tools the test suite calls (openssl
# generates the RSA key pair of the external-identity-provider test; headless
# Chromium and its WebDriver run the web app's browser test, tests/web_app.rs,
# which fails rather than skips without them).
ensure_test_tools() {
  command -v openssl >/dev/null || apt_install openssl
  # promtool (Debian ships it in `prometheus`): tests/metrics.rs checks /metrics and docs/ops/alerts.yml.
  command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install chromium chromium-driver
  fi
  # libfaketime: tests/clock.rs runs a worker whose clock is 10 minutes ahead.
  command -v faketime >/dev/null || apt_install faketime
}

ensure_postgres
ensure_redis
[ "${1:-}" = --test-tools ] && ensure_test_tools
exit 0
