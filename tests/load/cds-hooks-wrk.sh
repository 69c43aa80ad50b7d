#!/usr/bin/env bash
# Load check of the CDS Hooks door: patient-view with 20 prefetched Observations, loaded by wrk on loopback with
# 4 connections, once with JWT validation on (a pre-minted token with a unique jti per request, signed ES384, or RS384
# with ALG=RS384) and once in
# development mode (no JWT), so the cost of the check is visible. Prints requests/s, errors and latency percentiles.
#
# Usage: tests/load/cds-hooks-wrk.sh     Environment: DURATION (s, default 30), WARMUP (s, default 30), CONNECTIONS (4),
#        THREADS (2), RATE_GUESS (requests/s used to size the token file, default 3000), ALG (ES384 or RS384, default
#        ES384), SKIP_DEV=1 (skip the development-mode run), SKIP_BUILD=1.
# The measurement is of the service in its steady state: each run first waits until the service's background
# conformance warm-up has finished (it compiles the profile validator: seconds of CPU on both cores), then loads it for
# WARMUP seconds so that tiered JIT has finished recompiling the hot code, then measures. Measured from the first
# seconds after start, the same build gave a quarter of the steady-state throughput.
# Needs: wrk (Debian package "wrk"). Only 127.0.0.1 is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ALG="${ALG:-ES384}"; DURATION="${DURATION:-30}"; WARMUP="${WARMUP:-30}"; CONNECTIONS="${CONNECTIONS:-4}"; THREADS="${THREADS:-2}"; RATE_GUESS="${RATE_GUESS:-3000}"
BIN="$ROOT/src/MagCds.Service/bin/Release/net10.0"
TOOLS="$ROOT/tests/MagCds.LoadTools/bin/Release/net10.0/MagCds.LoadTools.dll"
# shellcheck source=warm-up.sh
source "$ROOT/tests/load/warm-up.sh"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/magcds-wrk.XXXXXX")"
SERVICE_PID=""
stop_service() {
    if [[ -n "$SERVICE_PID" ]] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    SERVICE_PID=""
}
trap 'stop_service; rm -rf "$WORK"' EXIT

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building (Release)"
    dotnet build "$ROOT/src/MagCds.Service/MagCds.Service.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
    dotnet build "$ROOT/tests/MagCds.LoadTools/MagCds.LoadTools.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
URL="$BASE/cds-services/magcds-patient-view"
TOKENS=$(( (WARMUP + DURATION + 10) * RATE_GUESS ))
echo "== minting $TOKENS tokens ($ALG, unique jti) for aud $URL"
dotnet "$TOOLS" "$WORK" "$URL" "$TOKENS" "$ALG" >/dev/null

start_service() { # $@: extra environment assignments
    (
        cd "$BIN"
        export MagCds__Store__SqliteConnectionString="Data Source=$WORK/store.db"
        for kv in "$@"; do export "${kv?}"; done
        exec dotnet MagCds.Service.dll --urls "$BASE"
    ) >"$WORK/service.log" 2>&1 &
    SERVICE_PID=$!
    local up=0
    for _ in $(seq 1 120); do
        curl -sf --noproxy '*' -o /dev/null --max-time 2 "$BASE/cds-services" && { up=1; break; }
        kill -0 "$SERVICE_PID" 2>/dev/null || break
        sleep 0.5
    done
    [[ $up == 1 ]] || { echo "error: the service did not start" >&2; tail -n 30 "$WORK/service.log" >&2; exit 1; }
    # The background conformance warm-up (ConformanceWarmUp) runs once the service is ready; wait for it to finish.
    wait_for_conformance_warm_up "$WORK/service.log" "$SERVICE_PID"
}

run() { # $1 label, $2 tokens file or ""
    # The warm-up and the measured run get disjoint token files, so no measured request can be a replay of a warm-up
    # one (wrk threads take alternate lines, so a used prefix cannot be computed afterwards).
    local warm="" measured=""
    if [[ -n "$2" ]]; then
        head -n $(( WARMUP * RATE_GUESS )) "$2" > "$WORK/tokens-warm.txt"; warm="$WORK/tokens-warm.txt"
        tail -n +$(( WARMUP * RATE_GUESS + 1 )) "$2" > "$WORK/tokens-measured.txt"; measured="$WORK/tokens-measured.txt"
    fi
    echo "== $1: warm-up ${WARMUP} s"
    TOKENS="$warm" BODY="$WORK/patient-view.json" THREADS="$THREADS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$ROOT/tests/load/cds-hooks-wrk.lua" "$URL" | tail -n 1
    echo "== $1: measured ${DURATION} s, $CONNECTIONS connections, $THREADS threads"
    # The service's CPU time (user + system, in clock ticks) over the measured run, per request. SERVICE_PID is the
    # dotnet process itself (the start-up subshell execs it).
    local tick; tick="$(getconf CLK_TCK)"
    local cpu0; cpu0="$(awk '{print $14 + $15}' "/proc/$SERVICE_PID/stat")"
    local out; out="$(TOKENS="$measured" BODY="$WORK/patient-view.json" THREADS="$THREADS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/tests/load/cds-hooks-wrk.lua" "$URL" | tail -n 1)"
    local cpu1; cpu1="$(awk '{print $14 + $15}' "/proc/$SERVICE_PID/stat")"
    local requests; requests="$(sed -nE 's/.*requests=([0-9]+).*/\1/p' <<<"$out")"
    echo "$out service_cpu_ms_per_request=$(awk -v c=$(( cpu1 - cpu0 )) -v t="$tick" -v r="${requests:-0}" 'BEGIN { if (r > 0) printf "%.2f", c * 1000 / t / r; else printf "n/a" }')"
    echo "   service RSS: $(awk '/^VmRSS/ {print $2, $3}' "/proc/$SERVICE_PID/status")"
    # A measured run with any error or non-2xx answer measured something else than the call: fail.
    if ! grep -qE 'non2xx=0 errors=0' <<<"$out"; then echo "FAIL: the measured run had errors or non-2xx answers" >&2; exit 1; fi
}

# Check once that the call really yields a card, so the load is the real path.
check() { # $@ curl auth args
    local cards; cards="$(curl -s --noproxy '*' -X POST "$URL" -H 'Content-Type: application/json' "$@" --data-binary @"$WORK/patient-view.json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cards"]))')"
    [[ "$cards" == 1 ]] || { echo "error: expected 1 card, got $cards" >&2; exit 1; }
}

start_service "MagCds__CdsHooks__TrustedIssuers__0__Issuer=$(cat "$WORK/issuer.txt")" "MagCds__CdsHooks__TrustedIssuers__0__JwksFile=$WORK/jwks.json" "MagCds__CdsHooks__PublicBaseUrl=$BASE"
tail -n 1 "$WORK/tokens.txt" > "$WORK/one-token.txt"; head -n -1 "$WORK/tokens.txt" > "$WORK/t" && mv "$WORK/t" "$WORK/tokens.txt"
check -H "Authorization: Bearer $(cat "$WORK/one-token.txt")"
run "JWT validation on ($ALG)" "$WORK/tokens.txt"
stop_service
[[ "${SKIP_DEV:-0}" == 1 ]] && exit 0

start_service "MagCds__CdsHooks__AllowUnsignedCalls=true"
check
run "development mode (no JWT)" ""
stop_service
