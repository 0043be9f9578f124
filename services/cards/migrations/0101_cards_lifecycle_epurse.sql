-- What the card office knows of each learner: who they are (from intake, for the
-- printer and the e-purse) and whether they hold the smart-card and e-purse grants
-- (from entitlement). Newest version wins, for each source apart.
CREATE TABLE learners (
    learner_id      uuid PRIMARY KEY,
    login           text NOT NULL DEFAULT '',
    learner_number  text NOT NULL DEFAULT '',
    family_name     text NOT NULL DEFAULT '',
    given_names     text NOT NULL DEFAULT '',
    birth_date      text NOT NULL DEFAULT '',
    email           text NOT NULL DEFAULT '',
    ine             text NOT NULL DEFAULT '',
    person_version  bigint NOT NULL DEFAULT 0,
    grants_version  bigint NOT NULL DEFAULT 0,
    -- The last day of the smart-card grants that are in force or to come; NULL when
    -- there is none.
    card_until      date,
    -- Whether the smart-card grant is in force (on the day of the grants event).
    card_in_force   boolean NOT NULL DEFAULT false,
    epurse_until    date,
    epurse_in_force boolean NOT NULL DEFAULT false
);

CREATE TABLE cards (
    card_id         uuid PRIMARY KEY,
    learner_id      uuid NOT NULL REFERENCES learners,
    -- The number in card_number_seq the card number was made from.
    sequence        bigint NOT NULL UNIQUE,
    card_number     text NOT NULL UNIQUE,
    escn            uuid UNIQUE,
    csn             text UNIQUE,
    state           text NOT NULL CHECK (state IN ('requested', 'approved', 'in_print',
                        'printed', 'encoded', 'enabled', 'disabled', 'destroyed', 'expired')),
    state_reason    text NOT NULL DEFAULT '',
    last_day        date NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    replaces        uuid REFERENCES cards,
    print_batch_id  uuid,
    -- When the card entered the print queue (its order there).
    approved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (state NOT IN ('encoded', 'enabled') OR csn IS NOT NULL)
);

-- At most one enabled card per person, and at most one on its way to them.
CREATE UNIQUE INDEX cards_one_live ON cards (learner_id)
    WHERE state IN ('requested', 'approved', 'in_print', 'printed', 'encoded', 'enabled');
CREATE INDEX cards_print_queue ON cards (approved_at, card_id) WHERE state = 'approved';
CREATE INDEX cards_by_learner ON cards (learner_id, created_at DESC);

-- Every step of every card: who, when, why.
CREATE TABLE card_transitions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id         uuid NOT NULL REFERENCES cards,
    version         bigint NOT NULL,
    from_state      text,
    to_state        text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    actor           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    -- The grants event that caused it, when one did.
    cause_event_id  uuid
);
CREATE INDEX card_transitions_by_card ON card_transitions (card_id, id);

-- Print batches: the lines as exported, so that a batch can be fetched again as it was.
CREATE TABLE print_batches (
    batch_id    uuid PRIMARY KEY,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    lines       jsonb NOT NULL
);

-- E-purse rights: open while the e-purse grant is; closed when it ends. Each change
-- bumps version; an export sends the rights whose version it has not sent yet.
CREATE TABLE epurse_rights (
    learner_id        uuid PRIMARY KEY REFERENCES learners,
    due_date          date NOT NULL,
    opened_at         timestamptz NOT NULL DEFAULT now(),
    closed_on         date,
    version           bigint NOT NULL DEFAULT 1,
    exported_version  bigint NOT NULL DEFAULT 0
);
CREATE INDEX epurse_rights_to_export ON epurse_rights (learner_id) WHERE version > exported_version;

CREATE TABLE epurse_exports (
    export_id    uuid PRIMARY KEY,
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    full_export  boolean NOT NULL,
    right_holders integer NOT NULL
);
