-- slipway: the edge's route table inside nginx. The edge posts the table to
-- the control endpoint; rewrite() picks the release per request (pin, else
-- smooth weighted round robin), balance() picks the instance.
local balancer = require "ngx.balancer"

local M = {}
local dict = ngx.shared.slipway
local cached_version = nil
local hosts = {}

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = string.find(s, sep, i, true)
    if not j then
      out[#out + 1] = string.sub(s, i)
      return out
    end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function parse(text)
  local hs, route = {}, nil
  for line in string.gmatch(text, "[^\n]+") do
    local f = split(line, "\t")
    if f[1] == "R" then
      route = { service = f[2], host = f[3], path = f[4], backends = {}, byrel = {}, pins = {} }
      hs[f[3]] = hs[f[3]] or {}
      table.insert(hs[f[3]], route)
    elseif f[1] == "B" and route then
      local b = { release = f[2], weight = tonumber(f[3]), current = 0, peers = {}, rr = 0 }
      for addr in string.gmatch(f[4] or "", "%S+") do
        local host, port = string.match(addr, "^(.*):(%d+)$")
        b.peers[#b.peers + 1] = { host = host, port = tonumber(port) }
      end
      table.insert(route.backends, b)
      route.byrel[f[2]] = b
    elseif f[1] == "P" and route then
      table.insert(route.pins, { kind = f[2], name = string.lower(f[3]), value = f[4], release = f[5] })
    end
  end
  for _, list in pairs(hs) do
    table.sort(list, function(a, b) return #a.path > #b.path end)
  end
  return hs
end

local function load()
  local v = dict:get("version")
  if v ~= cached_version then
    hosts = parse(dict:get("table") or "")
    cached_version = v
  end
  return hosts
end

local function path_match(prefix, uri)
  if prefix == "/" or uri == prefix then return true end
  if string.sub(uri, 1, #prefix) ~= prefix then return false end
  return string.sub(prefix, -1) == "/" or string.sub(uri, #prefix + 1, #prefix + 1) == "/"
end

local function swrr(route)
  local best, total = nil, 0
  for _, b in ipairs(route.backends) do
    if b.weight > 0 and #b.peers > 0 then
      b.current = b.current + b.weight
      total = total + b.weight
      if not best or b.current > best.current then best = b end
    end
  end
  if best then best.current = best.current - total end
  return best
end

-- rewrite chooses the route and the release of a request.
function M.rewrite()
  local list = load()[string.lower(ngx.var.host or "")]
  if not list then return ngx.exit(404) end
  local uri, route = ngx.var.uri, nil
  for _, r in ipairs(list) do
    if path_match(r.path, uri) then route = r break end
  end
  if not route then return ngx.exit(404) end
  local chosen = nil
  for _, p in ipairs(route.pins) do
    local v
    if p.kind == "header" then
      v = ngx.req.get_headers()[p.name]
      if type(v) == "table" then v = v[1] end
    else
      v = ngx.var["cookie_" .. p.name]
    end
    if v and (p.value == "" or p.value == v) then
      chosen = route.byrel[p.release]
      if chosen and #chosen.peers > 0 then break end
      chosen = nil
    end
  end
  chosen = chosen or swrr(route)
  if not chosen then return ngx.exit(503) end
  ngx.ctx.slipway = { backend = chosen, tried = {} }
  ngx.var.slipway_service = route.service
  ngx.var.slipway_release = chosen.release
end

-- balance picks an instance of the chosen release, another one on retry.
function M.balance()
  local c = ngx.ctx.slipway
  local b = c.backend
  local n = #b.peers
  if not c.started then
    c.started = true
    if n > 1 then balancer.set_more_tries(math.min(n, 3) - 1) end
  end
  local pick = nil
  for _ = 1, n do
    b.rr = b.rr % n + 1
    if not c.tried[b.rr] then pick = b.rr break end
  end
  pick = pick or (b.rr % n + 1)
  c.tried[pick] = true
  local peer = b.peers[pick]
  local ok, err = balancer.set_current_peer(peer.host, peer.port)
  if not ok then ngx.log(ngx.ERR, "slipway: set peer: ", err) return ngx.exit(502) end
end

-- control serves the edge: POST stores a table, GET returns it.
function M.control(config_version)
  if ngx.var.uri == "/config" then
    ngx.say(config_version)
    return
  end
  if ngx.req.get_method() == "POST" then
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then return ngx.exit(400) end
    local gen = string.match(body, "^G\t(%d+)")
    if not gen then return ngx.exit(400) end
    local ok, err = dict:set("table", body)
    if not ok then ngx.log(ngx.ERR, "slipway: store table: ", err) return ngx.exit(507) end
    dict:set("version", gen)
    return ngx.exit(204)
  end
  ngx.print(dict:get("table") or "")
end

return M
