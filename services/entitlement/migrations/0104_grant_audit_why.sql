-- Why a change of grants happened beyond its cause, when there is more to say: a
-- lock that closed them ("locked on 2026-12-01: administrative lock, fraud").
ALTER TABLE grant_audit ADD COLUMN why text;
