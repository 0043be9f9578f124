-- The audit trail says which event each change published, so that the audit query
-- links intake's entries to what they set off in the other services. A change is
-- recorded before its event is written to the outbox, in the same transaction: the
-- first event of the transaction is the change's; a second one (a batch, where
-- several learners change at once) leaves it unknown rather than guessed.
ALTER TABLE audit_trail
    ADD COLUMN event_id uuid,
    ADD COLUMN events_published integer NOT NULL DEFAULT 0,
    ADD COLUMN recorded_in xid8 DEFAULT pg_current_xact_id();
CREATE INDEX audit_trail_recorded_in ON audit_trail (recorded_in) WHERE events_published < 2;

CREATE FUNCTION audit_trail_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_trail
    SET event_id = CASE WHEN events_published = 0 THEN NEW.event_id END,
        events_published = events_published + 1
    WHERE recorded_in = pg_current_xact_id() AND events_published < 2;
    RETURN NULL;
END
$$;
CREATE TRIGGER platform_outbox_audit_event
    AFTER INSERT ON platform_outbox
    FOR EACH ROW EXECUTE FUNCTION audit_trail_event();
