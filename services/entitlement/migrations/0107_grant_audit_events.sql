-- The grant audit says which grants event each change was published in, so that the
-- audit query ties the cards' and directory's reactions to it (and to the caller
-- behind it). Set in the transaction that records the change, once its event is
-- enqueued; changes recorded before have none.
ALTER TABLE grant_audit
    ADD COLUMN event_id uuid,
    ADD COLUMN recorded_in xid8 DEFAULT pg_current_xact_id();
