-- A learner's lock (suspension), from intake's learner state: from its day on, the
-- learner's grants are closed (no grace) and Check denies every resource as locked.
-- The kind is "administrative" or "technical", the reason intake's code ("fraud").
ALTER TABLE learners
    ADD COLUMN locked_at   timestamptz,
    ADD COLUMN locked_by   text,
    ADD COLUMN locked_on   date,
    ADD COLUMN lock_kind   text,
    ADD COLUMN lock_reason text;
