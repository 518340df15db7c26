#!/usr/bin/env bash
# Measures idle app live-update streams on one `herald serve` (examples/sse_idle.rs): how many it
# holds and at what memory, then POST → hint latency with them all open. Raises the open-file limit
# (as root: up to fs.nr_open), spreads the client over loopback addresses 127.0.0.1-4 so its ports
# do not run out, starts Herald on a temporary data dir and stops it by its pid.
# SSE_CONNECTIONS (default 100000), SSE_SAMPLES (default 200), SSE_PROFILE (debug|release).
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${SSE_CONNECTIONS:-100000}
samples=${SSE_SAMPLES:-200}
profile=${SSE_PROFILE:-debug}
# Server and client are separate processes, each needing one descriptor per stream.
limit=$((connections + 1000))
ulimit -Hn "$limit" 2>/dev/null || true
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$limit" ]; then
    # Without CAP_SYS_RESOURCE (a container) the hard limit stands: measure as far as it allows.
    echo "== the hard open-file limit is $hard (raising it to $limit was refused): measuring $((hard - 700)) streams"
    limit=$hard
    connections=$((hard - 700))
fi
ulimit -n "$limit"

flag=(); [ "$profile" = release ] && flag=(--release)
cargo build --quiet "${flag[@]}" --bin herald --example sse_idle
herald=target/$profile/herald
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
HERALD_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export HERALD_SECRET RUST_LOG=${RUST_LOG:-warn}
HERALD_MAX_CONNECTIONS=$((connections + 1000)) "$herald" --data-dir "$data" serve --listen "0.0.0.0:$port" \
    >"$data/herald.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap stop EXIT
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "== $(nproc) cores; herald serve ($profile) pid $pid on port $port; open-file limit $(ulimit -n)"
"target/$profile/examples/sse_idle" "$pid" "$connections" "$samples" \
    "127.0.0.1:$port" "127.0.0.2:$port" "127.0.0.3:$port" "127.0.0.4:$port"
