-- Who caused an account's last change, announced with its next publication: the
-- caller carried along the chain of events, `system` for the calendar. Empty for
-- accounts not changed since the column exists.
ALTER TABLE accounts ADD COLUMN actor text NOT NULL DEFAULT '';

-- And who caused each announced write, for the audit query.
ALTER TABLE account_writes ADD COLUMN actor text NOT NULL DEFAULT '';
