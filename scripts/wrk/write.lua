-- stream.write to a new stream on every request:
--   wrk -s write.lua URL -- <run prefix>
-- Stream names are "<prefix>t<thread>n<counter>-1", unique per request across threads and runs.
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local prefix = "w"
local counter = 0

function init(args)
   if args[1] then prefix = args[1] end
   prefix = prefix .. "t" .. thread_id .. "n"
end

function request()
   counter = counter + 1
   local body = '["stream.write","' .. prefix .. counter ..
      '-1",{"type":"Bench","data":{"i":' .. counter .. ',"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]'
   return wrk.format(nil, nil, nil, body)
end
