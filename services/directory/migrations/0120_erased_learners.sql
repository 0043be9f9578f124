-- The learners whose identity intake erased (`person.erased`, issue 14). Their
-- account (login, learner state), grants, cards and unfinished repairs are deleted;
-- the writes' audit (`account_writes`, `ldap_writes`) stays, ids only. This tombstone
-- keeps any later or redelivered learner, grants or card fact about them, older or
-- newer, from bringing them back, and says what is still to erase outside this
-- database, after the commit: the LDAP entry (`entry_dn`, the one value here that
-- names the person, emptied once the entry is removed), then the messages of
-- directory's stream about them (account events carry the login and the DN; dead
-- letters carry the other services' events), `streams_erased_at` set then.
CREATE TABLE erased_learners (
    learner_id          uuid        PRIMARY KEY,
    learner_version     bigint      NOT NULL,
    basis               text        NOT NULL,
    erased_at           timestamptz NOT NULL DEFAULT now(),
    entry_dn            text,
    entry_removed_at    timestamptz,
    -- Not before: an outbox row scrubbed while a relay was publishing it may still
    -- land in the stream until then.
    erase_streams_after timestamptz NOT NULL DEFAULT now(),
    streams_erased_at   timestamptz
);
CREATE INDEX erased_learners_pending ON erased_learners (erase_streams_after)
    WHERE streams_erased_at IS NULL;
