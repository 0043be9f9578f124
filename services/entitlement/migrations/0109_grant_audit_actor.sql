-- Who caused each grant change: the caller whose request set it off, carried along
-- the chain of events, or `system` for the calendar. Empty for changes recorded
-- before the column existed.
ALTER TABLE grant_audit ADD COLUMN actor text NOT NULL DEFAULT '';
