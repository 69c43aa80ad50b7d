#!/usr/bin/env bash
# Start-up time to ready: starts the Release build of the service on its embedded defaults (a fresh SQLite store, a
# free loopback port) RUNS times, and measures from the moment the process is launched until GET /health/ready first
# answers 200 (knowledge loaded, store reachable, warm-up evaluation done), polling every 10 ms with curl. Prints each
# run and the median. The first run after a build includes the disk cache warming up, as a first deploy would.
#
# Usage: tests/load/startup.sh        Environment: RUNS (default 7), SKIP_BUILD=1 to use the existing Release build,
#        IMAGE_BUILD=1 to measure what the Dockerfile publishes instead (ReadyToRun, linux-x64).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUNS="${RUNS:-7}"
BIN="$ROOT/src/MagCds.Service/bin/Release/net10.0"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/magcds-startup.XXXXXX")"
if [[ "${IMAGE_BUILD:-0}" == 1 ]]; then
    echo "== publishing src/MagCds.Service as the Dockerfile does (ReadyToRun)"
    BIN="$WORK/publish"
    dotnet publish "$ROOT/src/MagCds.Service/MagCds.Service.csproj" -c Release -r linux-x64 --self-contained false \
        -p:PublishReadyToRun=true -o "$BIN" -nologo -v quiet -clp:ErrorsOnly
elif [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building src/MagCds.Service (Release)"
    dotnet build "$ROOT/src/MagCds.Service/MagCds.Service.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now_ms() { date +%s%3N; }

PID=""
cleanup() {
    [[ -n "$PID" ]] && kill -KILL "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

times=()
for run in $(seq 1 "$RUNS"); do
    port="$(free_port)"
    start="$(now_ms)"
    (cd "$BIN" && exec env MagCds__Store__SqliteConnectionString="Data Source=$WORK/run-$run.db" \
        dotnet MagCds.Service.dll --urls "http://127.0.0.1:$port" >"$WORK/run-$run.log" 2>&1) &
    PID=$!
    ready=""
    for _ in $(seq 1 3000); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready" || true)" == 200 ]]; then
            ready="$(now_ms)"; break
        fi
        kill -0 "$PID" 2>/dev/null || { echo "run $run: the service exited"; cat "$WORK/run-$run.log"; exit 1; }
        sleep 0.01
    done
    [[ -n "$ready" ]] || { echo "run $run: not ready within 30 s"; exit 1; }
    ms=$((ready - start))
    times+=("$ms")
    echo "run $run: ready after $ms ms"
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
done
median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }')"
echo "median time to ready: $median ms over $RUNS runs"
