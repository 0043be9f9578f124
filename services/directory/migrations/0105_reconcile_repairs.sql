-- A reconciliation's repair of an account's entry, from just before its LDAP write
-- until the write is counted and announced (one transaction, which deletes the row).
-- A row left behind says the repair stopped in between (a crash, a lost connection):
-- the next reconciliation that applies finds whether LDAP took the write, records it
-- if it did (counted, announced), and forgets it if it did not (the drift is still
-- there, and repaired again).
CREATE TABLE reconcile_repairs (
    learner_id uuid PRIMARY KEY,
    dn         text   NOT NULL,
    -- What the repair writes: added, modified (with how many attributes) or deleted.
    written    text   NOT NULL CHECK (written IN ('added', 'modified', 'deleted')),
    attributes bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now()
);
