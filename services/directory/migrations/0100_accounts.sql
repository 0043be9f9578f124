-- The account projection: each learner's latest state as intake published it, and
-- where its publication to LDAP stands.
CREATE TABLE accounts (
    learner_id        uuid PRIMARY KEY,
    login             text   NOT NULL,
    -- The learner version of `learner`; an event with a lower or equal version changes nothing.
    version           bigint NOT NULL,
    -- hosted.v1.Learner, protobuf-encoded: the whole state.
    learner           bytea  NOT NULL,
    -- Trace context of the event that brought this version, so the LDAP write joins its trace.
    traceparent       text,
    tracestate        text,
    -- The version LDAP holds; NULL before the first write.
    published_version bigint,
    published_at      timestamptz,
    publish_attempts  integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX accounts_pending ON accounts (next_attempt_at) WHERE published_version IS DISTINCT FROM version;
CREATE UNIQUE INDEX accounts_login ON accounts (login);
