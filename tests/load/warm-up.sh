# Sourced by the load scripts (not run on its own): waits until the service's background conformance warm-up
# (Conformance/ConformanceWarmUp.cs: the profile validator, seconds of CPU once the service is ready) has finished,
# so a measurement sees the steady state. Returns at once when the warm-up is switched off.
# Usage: wait_for_conformance_warm_up <service log file> <service pid>
wait_for_conformance_warm_up() {
    local log="$1" pid="$2"
    [[ "${MagCds__FhirRest__WarmUpValidator:-true}" == false ]] && return 0
    for _ in $(seq 1 240); do
        grep -q 'Profile validator ready' "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { echo "error: the service exited during its warm-up; its log:" >&2; tail -n 20 "$log" >&2; exit 1; }
        sleep 0.5
    done
    echo "error: the conformance warm-up did not finish in 120 s" >&2
    exit 1
}
