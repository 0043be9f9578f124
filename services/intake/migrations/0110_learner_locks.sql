-- A learner's lock (suspension): set by LockLearner, cleared by UnlockLearner. The
-- reason is a code (misconduct, fraud, unpaid, compromised, namesake); who, when and
-- the free-text note of every lock and unlock are in the audit trail.
ALTER TABLE persons
    ADD COLUMN lock_reason text CHECK (lock_reason IN ('misconduct', 'fraud', 'unpaid', 'compromised', 'namesake')),
    ADD COLUMN locked_at   timestamptz,
    ADD COLUMN locked_by   text,
    ADD CONSTRAINT persons_lock_whole CHECK (
        (lock_reason IS NULL) = (locked_at IS NULL) AND (lock_reason IS NULL) = (locked_by IS NULL));
