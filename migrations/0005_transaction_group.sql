-- The GroupId a transaction's idToken belongs to (C09): from the AuthorizeResponse that started it or from a
-- TransactionEventResponse that names it (C09.FR.03). Another card of that group may stop the transaction, so it
-- is kept with the transaction's other recovered state rather than only in memory.
ALTER TABLE transactions ADD COLUMN group_id_token TEXT;  -- JSON IdTokenType (groupIdToken), NULL = no group
