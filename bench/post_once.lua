-- wrk script for single-use form posts (authorization-code exchanges): each request takes the
-- next form body from a file, and a body is never sent twice while the file lasts (the load
-- benchmark writes more bodies than a run can use; if a run outlasts them it starts over, and
-- those answers, replays refused with 400, count as `unexpected`). Same RESULT line as
-- post_bodies.lua, with `ok` (200 answers) instead of the poll counts.
--
-- Env: WRK_BODIES_FILE  one urlencoded form body per line (required)

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
ok = 0
unexpected = 0

function init(args)
  local path = os.getenv("WRK_BODIES_FILE") or error("WRK_BODIES_FILE is not set")
  local f = io.open(path, "r") or error("cannot open " .. path)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "application/json" }
  for line in f:lines() do
    if line ~= "" then
      table.insert(requests, wrk.format("POST", nil, headers, line))
    end
  end
  f:close()
  if #requests == 0 then error("no bodies in " .. path) end
end

function request()
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then next_request = 1 end
  return r
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
