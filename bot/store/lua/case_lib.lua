-- A prelude for scripts that read a case's hash (before the script: scripts.source).
-- case_recipients(text): the organisation ids of the hash's `recipients` value, comma-joined
-- (bot/domain/case.py `recipients_text`) or, in a case stored before, a JSON list.
local function case_recipients(text)
  local out = {}
  if not text or text == '' then return out end
  if string.sub(text, 1, 1) == '[' then return cjson.decode(text) end
  for org in string.gmatch(text, '[^,]+') do out[#out + 1] = org end
  return out
end
