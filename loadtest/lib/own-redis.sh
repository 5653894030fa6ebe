# Sourced by loadtest/chaos and loadtest/redis-memory: a Redis of the runner's
# own (AOF, fsync on every write), so what they do to it touches nothing else.
# own_redis PORT DIR: starts it daemonized in DIR (pid file DIR/redis.pid) and
# waits until it answers PING.
own_redis() {
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$2" --daemonize yes --pidfile "$2/redis.pid" --logfile "$2/redis.log"
  for _ in $(seq 1 100); do [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0; sleep 0.1; done
  echo "Redis on port $1 did not answer" >&2
  return 1
}
