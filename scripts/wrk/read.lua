-- The same read on every request:
--   wrk -s read.lua URL -- stream.get <stream>                 (100 messages)
--   wrk -s read.lua URL -- category.get <category>             (100 messages)
--   wrk -s read.lua URL -- category.get <category> <member> <size>   (a consumer-group member)
dofile(string.match(debug.getinfo(1, "S").source, "^@(.*/)") .. "common.lua")

local req

function init(args)
   local options = '{"batchSize":100}'
   if args[3] then
      options = '{"batchSize":100,"consumerGroup":{"member":' .. args[3] ..
         ',"size":' .. args[4] .. '}}'
   end
   local body = '["' .. args[1] .. '","' .. args[2] .. '",' .. options .. ']'
   req = wrk.format(nil, nil, nil, body)
end

function request()
   return req
end
