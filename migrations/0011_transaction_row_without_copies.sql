-- The transactions row no longer repeats what the outbox already holds: `next_seq_no` (the next seqNo is the
-- newest outbox row's + 1, in the same transaction that inserts the message) and `meter_last_wh` (the energy
-- register of the newest message that carries one). Keeping both current cost every append an UPDATE of this
-- row and one more page in its commit, for a copy that could only ever agree with the outbox or be wrong.
ALTER TABLE transactions DROP COLUMN next_seq_no;
ALTER TABLE transactions DROP COLUMN meter_last_wh;
