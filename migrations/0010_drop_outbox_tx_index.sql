-- outbox_tx duplicated the index SQLite already keeps for the outbox's UNIQUE (transaction_id, seq_no)
-- constraint: same columns, same order, so every query that could use one uses the other. Each append paid
-- for it all the same (one more b-tree insert, one more page in the commit's WAL frames).
DROP INDEX IF EXISTS outbox_tx;
