-- The learners whose identity intake erased (`person.erased`, issue 14). Their row in
-- `learners` stays, for the cards that reference it, without any identity; print
-- batches, e-purse exports and card reasons lose theirs. Cards keep what accounting
-- needs: number, dates, states, e-purse rights and export totals. This tombstone keeps
-- any later or redelivered learner or grants fact about them, older or newer, from
-- bringing the identity back, and says what is still to erase outside this database:
-- the messages of cards' stream about them (card events carry the login and the ESI;
-- dead letters carry intake's and entitlement's events), done after the commit
-- (`streams_erased_at` set then). Ids only: nothing here names the person.
CREATE TABLE erased_learners (
    learner_id          uuid        PRIMARY KEY,
    learner_version     bigint      NOT NULL,
    basis               text        NOT NULL,
    erased_at           timestamptz NOT NULL DEFAULT now(),
    -- Not before: an outbox row scrubbed while a relay was publishing it may still
    -- land in the stream until then.
    erase_streams_after timestamptz NOT NULL DEFAULT now(),
    streams_erased_at   timestamptz
);
CREATE INDEX erased_learners_pending ON erased_learners (erase_streams_after)
    WHERE streams_erased_at IS NULL;

-- Set with the tombstone, on the row itself: a grants or learner fact applied at the
-- same moment waits for the erasure's row lock, then sees the row as the erasure left
-- it and changes nothing (a check of the tombstone alone would be made on the
-- statement's snapshot, from before the erasure).
ALTER TABLE learners ADD COLUMN erased boolean NOT NULL DEFAULT false;
