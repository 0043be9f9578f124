-- An event NATS can never take (larger than the server's maximum payload) is set
-- aside with the reason, instead of being tried again at the head of every batch and
-- holding back every event written after it.
ALTER TABLE platform_outbox ADD COLUMN refused_at timestamptz, ADD COLUMN refusal text;
