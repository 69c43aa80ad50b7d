#!/usr/bin/env bash
# Load check of the FHIR REST door with one large batch Bundle.
#
# Builds the service in Release, generates a batch Bundle of 10,000 anti-MAG IgM Observations (LOINC 39087-2,
# BTU values across all titre groups, 2,000 patients with 5 results each on different dates, each Observation
# with an identifier and a subject), starts the service on a free loopback port, posts the Bundle 5 times
# (the first is a warm-up), and prints each post's HTTP status and curl time_total, then the service's peak
# resident memory (VmHWM). Exits non-zero when any post does not answer 200, or when the service fails to start.
#
# The service runs inside a memory cgroup limited to MEMORY_LIMIT_MB (default 512), as a container with that limit
# would run it: the kernel enforces the memory target (going over it gets the service OOM-killed, which fails the run)
# and the .NET runtime sizes its heap from the limit, as it does in a container. The cgroup's peak usage is printed.
# Creating the cgroup needs root and a writable cgroup file system (v1 or v2); without it the run is unlimited and
# says so. MEMORY_LIMIT_MB=0 runs without a limit.
#
# Usage: tests/load/bundle-10k.sh            (from anywhere; only 127.0.0.1 is used)
# Environment: PORT (default: a free port), POSTS (default 5), PATIENTS (default 2000), RESULTS_PER_PATIENT (default 5),
#              MAX_BODY_BYTES (default 256 MiB), MEMORY_LIMIT_MB (default 512, 0 for none), SKIP_BUILD=1 to use the
#              existing Release build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
POSTS="${POSTS:-5}"
PATIENTS="${PATIENTS:-2000}"
RESULTS_PER_PATIENT="${RESULTS_PER_PATIENT:-5}"
MAX_BODY="${MAX_BODY_BYTES:-$((256 * 1024 * 1024))}"   # MagCds:FhirRest:MaxRequestBodyBytes for this run (Kestrel still caps bodies at 30,000,000 bytes)
MEMORY_LIMIT_MB="${MEMORY_LIMIT_MB:-512}"
BIN="$ROOT/src/MagCds.Service/bin/Release/net10.0"
# shellcheck source=warm-up.sh
source "$ROOT/tests/load/warm-up.sh"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

WORK="$(mktemp -d "${TMPDIR:-/tmp}/magcds-load.XXXXXX")"
SERVICE_PID=""
cleanup() {
    if [[ -n "$SERVICE_PID" ]] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    if [[ -n "${CGROUP:-}" ]]; then rmdir "$CGROUP" 2>/dev/null || true; fi
}
trap cleanup EXIT

# A memory cgroup for the service (v1: memory controller directory; v2: unified hierarchy with the memory controller).
CGROUP=""; CG_PEAK=""; CG_EVENTS=""
if [[ "$MEMORY_LIMIT_MB" != 0 ]]; then
    limit=$((MEMORY_LIMIT_MB * 1024 * 1024)); name="magcds-bundle-$$"
    if [[ -w /sys/fs/cgroup/memory ]] && mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null; then
        CGROUP="/sys/fs/cgroup/memory/$name"
        if { echo "$limit" > "$CGROUP/memory.limit_in_bytes"; } 2>/dev/null; then
            { echo "$limit" > "$CGROUP/memory.memsw.limit_in_bytes"; } 2>/dev/null || true   # no swapping past the limit either
            CG_PEAK="$CGROUP/memory.max_usage_in_bytes"; CG_EVENTS="$CGROUP/memory.failcnt"
        else rmdir "$CGROUP"; CGROUP=""; fi
    elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null && mkdir "/sys/fs/cgroup/$name" 2>/dev/null; then
        CGROUP="/sys/fs/cgroup/$name"
        # memory.max exists only when the parent delegates the memory controller (cgroup.subtree_control).
        if [[ -w "$CGROUP/memory.max" ]] && { echo "$limit" > "$CGROUP/memory.max"; } 2>/dev/null; then
            { echo 0 > "$CGROUP/memory.swap.max"; } 2>/dev/null || true
            CG_PEAK="$CGROUP/memory.peak"; CG_EVENTS="$CGROUP/memory.events"
        else rmdir "$CGROUP"; CGROUP=""; fi
    fi
    if [[ -n "$CGROUP" ]]; then echo "== memory limit: $MEMORY_LIMIT_MB MiB (cgroup $CGROUP)"
    else echo "== note: no writable memory cgroup here; running WITHOUT the $MEMORY_LIMIT_MB MiB limit"; fi
fi

# 1. Build.
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building src/MagCds.Service (Release)"
    dotnet build "$ROOT/src/MagCds.Service/MagCds.Service.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly
fi
[[ -f "$BIN/MagCds.Service.dll" ]] || { echo "error: $BIN/MagCds.Service.dll not found" >&2; exit 1; }

# 2. Generate the Bundle (deterministic: fixed seed).
BUNDLE="$WORK/bundle-10k.json"
python3 - "$BUNDLE" "$PATIENTS" "$RESULTS_PER_PATIENT" <<'PY'
import datetime, json, random, sys, uuid
path, patients, per_patient = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261126)
# Typical Bühlmann BTU levels: not raised (<1000), low (1000-9999), medium (10000-69999), high (>=70000).
levels = [(100, 999), (1000, 9999), (10000, 69999), (70000, 150000)]
start = datetime.datetime(2023, 1, 2, 8, 0, tzinfo=datetime.timezone.utc)
entries = []
n = 0
for p in range(patients):
    lo, hi = levels[rng.randrange(len(levels))]
    base = rng.randint(lo, hi)
    first = start + datetime.timedelta(days=rng.randrange(0, 365), minutes=rng.randrange(0, 600))
    for k in range(per_patient):
        n += 1
        when = first + datetime.timedelta(days=91 * k + rng.randrange(0, 20))   # different dates, oldest first
        value = max(50, int(base * rng.uniform(0.6, 1.4)))
        obs = {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.99", "value": f"LOAD-{n:06d}"}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "39087-2",
                                 "display": "Myelin associated glycoprotein IgM Ab [Units/volume] in Serum"}],
                     "text": "Anti-MAG IgM"},
            "subject": {"reference": f"Patient/load-{p:05d}"},
            "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "issued": (when + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "valueQuantity": {"value": value, "unit": "BTU", "system": "http://unitsofmeasure.org", "code": "[arb'U]"},
        }
        entries.append({"fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                        "resource": obs, "request": {"method": "POST", "url": "Observation"}})
bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
with open(path, "w", encoding="utf-8") as f:
    json.dump(bundle, f, separators=(",", ":"))
print(f"== bundle: {len(entries)} Observations, {patients} patients, {per_patient} results each")
PY
echo "== bundle size: $(stat -c %s "$BUNDLE") bytes"

# 3. Start the service on a free loopback port, from its own folder (so its appsettings.json applies).
PORT="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}"
BASE="http://127.0.0.1:$PORT"
echo "== starting service on $BASE"
(
    cd "$BIN"
    # Join the cgroup before exec, so the service and everything it starts are inside the limit from the start.
    if [[ -n "$CGROUP" ]]; then echo "$BASHPID" > "$CGROUP/cgroup.procs"; fi
    export MagCds__FhirRest__MaxRequestBodyBytes="$MAX_BODY"
    exec dotnet MagCds.Service.dll --urls "$BASE"
) >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!

ready=0
for _ in $(seq 1 120); do
    if ! kill -0 "$SERVICE_PID" 2>/dev/null; then break; fi
    if curl -sf --noproxy '*' -o /dev/null --max-time 2 "$BASE/fhir/metadata"; then ready=1; break; fi
    sleep 0.5
done
if [[ $ready != 1 ]]; then
    echo "error: the service did not become ready; its log:" >&2
    tail -n 40 "$WORK/service.log" >&2
    exit 1
fi
# The background conformance warm-up (it loads the profile validator) runs once the service is ready; measure the
# steady state, after it.
wait_for_conformance_warm_up "$WORK/service.log" "$SERVICE_PID"
echo "== service ready (pid $SERVICE_PID), VmHWM after start and warm-up: $(awk '/^VmHWM/ {print $2, $3}' "/proc/$SERVICE_PID/status")"

# 4. Post the Bundle.
failed=0
times=()
for i in $(seq 1 "$POSTS"); do
    out="$WORK/response-$i.json"
    res="$(curl -sS --noproxy '*' --max-time 300 -o "$out" \
        -H 'Content-Type: application/fhir+json' -H 'Accept: application/fhir+json' -H 'Expect:' \
        --data-binary @"$BUNDLE" \
        -w '%{http_code} %{time_total} %{size_download}' \
        "$BASE/fhir/Observation/\$mag-evaluate")" || res="000 0 0"
    read -r code t size <<<"$res"
    label=$([[ $i == 1 ]] && echo "warm-up" || echo "measured")
    printf 'post %d (%s): HTTP %s  time_total %ss  response %s bytes\n' "$i" "$label" "$code" "$t" "$size"
    if [[ "$code" != 200 ]]; then
        failed=1
        echo "   response head: $(head -c 400 "$out" 2>/dev/null)" >&2
    elif [[ $i == 1 ]]; then
        # Check the answer once: one RiskAssessment per Observation, and what the outcome says.
        python3 - "$out" <<'PY'
import json, sys
p = json.load(open(sys.argv[1], encoding="utf-8"))
names = [x["name"] for x in p.get("parameter", [])]
oo = next(x["resource"] for x in p["parameter"] if x["name"] == "outcome")
print(f"   answer: {names.count('riskAssessment')} riskAssessment, {names.count('detectedIssue')} detectedIssue, "
      f"{len(oo.get('issue', []))} outcome issues; \"{oo['issue'][0]['details']['text']}\"")
PY
    fi
    [[ $i == 1 ]] || times+=("$t")
    rm -f "$out"
done

# 5. Peak memory, then stop.
if [[ -r "/proc/$SERVICE_PID/status" ]]; then
    hwm="$(awk '/^VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")"
    rss="$(awk '/^VmRSS/ {print $2}' "/proc/$SERVICE_PID/status")"
    awk -v h="$hwm" -v r="$rss" 'BEGIN {printf "service peak RSS (VmHWM): %d kB (%.0f MiB); current VmRSS %d kB\n", h, h / 1024, r}'
else
    echo "FAIL: the service is gone (killed by the memory limit?)" >&2
    failed=1
fi
if [[ -n "$CGROUP" ]]; then
    if [[ -r "$CG_PEAK" ]]; then
        awk -v p="$(cat "$CG_PEAK")" -v l="$MEMORY_LIMIT_MB" 'BEGIN {printf "cgroup peak usage: %.0f MiB of the %d MiB limit (as the kernel counts it for the limit: the group'"'"'s memory and the page cache it read first)\n", p / 1048576, l}'
    else
        echo "cgroup peak usage: n/a (this kernel does not report it)"
    fi
    echo "cgroup limit events: $(tr '\n' ' ' < "$CG_EVENTS" 2>/dev/null || echo n/a)"
fi
if ((${#times[@]} > 0)); then
    printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {printf "measured posts: min %.3fs  median %.3fs  max %.3fs (n=%d)\n", a[1], (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), a[NR], NR}'
fi
if grep -q '"@l":"\(Error\|Fatal\)"' "$WORK/service.log"; then
    echo "service logged errors:"; grep '"@l":"\(Error\|Fatal\)"' "$WORK/service.log" | head -n 5 | cut -c1-400
fi

if [[ $failed != 0 ]]; then
    echo "FAIL: at least one post did not answer 200" >&2
    exit 1
fi
echo "OK: all $POSTS posts answered 200"
