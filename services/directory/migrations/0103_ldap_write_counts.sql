-- LDAP writes are counted as soon as LDAP has taken them, in a table of their own and
-- outside the publication's transaction: a crash or a lost connection that rolls the
-- publication back after LDAP took the write no longer loses the count. (The claim's
-- transaction holds the account rows, so the count cannot go there meanwhile.)
CREATE TABLE ldap_writes (
    learner_id uuid PRIMARY KEY,
    writes     bigint NOT NULL
);
INSERT INTO ldap_writes (learner_id, writes)
    SELECT learner_id, ldap_writes FROM accounts WHERE ldap_writes > 0;
ALTER TABLE accounts DROP COLUMN ldap_writes;
