-- slipway: the edge's route table inside nginx. The edge posts the table to
-- the control endpoint; route() picks the release per request (pin, else
-- smooth weighted round robin), balance() picks the instance.
local balancer = require "ngx.balancer"

local M = {}
local dict = ngx.shared.slipway
local signals = ngx.shared.slipway_signals
local cached_version = nil
local hosts = {}
-- log_vars: set $slipway_service and $slipway_release, which only the
-- access log reads (each ngx.var write is a variable lookup by name); the
-- signals (log) read the request's ngx.ctx instead.
local log_vars = false

-- init runs once in nginx's master (init_by_lua): opts.access_log tells
-- whether the access log is on.
function M.init(opts)
  log_vars = opts and opts.access_log or false
end

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
      -- key: the signal counters' key prefix, made once here rather than
      -- per request (see log); kb caches the latency buckets' keys.
      local b = { release = f[2], weight = tonumber(f[3]), current = 0, peers = {}, rr = 0, key = route.service .. "\t" .. (f[2] or "") .. "\t", kb = {} }
      b.kn, b.ke = b.key .. "n", b.key .. "e"
      for addr in string.gmatch(f[4] or "", "%S+") do
        local host, port = string.match(addr, "^(.*):(%d+)$")
        b.peers[#b.peers + 1] = { host = host, port = tonumber(port) }
      end
      table.insert(route.backends, b)
      route.byrel[f[2]] = b
    elseif f[1] == "S" and route then
      route.sticky = { name = f[2], var = "cookie_" .. string.lower(f[2]), max_age = tonumber(f[3]) or 0 }
    elseif f[1] == "P" and route then
      local name = string.lower(f[3])
      -- The nginx variable holding the pin's header or cookie, named
      -- once here rather than looked up through get_headers() per request.
      local var = "cookie_" .. name
      if f[2] == "header" then var = "http_" .. (string.gsub(name, "-", "_")) end
      table.insert(route.pins, { kind = f[2], name = name, var = var, value = f[4], release = f[5] })
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

-- bucket is the backend sticky bucket b (0-99) goes to: backends in
-- release order each take as many buckets as their weight (the route
-- table's Bucket, in Go).
local function bucket(route, b)
  local sum, last = 0, nil
  for _, be in ipairs(route.backends) do
    if be.weight > 0 and #be.peers > 0 then
      sum = sum + be.weight
      last = be
      if b < sum then return be end
    end
  end
  return last
end

local seeded = false

-- sticky returns the request's bucket on a sticky route and whether it is
-- new (no valid cookie: drawn at random, to be set on the response).
local function sticky(route)
  local v = tonumber(ngx.var[route.sticky.var] or "")
  if v and v >= 0 and v < 100 and v % 1 == 0 then return v, false end
  if not seeded then
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    seeded = true
  end
  return math.random(0, 99), true
end

-- find_route returns the route of host and the request's path in the
-- current table. A host with a single route on "/" needs no path: $uri is
-- read (a variable lookup by name) only when a path decides.
local function find_route(host)
  local list = load()[host]
  if not list then return nil end
  if #list == 1 and list[1].path == "/" then return list[1] end
  local uri = ngx.var.uri
  for _, r in ipairs(list) do
    if path_match(r.path, uri) then return r end
  end
  return nil
end

-- route chooses the route and the release of a request to host (the
-- server block's name, lower case) (set_by_lua: a plain call, no coroutine
-- per request as rewrite_by_lua would make). It returns "" to proxy the
-- request, or the status to answer with when there is no route (404) or no
-- instance (503); a new sticky client's cookie goes into $slipway_cookie,
-- which add_header sets on the response.
function M.route(host)
  local route = find_route(host)
  if not route then return "404" end
  local chosen, pinned = nil, nil
  for _, p in ipairs(route.pins) do
    local v = ngx.var[p.var]
    if v and (p.value == "" or p.value == v) then
      chosen = route.byrel[p.release]
      if chosen and #chosen.peers > 0 then pinned = p.release break end
      chosen = nil
    end
  end
  local b, cookie = nil, nil
  if not chosen and route.sticky then
    local fresh
    b, fresh = sticky(route)
    chosen = bucket(route, b)
    if fresh then
      local s = route.sticky
      cookie = s.name .. "=" .. b .. "; Path=" .. route.path .. "; HttpOnly; SameSite=Lax"
      if s.max_age > 0 then cookie = cookie .. "; Max-Age=" .. s.max_age end
    end
  end
  chosen = chosen or swrr(route)
  if not chosen then return "503" end
  -- One table per request; the set of instances tried is made only when
  -- a connection fails (see balance).
  ngx.ctx.slipway = { service = route.service, backend = chosen, version = cached_version, host = host, pinned = pinned,
    bucket = b, cookie = cookie }
  if log_vars then
    ngx.var.slipway_service = route.service
    ngx.var.slipway_release = chosen.release
  end
  if cookie then ngx.var.slipway_cookie = cookie end
  return ""
end

-- rechoose runs when a connection failed: if a newer table arrived since
-- the request was routed, the instance it tried may be one the edge has
-- since drained (the route barrier acknowledged the newer table), so the
-- release and instance are chosen again from the newer table.
local function rechoose(c)
  local v = dict:get("version")
  if v == c.version then return false end
  c.version = v
  local route = find_route(c.host)
  if not route then return false end
  local b = c.pinned and route.byrel[c.pinned]
  if (not b or #b.peers == 0) and c.bucket and route.sticky then b = bucket(route, c.bucket) end
  if not b or #b.peers == 0 then b = swrr(route) end
  if not b then return false end
  c.backend, c.tried, c.first = b, {}, nil
  if log_vars then
    pcall(function() ngx.var.slipway_release = b.release end)
  end
  return true
end

-- balance picks an instance of the chosen release; after a failed
-- connection, another instance of it, or the release chosen again from a
-- newer table (up to proxy_next_upstream_tries in all).
function M.balance()
  local c = ngx.ctx.slipway
  local b, pick
  if not c.started then
    -- First attempt: the next instance, nothing to remember but which.
    c.started = true
    balancer.set_more_tries(2)
    b = c.backend
    local n = #b.peers
    b.rr = b.rr % n + 1
    pick = b.rr
    c.first = pick
  else
    if not rechoose(c) and not c.tried then
      c.tried = { [c.first] = true }
    end
    b = c.backend
    local n = #b.peers
    for _ = 1, n do
      b.rr = b.rr % n + 1
      if not c.tried[b.rr] then pick = b.rr break end
    end
    -- every instance tried and no newer table: the request fails as nginx
    -- would fail it once its tries are spent.
    if not pick then return ngx.exit(502) end
    c.tried[pick] = true
  end
  local peer = b.peers[pick]
  local ok, err = balancer.set_current_peer(peer.host, peer.port)
  if not ok then ngx.log(ngx.ERR, "slipway: set peer: ", err) return ngx.exit(502) end
end

-- The latency histogram's layout (the platform's latency package, schema
-- 1): bucket 0 below 100us, then 8 buckets per doubling, the last from
-- about 105s on.
local LAT_MIN, PER_OCTAVE, BUCKETS = 0.0001, 8, 162
local LN2 = math.log(2)

local function bucket(seconds)
  if seconds < LAT_MIN then return 0 end
  local i = math.floor(PER_OCTAVE * math.log(seconds / LAT_MIN) / LN2) + 1
  if i > BUCKETS - 1 then i = BUCKETS - 1 end
  return i
end

-- pending holds this worker's signal counts not yet added to the signals
-- dictionary: log counts into it (a Lua table, no shared-dict lock per
-- request) and a timer adds it to the dictionary every FLUSH_EVERY seconds,
-- and once more when the worker exits (a reload), so no count is lost.
local pending = {}
local FLUSH_EVERY = 0.1

local function flush()
  local p = pending
  if next(p) == nil then return end
  pending = {}
  for k, n in pairs(p) do
    local ok, err = signals:incr(k, n, 0)
    if not ok then ngx.log(ngx.ERR, "slipway: count signal ", k, ": ", err) end
  end
end

-- init_worker starts the worker's flush timer (init_worker_by_lua).
function M.init_worker()
  local ok, err = ngx.timer.every(FLUSH_EVERY, flush)
  if not ok then ngx.log(ngx.ERR, "slipway: start signals timer: ", err) end
end

-- log counts the response's golden signals per service and release
-- (log_by_lua): requests, 5xx (nginx's own 502/504 for a failed upstream
-- included) and the latency bucket. The edge reads the cumulative counts
-- from the control endpoint's /signals, at most FLUSH_EVERY behind.
function M.log()
  local c = ngx.ctx.slipway
  if not c then return end -- no route: 404/503 before a release was chosen
  local b, p = c.backend, pending
  p[b.kn] = (p[b.kn] or 0) + 1
  local status = ngx.status
  if status >= 500 and status <= 599 then p[b.ke] = (p[b.ke] or 0) + 1 end
  -- $request_time without a variable lookup: both read nginx's cached
  -- clock, at millisecond resolution.
  local i = bucket(ngx.now() - ngx.req.start_time())
  local k = b.kb[i]
  if not k then
    k = b.key .. "b" .. i
    b.kb[i] = k
  end
  p[k] = (p[k] or 0) + 1
end

-- control serves the edge: POST stores a table, GET returns it; GET
-- /signals returns every signal counter as "service TAB release TAB field
-- TAB count" lines.
function M.control(config_version)
  if ngx.var.uri == "/config" then
    ngx.say(config_version)
    return
  end
  if ngx.var.uri == "/signals" then
    local out = {}
    for _, k in ipairs(signals:get_keys(0)) do
      local v = signals:get(k)
      if v then out[#out + 1] = k .. "\t" .. v end
    end
    out[#out + 1] = ""
    ngx.print(table.concat(out, "\n"))
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
