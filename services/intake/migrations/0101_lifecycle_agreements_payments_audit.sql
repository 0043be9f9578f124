-- Whether a population's stays must be paid for when no agreement says otherwise.
ALTER TABLE populations ADD COLUMN payment_required boolean NOT NULL DEFAULT false;

ALTER TABLE agreements ADD COLUMN end_reason text;
ALTER TABLE agreements ADD COLUMN created_by text NOT NULL DEFAULT '';

ALTER TABLE stays ADD COLUMN cancelled_at timestamptz;
CREATE INDEX stays_agreement ON stays (agreement_id) WHERE agreement_id IS NOT NULL;
CREATE INDEX stays_dates ON stays (start_date, end_date);

CREATE TABLE payments (
    payment_id   uuid PRIMARY KEY,
    stay_id      uuid   NOT NULL REFERENCES stays (stay_id),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    paid_on      date   NOT NULL,
    payer        text   NOT NULL,
    payer_name   text,
    reference    text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    recorded_by  text   NOT NULL
);
CREATE INDEX payments_stay ON payments (stay_id);

-- Who changed what, when and why. It holds the values changed (identity included):
-- it is part of the registry, purged with it, and never copied to logs.
CREATE TABLE audit_trail (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    learner_id   uuid,
    stay_id      uuid,
    agreement_id uuid,
    reason       text,
    changes      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_trail_learner ON audit_trail (learner_id);
CREATE INDEX audit_trail_agreement ON audit_trail (agreement_id);

-- One payment for every stay under an agreement (a partner paying for its cohort).
CREATE TABLE cohort_payments (
    cohort_payment_id uuid PRIMARY KEY,
    agreement_id      uuid   NOT NULL REFERENCES agreements (agreement_id),
    amount_cents      bigint NOT NULL CHECK (amount_cents >= 0),
    paid_on           date   NOT NULL,
    payer_name        text,
    reference         text,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    recorded_by       text   NOT NULL
);
ALTER TABLE payments ADD COLUMN cohort_payment_id uuid REFERENCES cohort_payments (cohort_payment_id);
-- A stay paid by a cohort payment has no amount of its own: the total is on the cohort payment.
ALTER TABLE payments ALTER COLUMN amount_cents DROP NOT NULL;
