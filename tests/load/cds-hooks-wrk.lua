-- wrk script: POST the patient-view call, each request with its own pre-minted JWT (unique jti, so no replay).
-- Threads take disjoint token slices. Needs env TOKENS (file, one JWT per line) and BODY (request body file).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY"), "r")); body = f:read("*a"); f:close()
  tokens = {}
  local nthreads = tonumber(os.getenv("THREADS") or "2")
  local i = 0
  local path = os.getenv("TOKENS")
  if path and path ~= "" then
    for line in io.lines(path) do
      if i % nthreads == id then table.insert(tokens, line) end
      i = i + 1
    end
  end
  next_token = 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local headers = { ["Content-Type"] = "application/json" }
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[next_token]
    next_token = next_token + 1
    if next_token > #tokens then next_token = 1 end -- wraps only if the run outlasts the tokens (then 401s show up as errors)
  end
  return wrk.format("POST", wrk.path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("requests=%d duration_s=%.1f rps=%.0f non2xx=%d errors=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
