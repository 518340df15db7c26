#!/usr/bin/env bash
# A local 3-master Redis Cluster on 127.0.0.1 (ports 7000-7002), for the Redis inbox store's
# contract suite and the distributed mode. Nothing is persisted (no RDB, no AOF).
#
#   scripts/redis-cluster.sh start  [DIR]   start the three nodes and create the cluster (or say it
#                                           already runs); waits for cluster_state:ok, prints the URL
#   scripts/redis-cluster.sh stop   [DIR]   stop the nodes `start` started, by pid
#   scripts/redis-cluster.sh status [DIR]   say what runs; exit 0 only when the cluster is ok
#
# DIR (default .redis-cluster in the repository) holds each node's pid file, log and cluster
# config file (nodes-<port>.conf, which cluster mode requires; `stop` removes them, so each
# start makes a fresh cluster). REDIS_CLUSTER_PORT moves the first port (default 7000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-$repo/.redis-cluster}
first=${REDIS_CLUSTER_PORT:-7000}
ports=("$first" "$((first + 1))" "$((first + 2))")

usage() { echo "usage: $0 start|stop|status [DIR]" >&2; exit 2; }

alive() { [ -f "$dir/node-$1.pid" ] && kill -0 "$(cat "$dir/node-$1.pid")" 2>/dev/null; }

cluster_ok() { redis-cli -h 127.0.0.1 -p "$first" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

url() {
    local urls=()
    for p in "${ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done
    (IFS=,; echo "${urls[*]}")
}

# Waits until `check` succeeds, up to $2 tenths of a second.
wait_for() {
    local check=$1 tenths=$2
    for _ in $(seq 1 "$tenths"); do
        if eval "$check"; then return 0; fi
        sleep 0.1
    done
    return 1
}

start() {
    mkdir -p "$dir"
    local all=1
    for p in "${ports[@]}"; do alive "$p" || all=0; done
    if [ "$all" = 1 ] && cluster_ok; then
        echo "redis cluster already runs: $(url)"
        return 0
    fi
    for p in "${ports[@]}"; do
        if alive "$p"; then continue; fi
        if redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null 2>&1; then
            echo "port $p is taken by a Redis this script did not start" >&2
            exit 1
        fi
        rm -f "$dir/nodes-$p.conf"
        redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
            --cluster-config-file "$dir/nodes-$p.conf" --cluster-node-timeout 5000 \
            --save "" --appendonly no --dir "$dir" --daemonize yes \
            --pidfile "$dir/node-$p.pid" --logfile "$dir/node-$p.log"
        wait_for "redis-cli -h 127.0.0.1 -p $p ping >/dev/null 2>&1" 50 || { echo "node $p did not start (see $dir/node-$p.log)" >&2; exit 1; }
        wait_for "[ -s '$dir/node-$p.pid' ]" 50
    done
    if ! cluster_ok; then
        local nodes=()
        for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 \
            || { cat "$dir/create.log" >&2; exit 1; }
    fi
    wait_for cluster_ok 200 || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
    # Every node must see every slot before a client that asks any of them is routed right.
    for p in "${ports[@]}"; do
        wait_for "redis-cli -h 127.0.0.1 -p $p cluster info 2>/dev/null | grep -q '^cluster_state:ok'" 200
    done
    echo "redis cluster runs: $(url)"
}

stop() {
    for p in "${ports[@]}"; do
        if alive "$p"; then
            local pid
            pid=$(cat "$dir/node-$p.pid")
            kill "$pid"
            wait_for "! kill -0 $pid 2>/dev/null" 100 || kill -9 "$pid"
            echo "stopped node $p (pid $pid)"
        fi
        rm -f "$dir/node-$p.pid" "$dir/nodes-$p.conf"
    done
}

status() {
    local ok=0
    for p in "${ports[@]}"; do
        if alive "$p"; then echo "node $p runs (pid $(cat "$dir/node-$p.pid"))"; else echo "node $p is not running"; ok=1; fi
    done
    if [ "$ok" = 0 ] && cluster_ok; then echo "cluster_state:ok: $(url)"; else echo "the cluster is not ok"; ok=1; fi
    return "$ok"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
