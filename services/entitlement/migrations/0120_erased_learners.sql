-- The learners whose identity intake erased (`person.erased`, issue 14). Their
-- projection, stays and grants are deleted; this tombstone keeps any later or
-- redelivered learner fact about them, older or newer, from bringing them back, and
-- says what is still to erase outside this database: the messages of entitlement's
-- stream about them (grants events carry the login, dead letters carry intake's
-- events) and the outbox rows, done after the commit (`streams_erased_at` set then).
-- Ids only: nothing here names the person.
CREATE TABLE erased_learners (
    learner_id        uuid PRIMARY KEY,
    learner_version   bigint      NOT NULL,
    basis             text        NOT NULL,
    erased_at         timestamptz NOT NULL DEFAULT now(),
    -- Not before: an outbox row scrubbed while a relay was publishing it may still
    -- land in the stream until then.
    erase_streams_after timestamptz NOT NULL DEFAULT now(),
    streams_erased_at timestamptz
);
CREATE INDEX erased_learners_pending ON erased_learners (erase_streams_after)
    WHERE streams_erased_at IS NULL;
