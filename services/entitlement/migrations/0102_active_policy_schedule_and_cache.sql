-- The policy in force: one row. Every recomputation (an intake event, the due-time
-- schedule) reads it under a shared advisory lock that an activation takes
-- exclusively, so that an activation and the grants it recomputes never interleave
-- with another writer's.
CREATE TABLE active_policy (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   text NOT NULL REFERENCES policy_versions (version)
);

-- Every activation, going back included.
CREATE TABLE policy_activations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    version          text NOT NULL REFERENCES policy_versions (version),
    previous_version text,
    activated_by     text NOT NULL,
    reason           text NOT NULL,
    learners_changed bigint NOT NULL
);

-- What the rules also look at: the stay's sponsoring unit (premises per site or lab)
-- and the resources its sponsor asked for (the "requested" condition).
ALTER TABLE stays
    ADD COLUMN sponsor_unit text   NOT NULL DEFAULT '',
    ADD COLUMN requested    text[] NOT NULL DEFAULT '{}';

-- What was last published as in force for each learner, and the next day it may
-- change by the calendar alone: the due-time schedule.
ALTER TABLE learners
    ADD COLUMN in_force text[] NOT NULL DEFAULT '{}',
    ADD COLUMN next_due date;
CREATE INDEX learners_next_due ON learners (next_due) WHERE next_due IS NOT NULL;

-- What caused each audited change: an intake event (cause_event_id), the due-time
-- schedule, or a policy activation.
ALTER TABLE grant_audit ADD COLUMN cause text NOT NULL DEFAULT 'intake event';

-- Check answers from a cache of each learner's grants and stays; every replica listens
-- here and forgets a learner whose grants, stays or login change (delivered when the
-- change commits). A change of an agreement's options notifies its learners too.
CREATE FUNCTION notify_learner_grants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('entitlement_grants', NEW.learner_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER learners_grants_changed
    AFTER INSERT OR UPDATE OF grants_version, version, login ON learners
    FOR EACH ROW EXECUTE FUNCTION notify_learner_grants();
