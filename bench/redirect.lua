-- wrk script for bench/redirect.py. Configured through the environment, because wrk decides
-- from the main script state (before init) whether request() and delay() exist:
--
--   BENCH_RATE      total requests/s to offer (a constant-rate schedule); unset or 0: as fast as possible
--   BENCH_THREADS   wrk's -t, to split BENCH_RATE between the threads
--   BENCH_IDS       file prefix: each thread writes the aff_click id of every 302 to <prefix>.<n>
--   BENCH_COOKIES   number of returning browsers per thread: every request carries
--                   aff_vid=<one of them>; unset or 0: no cookie (a new browser each time)
--
-- done() prints one line "BENCHJSON {...}" with the counts and the latency percentiles (us).

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local ids_prefix = os.getenv("BENCH_IDS")
local cookie_pool = tonumber(os.getenv("BENCH_COOKIES") or "0") or 0
local wrk_threads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

-- Per-thread state (each wrk thread has its own Lua state).
n302, n404, nother, nsent = 0, 0, 0, 0
local ids_file

function init(args)
   if ids_prefix and ids_prefix ~= "" then
      ids_file = assert(io.open(ids_prefix .. "." .. tid, "w"))
   end
   if cookie_pool > 0 then
      math.randomseed(tid * 7919 + os.time())
      cookies = {}
      for i = 1, cookie_pool do
         cookies[i] = string.format("aff_vid=%08x-%04x-4%03x-a%03x-%04x%08x",
            math.random(0, 0x7fffffff), math.random(0, 0xffff), math.random(0, 0xfff),
            math.random(0, 0xfff), math.random(0, 0xffff), math.random(0, 0x7fffffff))
      end
   end
end

if cookie_pool > 0 then
   function request()
      nsent = nsent + 1
      return wrk.format(nil, nil, { ["Cookie"] = cookies[math.random(1, cookie_pool)] })
   end
end

if rate > 0 then
   -- A constant-rate schedule shared by this thread's connections: each connection that is
   -- ready to send claims the next free slot and waits for it. Latency is measured by wrk
   -- from the moment the request is written. The achieved rate is printed next to it.
   local ffi = require("ffi")
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clk_id, bench_timespec *tp);
   ]]
   local ts = ffi.new("bench_timespec")
   local function now_ms()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
   local next_at

   function delay()
      local interval = 1000 * wrk_threads / rate
      local now = now_ms()
      if next_at == nil or next_at < now - 1000 then
         next_at = now -- start, or more than a second behind: do not burst to catch up
      end
      local wait = next_at - now
      next_at = next_at + interval
      if wait < 0 then
         return 0
      end
      return math.floor(wait + 0.5)
   end
end

function response(status, headers, body)
   if status == 302 then
      n302 = n302 + 1
      if ids_file then
         local location = headers["Location"] or headers["location"] or ""
         local id = string.match(location, "aff_click=(%x+)")
         ids_file:write((id or "-"), "\n")
      end
   elseif status == 404 then
      n404 = n404 + 1
   else
      nother = nother + 1
   end
end

function done(summary, latency, requests)
   local c302, c404, cother, csent = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      c302 = c302 + thread:get("n302")
      c404 = c404 + thread:get("n404")
      cother = cother + thread:get("nother")
      csent = csent + thread:get("nsent")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests": %d, "duration_us": %d, "n302": %d, "n404": %d, "nother": %d, "sent": %d, ' ..
      '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, c302, c404, cother, csent,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
