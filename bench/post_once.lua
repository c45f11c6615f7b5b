-- wrk script for requests counted by their 200s: single-use form posts (authorization-code
-- exchanges) or one bearer-token GET (userinfo). The load benchmark (benches/support/codes.rs)
-- sets one of:
--   WRK_BODIES_FILE  one urlencoded form body per line: each request POSTs the next one, so a
--                    body is never sent twice while the file lasts (the bench writes more than a
--                    run can use; if a run outlasts them it starts over, and those answers,
--                    replays refused with 400, count as `unexpected`)
--   WRK_BEARER       an access token: every request is the same GET with it
-- done() prints post_bodies.lua's RESULT line, with `ok` (200 answers) instead of its poll counts.

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
ok = 0
unexpected = 0

function init(args)
  local token = os.getenv("WRK_BEARER")
  if token then
    wrk.headers["Authorization"] = "Bearer " .. token
    wrk.headers["Accept"] = "application/json"
    return
  end
  local path = os.getenv("WRK_BODIES_FILE") or error("set WRK_BODIES_FILE or WRK_BEARER")
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
  if #requests == 0 then return wrk.format() end
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
