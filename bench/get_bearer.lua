-- wrk script for a bearer-token GET (userinfo): the same request every time, with the access
-- token from WRK_BEARER. RESULT line as post_once.lua's: `ok` counts 200 answers.

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

ok = 0
unexpected = 0

function init(args)
  local token = os.getenv("WRK_BEARER") or error("WRK_BEARER is not set")
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Accept"] = "application/json"
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else unexpected = unexpected + 1 end
end

function done(summary, latency, requests_)
  local bad, good = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("unexpected") or 0)
    good = good + (t:get("ok") or 0)
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f socket_errors=%d unexpected=%d ok=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, bad, good))
end
