-- Every LDAP write of an account (publication or repair), for the audit query: what
-- was written, in which account state, from which learner version, and the
-- account.published event that announced it. Written in the transaction that
-- announces it, so that a write is listed exactly when it is announced.
CREATE TABLE account_writes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    learner_id      uuid        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    written         text        NOT NULL CHECK (written IN ('added', 'modified', 'deleted')),
    attributes      bigint      NOT NULL DEFAULT 0,
    -- The {COMPTE} state written ("A SupannActif"); empty when the entry was removed.
    account_state   text        NOT NULL DEFAULT '',
    learner_version bigint      NOT NULL,
    event_id        uuid        NOT NULL
);
CREATE INDEX account_writes_by_learner ON account_writes (learner_id, id);
