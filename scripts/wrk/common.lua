-- Shared by the EventoDB wrk scripts (scripts/benchlib.py runs them for the bench_*.py scripts).
-- Every script POSTs a JSON-RPC body to the URL given to wrk; the token comes with -H.
-- Each wrk thread has its own Lua state: setup() numbers the threads, response() counts
-- answers that are not 200 per thread, done() sums them and prints one machine-readable line.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

non200 = 0

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if non200 <= 3 then
         io.stderr:write("non-200 response " .. status .. ": " .. string.sub(body, 1, 300) .. "\n")
      end
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do
      bad = bad + (thread:get("non200") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "EVENTODB requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d " ..
      "non200=%d status_errors=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
      bad, e.status, e.connect, e.read, e.write, e.timeout))
end
