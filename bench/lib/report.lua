-- wrk script used by every load run of the benchmark.
-- Environment: WRK_METHOD, WRK_BODY, WRK_HEADER ("name: value"), and WRK_PATHS (space-separated
-- paths the connections cycle through instead of the URL's path).
-- At the end it prints one line, "WRK_JSON {...}", that bench/lib/load.mjs parses.
local method = os.getenv("WRK_METHOD")
if method then wrk.method = method end
local body = os.getenv("WRK_BODY")
if body then wrk.body = body end
local header = os.getenv("WRK_HEADER")
if header then
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

local paths = {}
for p in (os.getenv("WRK_PATHS") or ""):gmatch("%S+") do paths[#paths + 1] = p end
if #paths > 0 then
  local i = 0
  request = function()
    i = i % #paths + 1
    return wrk.format(nil, paths[i])
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
