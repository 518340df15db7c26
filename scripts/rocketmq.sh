#!/usr/bin/env bash
# A single-node RocketMQ (rocketmq-rust 1.0.0: one name server, one broker) on loopback, for the
# distributed mode and its tests.
#
#   scripts/rocketmq.sh start  [HOME]   start both (or say they already run); prints the name server
#   scripts/rocketmq.sh stop   [HOME]   stop what `start` started, by pid
#   scripts/rocketmq.sh status [HOME]   say what runs; exit 0 only when both do
#   scripts/rocketmq.sh start-broker [HOME]   start the broker alone again (after it died, the name
#                                       server still running), on HOME's config and store
#
# HOME (default .rocketmq in the repository) holds conf/, store/, logs/ and the pid files; the store
# survives a restart with the same HOME. Ports: ROCKETMQ_NAMESRV_PORT (9876), ROCKETMQ_BROKER_PORT
# (10911; the broker also takes the next port for HA and the port 2 below it): a second instance
# (tests/processes.rs's broker restart) takes a HOME and ports of its own.
#
# Binaries: ../shared/bin beside the repository when present (prebuilt, same crates), else
# .cache/rocketmq/bin, installed there on first use with
# `cargo install rocketmq-namesrv@1.0.0 rocketmq-broker@1.0.0 --locked` (long: ~40 min on 2 cores).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
home=${2:-$repo/.rocketmq}
ns_port=${ROCKETMQ_NAMESRV_PORT:-9876}
br_port=${ROCKETMQ_BROKER_PORT:-10911}
version=1.0.0
shared_bin=$repo/../shared/bin
local_root=$repo/.cache/rocketmq

usage() { echo "usage: $0 start|stop|status|start-broker [HOME]" >&2; exit 2; }

# The directory holding both binaries: shared/ when it has them, else the project-local install.
binaries() {
    if [ -x "$shared_bin/rocketmq-namesrv-rust" ] && [ -x "$shared_bin/rocketmq-broker-rust" ]; then
        echo "$shared_bin"; return
    fi
    if ! [ -x "$local_root/bin/rocketmq-namesrv-rust" ] || ! [ -x "$local_root/bin/rocketmq-broker-rust" ]; then
        echo "installing rocketmq-rust $version into $local_root (once; ~40 min on 2 cores)" >&2
        # No LTO and more codegen units: same binaries, built in a fraction of the time.
        CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
            cargo install "rocketmq-namesrv@$version" "rocketmq-broker@$version" --locked --root "$local_root" >&2
    fi
    echo "$local_root/bin"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Alive: the pid file names a running process (a killed one not yet reaped is a zombie: not alive).
alive() {
    local state
    [ -f "$home/$1.pid" ] && state=$(ps -o stat= -p "$(cat "$home/$1.pid")" 2>/dev/null) && [ "${state:0:1}" != Z ]
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

# The broker registered its routes with the name server (it logs each accepted registration).
registered() { grep -q "Register broker to name remoting_server success" "$home/logs/broker.log" 2>/dev/null; }

write_config() {
    cat > "$home/conf/broker.toml" <<TOML
[broker]
namesrvAddr = "127.0.0.1:$ns_port"
brokerIp1 = "127.0.0.1"
listenPort = $br_port
storePathRootDir = "$home/store"
# Topics (herald_direct, herald_bulk, and the test suites' own) are created on first publish.
autoCreateTopicEnable = true
autoCreateSubscriptionGroup = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "broker-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "$home/store"
haListenAddress = "127.0.0.1"
haListenPort = $((br_port + 1))
# 64 MiB commit log files instead of 1 GiB: a small store for one machine.
mappedFileSizeCommitLog = 67108864
TOML
}

start() {
    if alive namesrv && alive broker; then
        echo "already running (name server pid $(cat "$home/namesrv.pid"), broker pid $(cat "$home/broker.pid"))"
        echo "namesrv=$(cat "$home/namesrv.addr")"
        return
    fi
    if alive namesrv || alive broker; then
        echo "only part of it runs; stopping it first" >&2
        stop
    fi
    for port in "$ns_port" "$br_port"; do
        if port_open "$port"; then echo "port $port is taken by another process" >&2; exit 1; fi
    done
    local bin
    bin=$(binaries)
    mkdir -p "$home/conf" "$home/store" "$home/logs"
    write_config
    export ROCKETMQ_HOME="$home" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    : > "$home/logs/namesrv.log"
    nohup "$bin/rocketmq-namesrv-rust" --bindAddress 127.0.0.1 --listenPort "$ns_port" \
        > "$home/logs/namesrv.log" 2>&1 &
    echo $! > "$home/namesrv.pid"
    if ! wait_for "port_open $ns_port" 150; then
        echo "name server did not open port $ns_port; see $home/logs/namesrv.log" >&2; tail -5 "$home/logs/namesrv.log" >&2
        stop; exit 1
    fi
    if ! start_broker "$bin"; then stop; exit 1; fi
    echo "127.0.0.1:$ns_port" > "$home/namesrv.addr"
    echo "namesrv=127.0.0.1:$ns_port"
}

# Starts the broker on HOME's config (binaries in $1) and waits until it registered.
start_broker() {
    local bin=$1
    export ROCKETMQ_HOME="$home" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    nohup "$bin/rocketmq-broker-rust" -c "$home/conf/broker.toml" -n "127.0.0.1:$ns_port" \
        > "$home/logs/broker.log" 2>&1 &
    echo $! > "$home/broker.pid"
    if ! wait_for "port_open $br_port && registered" 300; then
        echo "broker did not register with the name server; see $home/logs/broker.log" >&2
        tail -5 "$home/logs/broker.log" >&2
        return 1
    fi
}

# The broker again, after it died: its config and store are HOME's, the name server still runs.
restart_broker() {
    if alive broker; then echo "the broker runs (pid $(cat "$home/broker.pid"))" >&2; exit 1; fi
    if ! alive namesrv || ! [ -f "$home/conf/broker.toml" ]; then
        echo "no name server started from $home: run start first" >&2; exit 1
    fi
    ns_port=$(sed -n 's/^namesrvAddr = "127.0.0.1:\([0-9]*\)"/\1/p' "$home/conf/broker.toml")
    br_port=$(sed -n 's/^listenPort = //p' "$home/conf/broker.toml")
    start_broker "$(binaries)" || exit 1
    echo "broker started again (pid $(cat "$home/broker.pid"))"
}

stop() {
    local name pid
    for name in broker namesrv; do
        [ -f "$home/$name.pid" ] || continue
        pid=$(cat "$home/$name.pid")
        if kill "$pid" 2>/dev/null; then
            # A clean stop flushes the store; give it a few seconds before insisting.
            wait_for "! kill -0 $pid 2>/dev/null" 100 || kill -9 "$pid" 2>/dev/null || true
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$home/$name.pid"
    done
    rm -f "$home/namesrv.addr"
}

status() {
    local ok=0 name
    for name in namesrv broker; do
        if alive "$name"; then echo "$name: running (pid $(cat "$home/$name.pid"))"; else echo "$name: stopped"; ok=1; fi
    done
    [ "$ok" = 0 ] && echo "namesrv=$(cat "$home/namesrv.addr")"
    return "$ok"
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
start-broker) restart_broker ;;
*) usage ;;
esac
