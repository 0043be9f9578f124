-- When the change that an account waits to publish happened: the occurred_at of the
-- intake or entitlement event that made its current version (the newest of them), so
-- that the publisher can measure the publication lag (hosted_publication_lag_seconds)
-- from that event to the LDAP write. Cleared once the account is published: a write
-- the calendar alone asks for, or a card's, has no lag to measure.
ALTER TABLE accounts ADD COLUMN changed_at timestamptz;
