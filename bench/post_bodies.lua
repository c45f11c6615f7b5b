-- wrk script for pending device-token polls: like the peer's wrk/post_form.lua (same method,
-- headers and RESULT line), except that each request takes the next form body from a file, in
-- turn, so that every device code is polled at most once per pass over the file.
--
-- Latchkey answers `slow_down` to a poll that comes sooner than the polling interval after the
-- previous poll of the same code (and ends the request as `access_denied` after repeated
-- abuse), so one fixed body, as the peer uses, would measure the abuse path, not the pending
-- one. With enough codes (more than the polls made per interval) every answer is
-- `authorization_pending`. The load benchmark (crates/latchkey/benches/load.rs) writes the file.
--
-- Env (read by every wrk thread):
--   WRK_BODIES_FILE  one urlencoded form body per line (required)
--
-- done() prints one machine-readable line, the fields of post_form.lua's plus two counts:
--   RESULT requests=N duration_s=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=..
--          socket_errors=N unexpected=N pending=N slow_down=N
-- pending: 400 with "authorization_pending"; slow_down: 400 with "slow_down"; unexpected:
-- anything else.

local threads = {}
local counter = 0
function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local next_request = 1
pending = 0
slow_down = 0
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
  -- Threads start at different places in the list, so they do not poll the same codes together.
  local index = tonumber(thread_index) or 0
  next_request = (math.floor(#requests * index / 16) % #requests) + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then next_request = 1 end
  return r
end

function response(status, headers, body)
  if status == 400 and string.find(body, "authorization_pending", 1, true) then
    pending = pending + 1
  elseif status == 400 and string.find(body, "slow_down", 1, true) then
    slow_down = slow_down + 1
  else
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests_)
  local bad, p, s = 0, 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("unexpected") or 0)
    p = p + (t:get("pending") or 0)
    s = s + (t:get("slow_down") or 0)
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f socket_errors=%d unexpected=%d pending=%d slow_down=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, bad, p, s))
end
