-- A hold on LDAP publication while a rebuild restates the sources (HoldPublication):
-- the events keep being consumed into the projection, and no entry is written from a
-- projection only partly rebuilt. The hold ends by itself at `until`, so that a
-- rebuild interrupted never leaves publication stopped.
CREATE TABLE publication_hold (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    until     timestamptz NOT NULL
);
