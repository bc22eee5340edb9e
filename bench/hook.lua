-- wrk script for the ingest benchmark: realistic Whapi text webhooks, a unique message id per
-- request (so wabot journals every one instead of deduplicating), users drawn uniformly from
-- BENCH_USERS distinct phone numbers. Used by bench/ingest.py for wabot and the bare baseline.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local base = 573300000000
local threads = 0
local counter = 0
local prefix = ""

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  prefix = string.format("%04X%08X", tid or 0, math.random(0, 0x7fffffff))
end

local template = '{"messages":[{"id":"%s","from_me":false,"type":"text",'
  .. '"chat_id":"%.0f@s.whatsapp.net","timestamp":%d,"source":"mobile","from":"%.0f",'
  .. '"from_name":"Cliente Bench","text":{"body":"Quisiera saber el precio del plan mensual '
  .. 'y si tienen envio a Medellin"}}],"event":{"type":"messages","event":"post"},'
  .. '"channel_id":"BENCH-CHANNEL"}'
local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local user = base + math.random(0, users - 1)
  local id = string.format("%s%08X-%08X", prefix, counter, math.random(0, 0x7fffffff))
  return wrk.format("POST", nil, headers, string.format(template, id, user, os.time(), user))
end
