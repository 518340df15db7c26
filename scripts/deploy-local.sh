#!/usr/bin/env bash
# A whole distributed Herald on this machine, for a newcomer and for the tests: MariaDB (the
# machine's), Redis (the machine's, or a local 3-master cluster with --cluster), a RocketMQ name
# server + broker and a search server (both started by their scripts), then one `herald api`, one
# `herald scheduler` and two `herald consumer` processes built with the distributed adapters.
#
#   scripts/deploy-local.sh start [--cluster]   start what is not running; prints the API's URL
#   scripts/deploy-local.sh stop                stop exactly what `start` started, by pid
#   scripts/deploy-local.sh status              what runs; exit 0 only when every part does
#
# State lives in .deploy/ (pid files, logs, the env the processes run with). HERALD_API_PORT
# (default 8080) is the API's port. Each Herald process is a role of its own; they share only the
# servers, as they would across machines.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
state=$repo/.deploy
cmd=${1:-}
api_port=${HERALD_API_PORT:-8080}
roles=(api scheduler consumer-1 consumer-2)

usage() { echo "usage: $0 start [--cluster]|stop|status" >&2; exit 2; }

alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

wait_ready() {
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$api_port/readyz" > /dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# The value after `name=` in the output of a script's start command.
field() { sed -n "s/^$1=//p" | tail -1; }

# The last word of the output (the cluster script ends its start line with the nodes' URLs).
last_word() { tail -1 | awk '{ print $NF }'; }

start() {
    local cluster=${1:-}
    mkdir -p "$state/logs" "$state/data"
    # Servers first: each script starts its server unless it runs, and says where it listens.
    local sql_url redis_url namesrv search_url
    sql_url=$(bash "$repo/scripts/mariadb-user.sh")
    if [ "$cluster" = "--cluster" ]; then
        redis_url=$(bash "$repo/scripts/redis-cluster.sh" start "$state/redis-cluster" | last_word)
        echo "redis-cluster" > "$state/started-redis"
    else
        redis_url=redis://127.0.0.1:6379
    fi
    namesrv=$(bash "$repo/scripts/rocketmq.sh" start "$state/rocketmq" | field namesrv)
    search_url=$(bash "$repo/scripts/search-server.sh" start "$state/search")
    [ -n "$sql_url" ] && [ -n "$redis_url" ] && [ -n "$namesrv" ] && [ -n "$search_url" ] || {
        echo "a server did not start; see the lines above" >&2; exit 1
    }

    cargo build --quiet --features distributed --bin herald --manifest-path "$repo/Cargo.toml"
    local herald=$repo/target/debug/herald
    if [ ! -f "$state/secret" ]; then
        (umask 077; head -c 32 /dev/urandom | base64 > "$state/secret")
    fi
    cat > "$state/env" <<ENV
HERALD_SQL_URL=$sql_url
HERALD_REDIS_URL=$redis_url
HERALD_MQ_NAMESRV=$namesrv
HERALD_SEARCH_URL=$search_url
HERALD_DATA_DIR=$state/data
ENV
    set -a; . "$state/env"; set +a
    HERALD_SECRET=$(cat "$state/secret"); export HERALD_SECRET
    "$herald" migrate > "$state/logs/migrate.log" 2>&1 || { cat "$state/logs/migrate.log" >&2; exit 1; }
    local role
    for role in "${roles[@]}"; do
        alive "$role" && continue
        case "$role" in
        api) set -- api --listen "127.0.0.1:$api_port" ;;
        scheduler) set -- scheduler ;;
        consumer-*) set -- consumer ;;
        esac
        nohup "$herald" "$@" > "$state/logs/$role.log" 2>&1 &
        echo $! > "$state/$role.pid"
    done
    if ! wait_ready; then
        echo "the API did not become ready; see $state/logs/" >&2
        tail -5 "$state/logs/api.log" >&2
        exit 1
    fi
    echo "api=http://127.0.0.1:$api_port"
    echo "an admin token: HERALD_SECRET=\$(cat $state/secret) $herald token admin"
}

stop() {
    local role pid
    for role in "${roles[@]}"; do
        [ -f "$state/$role.pid" ] || continue
        pid=$(cat "$state/$role.pid")
        if kill "$pid" 2>/dev/null; then
            # A clean stop finishes the pages in hand; insist only after a while.
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            echo "stopped $role (pid $pid)"
        fi
        rm -f "$state/$role.pid"
    done
    bash "$repo/scripts/search-server.sh" stop "$state/search" || true
    bash "$repo/scripts/rocketmq.sh" stop "$state/rocketmq" || true
    if [ -f "$state/started-redis" ]; then
        bash "$repo/scripts/redis-cluster.sh" stop "$state/redis-cluster" || true
        rm -f "$state/started-redis"
    fi
}

status() {
    local ok=0 role
    for role in "${roles[@]}"; do
        if alive "$role"; then echo "$role: running (pid $(cat "$state/$role.pid"))"; else echo "$role: stopped"; ok=1; fi
    done
    bash "$repo/scripts/rocketmq.sh" status "$state/rocketmq" || ok=1
    bash "$repo/scripts/search-server.sh" status "$state/search" || ok=1
    return "$ok"
}

case "$cmd" in
start) start "${2:-}" ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
