-- stream.write to a new stream on every request:
--   wrk -s write.lua URL -- <run prefix> [spread|category]
-- spread (default): stream "<prefix>t<thread>n<counter>-1", so every write has its own category.
-- category: stream "<prefix>-t<thread>n<counter>", every write a new stream of one category.
-- Names are unique per request across threads and runs.
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local prefix = "w"
local mode = "spread"
local counter = 0

function init(args)
   if args[1] then prefix = args[1] end
   if args[2] then mode = args[2] end
   if mode == "category" then
      prefix = prefix .. "-t" .. thread_id .. "n"
   else
      prefix = prefix .. "t" .. thread_id .. "n"
   end
end

function request()
   counter = counter + 1
   local stream = prefix .. counter
   if mode ~= "category" then stream = stream .. "-1" end
   local body = '["stream.write","' .. stream ..
      '",{"type":"Bench","data":{"i":' .. counter .. ',"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]'
   return wrk.format(nil, nil, nil, body)
end
