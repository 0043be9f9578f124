-- The partner institution (UAI) of each agreement, from intake's agreement facts
-- (newest version wins), so that an amended UAI reaches the entries of the stays
-- under the agreement without waiting for each learner's next change.
CREATE TABLE agreement_partners (
    agreement_id uuid   PRIMARY KEY,
    version      bigint NOT NULL,
    -- Empty when the agreement names no UAI.
    partner_uai  text   NOT NULL DEFAULT ''
);

-- The agreements each account's stays are under, to find the accounts when one is
-- amended (set from the learner's state at each new version).
ALTER TABLE accounts ADD COLUMN agreement_ids uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX accounts_agreements ON accounts USING gin (agreement_ids);
