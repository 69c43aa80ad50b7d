#!/usr/bin/env bash
# Fuzzes MagCds's request parsing and evaluation (tools/MagCds.Fuzz) with AFL++ through SharpFuzz.
#   tests/fuzz/run.sh [minutes=10]       needs: apt-get install afl++ ; dotnet tool install --global SharpFuzz.CommandLine
# Seeds: the FHIR test data, the console samples and the small files of the hostile corpus. Findings land in
# tests/fuzz/out/default/crashes (and hangs); reproduce one with
#   dotnet tests/fuzz/out/bin/MagCds.Fuzz.dll once <file>
# and add it to the hostile corpus (tests/MagCds.Tests/TestData/Hostile/make-corpus.py) as a regression case.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes="${1:-10}"
out=tests/fuzz/out
export PATH="$PATH:$HOME/.dotnet/tools"
command -v afl-fuzz >/dev/null || { echo "afl-fuzz missing: apt-get install -y afl++"; exit 1; }
command -v sharpfuzz >/dev/null || { echo "sharpfuzz missing: dotnet tool install --global SharpFuzz.CommandLine"; exit 1; }

rm -rf "$out" && mkdir -p "$out/seeds"
dotnet publish tools/MagCds.Fuzz -c Release -o "$out/bin" -v quiet -nologo
# Instrument our code and the Firely parsers and model (the code that reads untrusted bytes).
for dll in MagCds.Core.dll MagCds.Service.dll Hl7.Fhir.Base.dll Hl7.Fhir.R4.dll; do sharpfuzz "$out/bin/$dll" >/dev/null; done

find tests/MagCds.Tests/TestData src/MagCds.Service/Console/samples fhir-profiles/package/example -type f \( -name '*.json' -o -name '*.xml' \) -size -12k \
  ! -name 'manifest.json' ! -name 'cases.json' -exec cp {} "$out/seeds/" \;
# Invalid UTF-8 is refused before any instrumented code runs, and AFL refuses seeds that reach no instrumentation.
for f in "$out"/seeds/*; do iconv -f utf-8 -t utf-8 "$f" >/dev/null 2>&1 || rm "$f"; done
echo "$(ls "$out/seeds" | wc -l) seeds"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_SKIP_BIN_CHECK=1
timeout --preserve-status "$((minutes * 60))" \
  afl-fuzz -i "$out/seeds" -o "$out" -t 10000 -m none -- dotnet "$out/bin/MagCds.Fuzz.dll" || true
stats="$out/default/fuzzer_stats"
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg)' "$stats" || true
echo "crashes: $(ls "$out/default/crashes" 2>/dev/null | grep -vc README || true), hangs: $(ls "$out/default/hangs" 2>/dev/null | wc -l)"
