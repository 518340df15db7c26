#!/usr/bin/env bash
# A local search server speaking the Elasticsearch/OpenSearch REST API, for the search adapter's
# tests and benchmarks: osmem-server (PyPI, pinned), in memory, on loopback.
#
#   scripts/search-server.sh start  [DIR]   start it (or say it already runs); prints its URL on stdout
#   scripts/search-server.sh stop   [DIR]   stop what `start` started, by pid
#   scripts/search-server.sh status [DIR]   say whether it runs; exit 0 (and print the URL) only if it answers
#
# DIR (default .cache/search-server in the repository) holds the pid, the URL and the log. The port is
# SEARCH_SERVER_PORT (default 0: a free one, written to DIR/url). The server keeps nothing on disk: a
# stop loses every index. Installed once into the virtualenv .cache/osmem-venv, reused after.
#
#   export HERALD_TEST_SEARCH_URL=$(scripts/search-server.sh start)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
dir=${2:-$repo/.cache/search-server}
port=${SEARCH_SERVER_PORT:-0}
version=0.1.6
venv=$repo/.cache/osmem-venv

usage() { echo "usage: $0 start|stop|status [DIR]" >&2; exit 2; }

# The server binary the pinned package ships, installing the package first when it is missing or
# another version.
binary() {
    local bin
    if ! "$venv/bin/python" -c "import osmem_server, sys; sys.exit(osmem_server.__version__ != '$version')" 2>/dev/null; then
        echo "installing osmem-server $version into $venv" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "osmem-server==$version" >&2
    fi
    bin=$("$venv/bin/python" -c "import osmem_server; print(osmem_server.resolve_binary())")
    [ -x "$bin" ] || { echo "osmem-server $version ships no binary for this platform ($bin)" >&2; exit 1; }
    echo "$bin"
}

alive() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

answers() { curl -fsS --max-time 2 "$1" > /dev/null 2>&1; }

# The URL the server printed when it bound its port (its first stdout line is JSON with "url").
printed_url() { sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$dir/server.log" 2>/dev/null | head -1; }

start() {
    if alive && [ -f "$dir/url" ] && answers "$(cat "$dir/url")"; then
        echo "already running (pid $(cat "$dir/pid"))" >&2
        cat "$dir/url"
        return
    fi
    alive && { echo "a server started here does not answer; stopping it first" >&2; stop; }
    local bin url=""
    bin=$(binary)
    mkdir -p "$dir"
    rm -f "$dir/url"
    # -no-stdin-watch: it outlives this script, whose stdin closes.
    nohup "$bin" -addr "127.0.0.1:$port" -no-stdin-watch < /dev/null > "$dir/server.log" 2>&1 &
    echo $! > "$dir/pid"
    for _ in $(seq 1 100); do
        url=$(printed_url)
        if [ -n "$url" ] && answers "$url"; then break; fi
        alive || break
        url=""
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "the search server did not answer within 10 s; see $dir/server.log:" >&2
        tail -5 "$dir/server.log" >&2
        stop
        exit 1
    fi
    echo "$url" > "$dir/url"
    echo "search server running (pid $(cat "$dir/pid"))" >&2
    echo "$url"
}

stop() {
    [ -f "$dir/pid" ] || { echo "not running" >&2; return 0; }
    local pid
    pid=$(cat "$dir/pid")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        echo "stopped the search server (pid $pid)" >&2
    fi
    rm -f "$dir/pid" "$dir/url"
}

status() {
    if alive && [ -f "$dir/url" ] && answers "$(cat "$dir/url")"; then
        echo "running (pid $(cat "$dir/pid"))" >&2
        cat "$dir/url"
    else
        echo "stopped" >&2
        return 1
    fi
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
