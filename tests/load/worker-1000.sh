#!/usr/bin/env bash
# Benchmark of the FHIR server door (MagCds:Worker) against the FHIR test server (tests/fhir-test-server).
#
# Three runs, each on a fresh FHIR server and a fresh SQLite store:
#   steady   1,000 anti-MAG results created at 20/s while MagCds runs with its rest-hook Subscription: lag p50/p90/p99.
#   kill     the same, with MagCds killed (SIGKILL) after half of them and started again: lag, nothing lost or doubled.
#   backlog  1,000 results already on the server when MagCds starts (found by polling): drain throughput.
# Each run ends with a check that every result has exactly one current RiskAssessment and DetectedIssue.
#
# Usage: tests/load/worker-1000.sh   Environment: COUNT (default 1000), RATE (default 20), MODES (default "steady kill backlog"),
#        SKIP_BUILD=1 to use the existing Release builds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COUNT="${COUNT:-1000}"; RATE="${RATE:-20}"; MODES="${MODES:-steady kill backlog}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    dotnet build "$ROOT/src/MagCds.Service/MagCds.Service.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
    dotnet build "$ROOT/tests/MagCds.WorkerBench/MagCds.WorkerBench.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
fi
DLL="$ROOT/src/MagCds.Service/bin/Release/net10.0/MagCds.Service.dll"
BENCH="$ROOT/tests/MagCds.WorkerBench/bin/Release/net10.0/MagCds.WorkerBench.dll"

FHIR_PID=""
cleanup() { [[ -n "$FHIR_PID" ]] && kill "$FHIR_PID" 2>/dev/null || true; }
trap cleanup EXIT

rc=0
for mode in $MODES; do
    # A fresh in-memory FHIR server per run (its search is a linear scan, so data from an earlier run would slow this one).
    exec {out}< <(FHIR_EXIT_WITH_STDIN= bash "$ROOT/tests/fhir-test-server/start.sh" 0)
    FHIR_PID=$!
    read -r line <&"$out"
    base="${line#listening }"
    echo "== $mode: FHIR test server at $base"
    dotnet "$BENCH" "$base" "$DLL" "$mode" "$COUNT" "$RATE" || rc=1
    kill "$FHIR_PID" 2>/dev/null || true
    wait "$FHIR_PID" 2>/dev/null || true
    FHIR_PID=""
done
exit "$rc"
