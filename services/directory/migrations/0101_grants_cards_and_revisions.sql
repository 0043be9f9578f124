-- What entitlement and cards say of each learner, kept apart from intake's state
-- (either can arrive first); newest version wins for each.
CREATE TABLE grants (
    learner_id      uuid PRIMARY KEY,
    grants_version  bigint NOT NULL,
    -- The learner version the grants were computed from.
    learner_version bigint NOT NULL,
    effective_on    date   NOT NULL,
    -- The resources in force on effective_on: one eduPersonEntitlement each.
    in_force        text[] NOT NULL
);

CREATE TABLE cards (
    card_id     uuid PRIMARY KEY,
    learner_id  uuid   NOT NULL,
    version     bigint NOT NULL,
    -- hosted.v1.CardState, e.g. 'enabled'.
    state       text   NOT NULL,
    csn         text   NOT NULL DEFAULT '',
    valid_until timestamptz
);
CREATE INDEX cards_enabled ON cards (learner_id) WHERE state = 'enabled';

-- An account is written when its revision (any change of what its entry is computed
-- from: the learner, their grants, their card) is newer than the one LDAP holds.
ALTER TABLE accounts
    ADD COLUMN revision           bigint  NOT NULL DEFAULT 1,
    ADD COLUMN published_revision bigint,
    -- When the learner version last moved; and whether that change waits for the
    -- grants computed from it (a new account, or changed stays), at most a while.
    ADD COLUMN version_at         timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN awaits_grants      boolean NOT NULL DEFAULT false,
    -- LDAP adds, modifies and deletes made for this account, in all.
    ADD COLUMN ldap_writes        integer NOT NULL DEFAULT 0,
    -- The next day the entry changes by the calendar alone (a stay starts or ends,
    -- the account moves on after its last stay): it is written again that day.
    ADD COLUMN next_due           date;
CREATE INDEX accounts_due ON accounts (next_due) WHERE next_due IS NOT NULL;
UPDATE accounts SET published_revision = revision WHERE published_version = version;
DROP INDEX accounts_pending;
CREATE INDEX accounts_pending ON accounts (next_attempt_at)
    WHERE published_revision IS DISTINCT FROM revision;
