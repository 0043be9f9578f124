-- The relay claims a batch for a short lease instead of holding a row lock across the
-- network wait: it claims rows in one statement, publishes them, then marks them
-- published (or releases them) in another. A relay that dies mid-batch leaves rows
-- whose lease runs out, and another relay (or the same, restarted) takes them again.
ALTER TABLE platform_outbox ADD COLUMN claimed_until timestamptz;
