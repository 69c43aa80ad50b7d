-- wrk script: POST BODY (file) with CONTENT_TYPE, each connection waiting DELAY_MS between requests, so that
-- connections x 1000 / (DELAY_MS + latency) paces the rate (wrk has no rate option). Prints one summary line.
function init(args)
  local f = assert(io.open(os.getenv("BODY"), "rb")); body = f:read("*a"); f:close()
  delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/fhir+json"
end

function delay() return delay_ms end

function done(summary, latency, requests)
  io.write(string.format("requests=%d duration_s=%.1f rps=%.1f non2xx=%d errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
