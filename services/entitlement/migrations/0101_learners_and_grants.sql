-- What entitlement knows of each learner, from intake's events (newest version wins).
CREATE TABLE learners (
    learner_id     uuid PRIMARY KEY,
    login          text   NOT NULL,
    version        bigint NOT NULL,
    -- Increases whenever the learner's grants change, whatever changed them.
    grants_version bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX learners_login ON learners (login);

CREATE TABLE stays (
    stay_id      uuid PRIMARY KEY,
    learner_id   uuid    NOT NULL REFERENCES learners (learner_id),
    population   text    NOT NULL,
    start_date   date    NOT NULL,
    end_date     date    NOT NULL,
    cancelled    boolean NOT NULL,
    paid         boolean NOT NULL,
    agreement_id uuid
);
CREATE INDEX stays_learner ON stays (learner_id);
CREATE INDEX stays_agreement ON stays (agreement_id) WHERE agreement_id IS NOT NULL;

CREATE TABLE agreements (
    agreement_id uuid PRIMARY KEY,
    options      text[] NOT NULL,
    version      bigint NOT NULL
);

-- Each learner's grants: the index Check answers from.
CREATE TABLE grants (
    learner_id     uuid NOT NULL REFERENCES learners (learner_id),
    resource       text NOT NULL,
    stay_id        uuid NOT NULL,
    valid_from     date NOT NULL,
    valid_until    date NOT NULL,
    rule           text NOT NULL,
    policy_version text NOT NULL,
    PRIMARY KEY (learner_id, resource, stay_id)
);

-- Every grant and revocation, with its cause.
CREATE TABLE grant_audit (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    learner_id     uuid NOT NULL,
    resource       text NOT NULL,
    stay_id        uuid NOT NULL,
    change         text NOT NULL,
    valid_from     date NOT NULL,
    valid_until    date NOT NULL,
    rule           text NOT NULL,
    policy_version text NOT NULL,
    cause_event_id uuid
);
CREATE INDEX grant_audit_learner ON grant_audit (learner_id);
