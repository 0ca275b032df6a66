-- The server's fast paths (docs/PERFORMANCE.md, "How reads and writes work"), as on Postgres:
--
-- * wire_json: the message as RPC responses show it from `type` on — the JSON text
--   `"type",position,global_position,data,metadata,"time"` — rendered once, when the message is
--   written, so that a read copies stored text instead of formatting every message.
-- * cardinal_id_hash: hash_64(cardinal_id(stream_name)), so that a consumer-group member's
--   read does not compute an MD5 for every row it passes.
--
-- The server fills both for every message it writes or imports, and for older rows right after
-- this migration (in batches, eventodb.store.sqlite). Rows another program inserts without them
-- (the Go server, the sqlite3 shell) are rendered and hashed when read.
ALTER TABLE messages ADD COLUMN wire_json TEXT;

ALTER TABLE messages ADD COLUMN cardinal_id_hash INTEGER;
