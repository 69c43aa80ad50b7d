#!/usr/bin/env bash
# Starts the test FHIR server: ./start.sh [PORT]   (PORT or env FHIR_PORT; 0 or unset = any free port)
# Installs the pinned packages from package-lock.json on first use, then replaces itself with node
# (exec), so the PID a caller holds is the server's own and a signal reaches it directly.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -f node_modules/@medplum/fhir-router/package.json ]; then
  # stdout must carry only the "listening" line, so npm's output goes to stderr.
  npm ci --no-audit --no-fund 1>&2
fi

# @medplum/core needs a global WebSocket at import. Node 22+ has one; Node 20 needs the flag, and
# later Node versions may drop the flag, so pass it only when WebSocket is missing.
flags=()
if ! node -e 'process.exit(typeof WebSocket === "undefined" ? 1 : 0)'; then
  flags+=(--experimental-websocket)
fi

exec node "${flags[@]}" fhir-host.mjs "$@"
