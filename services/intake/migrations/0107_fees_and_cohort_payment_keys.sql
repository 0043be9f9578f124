-- What a stay of a population costs, in euro cents, when the university states it:
-- finance's list of payments due gives it as the amount owed. NULL: not stated.
ALTER TABLE populations ADD COLUMN fee_cents bigint CHECK (fee_cents >= 0);

-- A cohort payment's reference (the bank transfer's) is its idempotency key under
-- its agreement: the same transfer is never booked twice. Intake checked it before
-- booking already, so no two rows share one; the index makes it a rule.
CREATE UNIQUE INDEX cohort_payments_reference ON cohort_payments (agreement_id, reference)
    WHERE reference IS NOT NULL;

-- Finance lists the stays whose payment is due.
CREATE INDEX stays_payment_due ON stays (stay_id) WHERE payment_status = 'due' AND NOT cancelled;
