#!/usr/bin/env bash
# Soak of all three doors at once, and a baseline, on this machine (docs/performance.md has the results).
#   1. The FHIR test server starts; MagCds.WorkerBench starts MagCds (Release, SQLite store, worker with rest-hook
#      Subscription, CDS Hooks in development mode) and feeds the FHIR server RATE anti-MAG results per second for the
#      whole run, then checks that every result has exactly one current RiskAssessment and DetectedIssue.
#   2. Maximum throughput, MAX_S seconds each with wrk (-t2 -c4): $mag-evaluate (one Observation), CDS Hooks
#      patient-view (20 prefetched Observations), and a minimal Kestrel endpoint (tests/MagCds.Baseline) with the same
#      body as $mag-evaluate.
#   3. SOAK_S seconds with both doors loaded at once, each at SHARE% of its maximum (paced with wrk's delay()), while
#      the worker is fed; MagCds's RSS is sampled every 10 s. Pass: no error and no non-2xx answer, RSS at the end
#      <= 1.1 x RSS after the first minute, and the worker's exactly-once check.
# Usage: tests/load/soak.sh    Environment: SOAK_S (600), MAX_S (15), SHARE (35), RATE (2), SKIP_BUILD=1.
# Needs: wrk, node/npm (FHIR test server). Only 127.0.0.1 is used.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SOAK_S="${SOAK_S:-600}"; MAX_S="${MAX_S:-15}"; SHARE="${SHARE:-35}"; RATE="${RATE:-2}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/magcds-soak.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -n "${PORT:-}" ]] && pkill -f "MagCds.Service.dll --urls http://127.0.0.1:$PORT" 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

PROJECTS=(src/MagCds.Service tests/MagCds.WorkerBench tests/MagCds.LoadTools tests/MagCds.Baseline)
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    for p in "${PROJECTS[@]}"; do
        dotnet build "$ROOT/$p" -c Release -nologo -v quiet -clp:ErrorsOnly
    done
fi
# With SKIP_BUILD=1 a project never built here would otherwise fail minutes later as a refused connection.
for p in "${PROJECTS[@]}"; do
    [[ -f "$ROOT/$p/bin/Release/net10.0/$(basename "$p").dll" ]] || { echo "error: $p has no Release build (run without SKIP_BUILD=1)" >&2; exit 1; }
done
DLL="$ROOT/src/MagCds.Service/bin/Release/net10.0/MagCds.Service.dll"
PORT="$(free_port)"; BASE="http://127.0.0.1:$PORT"
BASELINE_PORT="$(free_port)"

# Bodies: one Observation for the REST door, a 20-result patient-view call for CDS Hooks.
cp "$ROOT/tests/MagCds.Tests/TestData/Observation-btu-medium.json" "$WORK/observation.json"
dotnet "$ROOT/tests/MagCds.LoadTools/bin/Release/net10.0/MagCds.LoadTools.dll" "$WORK" "$BASE/cds-services/magcds-patient-view" 1 >/dev/null

exec {fhir_out}< <(FHIR_EXIT_WITH_STDIN= bash "$ROOT/tests/fhir-test-server/start.sh" 0)
PIDS+=($!)
read -r line <&"$fhir_out"; FHIR="${line#listening }"
echo "== FHIR test server at $FHIR; MagCds at $BASE"

TOTAL_S=$(( SOAK_S + 3 * MAX_S + 60 ))
COUNT=$(( TOTAL_S * RATE ))
MAGCDS_BENCH_PORT="$PORT" MAGCDS_BENCH_SETTINGS="MagCds__CdsHooks__AllowUnsignedCalls=true;MagCds__RateLimit__PermitsPerSecond=0;MagCds__FhirRest__WarmUpValidator=false" \
    dotnet "$ROOT/tests/MagCds.WorkerBench/bin/Release/net10.0/MagCds.WorkerBench.dll" "$FHIR" "$DLL" steady "$COUNT" "$RATE" > "$WORK/worker.log" 2>&1 &
BENCH=$!; PIDS+=($BENCH)
for _ in $(seq 1 240); do curl -sf -o /dev/null "$BASE/health/ready" && break; sleep 0.5; done
SERVICE_PID="$(pgrep -f "MagCds.Service.dll --urls $BASE" | head -1)"
echo "== MagCds ready (pid $SERVICE_PID); worker fed $COUNT results at $RATE/s"

( cd "$ROOT/tests/MagCds.Baseline/bin/Release/net10.0" && exec dotnet MagCds.Baseline.dll --urls "http://127.0.0.1:$BASELINE_PORT" ) >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 60); do curl -sf -o /dev/null -X POST --data '{}' "http://127.0.0.1:$BASELINE_PORT/x" && break; sleep 0.5; done

wrk_run() { # label url body content-type seconds delay_ms
    BODY="$3" CONTENT_TYPE="$4" DELAY_MS="$6" wrk -t2 -c4 -d"$5"s --latency -s "$ROOT/tests/load/paced.lua" "$2" | grep '^requests=' | sed "s/^/$1 /"
}
rps() { sed -E 's/.* rps=([0-9.]+).*/\1/'; }

echo "== maximum throughput ($MAX_S s each, wrk -t2 -c4)"
rest_max="$(wrk_run rest "$BASE/fhir/Observation/\$mag-evaluate" "$WORK/observation.json" application/fhir+json "$MAX_S" 0)"; echo "$rest_max"
cds_max="$(wrk_run cds "$BASE/cds-services/magcds-patient-view" "$WORK/patient-view.json" application/json "$MAX_S" 0)"; echo "$cds_max"
base_max="$(wrk_run baseline "http://127.0.0.1:$BASELINE_PORT/fhir/Observation/\$mag-evaluate" "$WORK/observation.json" application/fhir+json "$MAX_S" 0)"; echo "$base_max"
R=$(echo "$rest_max" | rps); C=$(echo "$cds_max" | rps); B=$(echo "$base_max" | rps)
echo "ratio MagCds \$mag-evaluate / baseline: $(python3 -c "print(f'{$R/$B:.3f}')")"

# Pacing: 4 connections, each waiting DELAY ms, give about 4000/DELAY requests per second.
rest_delay=$(python3 -c "print(max(1, int(4000 / ($R * $SHARE / 100))))")
cds_delay=$(python3 -c "print(max(1, int(4000 / ($C * $SHARE / 100))))")
echo "== soak: $SOAK_S s, \$mag-evaluate at ~$SHARE% of $R rps (delay $rest_delay ms), CDS Hooks at ~$SHARE% of $C rps (delay $cds_delay ms), worker fed at $RATE/s"
wrk_run rest-soak "$BASE/fhir/Observation/\$mag-evaluate" "$WORK/observation.json" application/fhir+json "$SOAK_S" "$rest_delay" > "$WORK/rest-soak.txt" &
W1=$!
wrk_run cds-soak "$BASE/cds-services/magcds-patient-view" "$WORK/patient-view.json" application/json "$SOAK_S" "$cds_delay" > "$WORK/cds-soak.txt" &
W2=$!
: > "$WORK/rss.txt"
for t in $(seq 10 10 "$SOAK_S"); do
    sleep 10
    echo "$t $(ps -o rss= -p "$SERVICE_PID" | tr -d ' ')" >> "$WORK/rss.txt"
done
wait $W1 $W2
cat "$WORK/rest-soak.txt" "$WORK/cds-soak.txt"
rss1=$(awk '$1>=60 {print $2; exit}' "$WORK/rss.txt"); rss1="${rss1:-$(head -1 "$WORK/rss.txt" | awk '{print $2}')}"
rssN=$(tail -1 "$WORK/rss.txt" | awk '{print $2}')
echo "RSS (KB) every 10 s: $(awk '{printf "%s ", $2}' "$WORK/rss.txt")"
echo "RSS at 1 min: $rss1 KB, at the end: $rssN KB, ratio $(python3 -c "print(f'{$rssN/$rss1:.3f}')")"

echo "== waiting for the worker's feed to end and its exactly-once check"
wait $BENCH; bench_rc=$?
tail -n 8 "$WORK/worker.log"

fail=0
grep -h 'non2xx=0 errors=0' "$WORK/rest-soak.txt" >/dev/null || { echo "FAIL: \$mag-evaluate errors during the soak"; fail=1; }
grep -h 'non2xx=0 errors=0' "$WORK/cds-soak.txt" >/dev/null || { echo "FAIL: CDS Hooks errors during the soak"; fail=1; }
python3 -c "import sys; sys.exit(0 if $rssN <= 1.1 * $rss1 else 1)" || { echo "FAIL: RSS grew more than 10%"; fail=1; }
[[ $bench_rc -eq 0 ]] || { echo "FAIL: worker write-backs lost or doubled"; fail=1; }
[[ $fail -eq 0 ]] && echo "SOAK PASSED" || echo "SOAK FAILED"
exit $fail
