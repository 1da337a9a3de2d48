-- wrk script: replays pre-generated webhook calls, each signed and encrypted as WeChat does and
-- each with a fresh MsgId, so the server does all the real work. Written by
-- `wxoa bench --write-requests FILE` (a line each: query string, tab, body).
--
--   wrk -t1 -c32 -d15s -s scripts/wrk-webhook.lua http://127.0.0.1:8080 -- FILE FIRST LAST
--
-- replays lines FIRST..LAST (1-based) in order; past LAST it would repeat MsgIds, so the caller
-- makes the range larger than the run can use (scripts/bench-wrk.sh checks wrk's count).
local requests = {}
local next = 1

function init(args)
  local file, first, last = args[1], tonumber(args[2]), tonumber(args[3])
  local n = 0
  for line in io.lines(file) do
    n = n + 1
    if n > last then break end
    if n >= first then
      local query, body = line:match("^([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/wechat?" .. query, { ["Content-Type"] = "text/xml" }, body)
    end
  end
end

function request()
  local r = requests[next]
  next = next % #requests + 1
  return r
end
