-- wrk script: 16 pipelined GETs of /index.html per write.
init = function(args)
   local r = {}
   for i = 1, 16 do r[i] = wrk.format(nil, "/index.html") end
   req = table.concat(r)
end
request = function() return req end
