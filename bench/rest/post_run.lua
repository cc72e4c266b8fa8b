-- SPDX-License-Identifier: Apache-2.0
-- wrk script: POST a new run with a unique run_id on every request (per-thread prefix + counter).
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  counter = 0
  prefix = "b" .. tostring(tid) .. "_" .. tostring(os.time()) .. "_"
end

function request()
  counter = counter + 1
  local body = '{"run_id":"' .. prefix .. counter .. '","rounds":2,"epochs":1,"lr":0.001,' ..
               '"algorithm":"FedProx","batch_size":32}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
