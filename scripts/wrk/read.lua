-- The same read on every request:
--   wrk -s read.lua URL -- stream.get <stream>       (100 messages)
--   wrk -s read.lua URL -- category.get <category>   (100 messages)
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local req

function init(args)
   local body = '["' .. args[1] .. '","' .. args[2] .. '",{"batchSize":100}]'
   req = wrk.format(nil, nil, nil, body)
end

function request()
   return req
end
