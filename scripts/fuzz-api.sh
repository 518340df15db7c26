#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API against the /openapi.json it generates (schemathesis):
# every generated request, valid or not, must get no 5xx, a documented status, a body that matches
# the documented schema and the documented content type. Exits non-zero on any finding.
#
# Starts a real Herald (`herald serve`, embedded parts, temporary data dir, loopback only), runs the
# admin and operations endpoints with an operator token and the app endpoints with an app token,
# then stops the server by its pid. Tunables: FUZZ_MAX_EXAMPLES (per operation and phase),
# FUZZ_MAX_TIME (seconds per run), FUZZ_SEED (reproduce a run), FUZZ_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=.ci/venv
max_examples=${FUZZ_MAX_EXAMPLES:-40}
max_time=${FUZZ_MAX_TIME:-65}
# A free loopback port unless one is given.
port=${FUZZ_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
base="http://127.0.0.1:$port"

# Python 3.11's ast module can raise "AST constructor recursion depth mismatch" inside hypothesis
# (a CPython bug fixed in later releases), so the newest Python 3 at hand makes the venv.
newest_python() {
    local py version
    for py in python3.14 python3.13 python3.12; do
        if "$py" -c '' 2>/dev/null; then command -v "$py"; return; fi
    done
    if command -v pyenv >/dev/null; then
        version=$(pyenv versions --bare | grep -E '^3\.1[2-9]' | sort -V | tail -1)
        if [ -n "$version" ]; then echo "$(pyenv prefix "$version")/bin/python3"; return; fi
    fi
    command -v python3
}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    python=$(newest_python)
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv ($("$python" --version))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin herald
herald=target/debug/herald
data=$(mktemp -d)
HERALD_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export HERALD_SECRET
export RUST_LOG=${RUST_LOG:-warn}
# The live-update streams (`.../events`) end after this, so a generated GET of one is an answer the
# fuzzer can read to its end and check, instead of a request that never finishes.
export HERALD_EVENTS_MAX_AGE=1s
"$herald" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/herald.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap stop EXIT

for _ in $(seq 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$data/herald.log"; echo "herald did not start"; exit 1; }
    sleep 0.1
done

admin=$("$herald" --data-dir "$data" token admin)
app=$("$herald" --data-dir "$data" token app --kind rider --id fuzz-rider)
# Something to find: the app's rider, and a notification in its inbox.
curl -fsS "$base/admin/v1/receivers/batch" -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '[{"kind":"rider","id":"fuzz-rider","city":"shanghai","groups":["vip"]}]' >/dev/null
curl -fsS "$base/admin/v1/notifications" -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"title":"fuzz","body":"fuzz","category":"system","receiver_kind":"rider","audience":{"all":true}}' >/dev/null

checks=not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance
status=0
fuzz() { # fuzz WHO TOKEN PATH-REGEX
    echo "== schemathesis: $1 endpoints"
    "$venv/bin/schemathesis" run "$base/openapi.json" \
        --checks "$checks" \
        --header "Authorization: Bearer $2" \
        --include-path-regex "$3" \
        --max-examples "$max_examples" \
        --max-time "$max_time" \
        --workers 2 \
        --no-color \
        ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
        || status=1
}
fuzz admin "$admin" '^/(admin/|healthz|readyz|metrics|openapi|console)'
fuzz app "$app" '^/app/'

if ! kill -0 "$pid" 2>/dev/null; then
    echo "herald died during the fuzz run:"
    tail -50 "$data/herald.log"
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "== the API fuzzer found problems (above); herald's log ends:"
    tail -20 "$data/herald.log"
fi
exit "$status"
