-- Erasure (GDPR): a person's identity is erased at the end of its retention or on
-- request, and an anonymous stub stays under the same learner id, with its stays,
-- payments' amounts and lock code, for statistics and accounting.
ALTER TABLE persons
    ALTER COLUMN login DROP NOT NULL,
    ALTER COLUMN family_name DROP NOT NULL,
    ALTER COLUMN given_names DROP NOT NULL,
    ALTER COLUMN birth_date DROP NOT NULL,
    ALTER COLUMN email DROP NOT NULL,
    ADD COLUMN erased_at timestamptz,
    -- "retention" or "request".
    ADD COLUMN erasure_basis text CHECK (erasure_basis IN ('retention', 'request')),
    -- A person's identity is whole until it is erased, and gone after.
    ADD CONSTRAINT persons_identity_or_erased CHECK (
        (erased_at IS NULL) = (erasure_basis IS NULL)
        AND (erased_at IS NOT NULL OR (login IS NOT NULL AND family_name IS NOT NULL
             AND given_names IS NOT NULL AND birth_date IS NOT NULL AND email IS NOT NULL))
        AND (erased_at IS NULL OR (login IS NULL AND family_name IS NULL AND birth_name IS NULL
             AND given_names IS NULL AND birth_date IS NULL AND email IS NULL AND ine IS NULL
             AND phone IS NULL AND folded_names = '')));

-- The logins of erased persons, as keyed digests (HMAC-SHA-256 under the configured
-- [retention] login_key): allocation still refuses them, nobody can read them back.
-- The plain login leaves `logins` when its person is erased.
CREATE TABLE erased_logins (
    digest bytea PRIMARY KEY
);

-- Erasures whose stream messages are still to erase: written in the erasure's
-- transaction, deleted once intake's stream holds nothing of the person. A crash in
-- between leaves the row, and the next pass erases them.
CREATE TABLE pending_stream_erasures (
    learner_id uuid PRIMARY KEY,
    -- Not before: a relay may still be publishing an outbox row of the person that the
    -- erasure removed (its claim runs out at this instant).
    not_before timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0
);

-- The retention sweep finds persons whose last stay ended long enough ago.
CREATE INDEX persons_not_erased ON persons (learner_id) WHERE erased_at IS NULL;
