-- Record fields of a delivery, nothing else (bot/store/deliveries.py `update`; after
-- delivery_lib.lua): merged into its packed record, or set in its own hash (older layout).
-- KEYS: the delivery's own hash, its case's delivery index.
-- ARGV: the delivery's id without "{case}:", then the count of the record's field/value pairs
-- (for its own hash) and those pairs, then the count of its packed items and those items.
local fields, at = delivery_args(2)
local items = delivery_args(at)
delivery_record(KEYS[1], KEYS[2], ARGV[1], fields, items)
return 1
