-- Why a stay ended before its planned end, as a code (EndStay's early_end): its
-- learner left, was expelled, died or went to another institution. NULL: the stay
-- ends as planned (possibly shortened), with the entitlement policy's grace.
ALTER TABLE stays
    ADD COLUMN early_end text
        CONSTRAINT stays_early_end_known
        CHECK (early_end IN ('left', 'expelled', 'deceased', 'transferred'));
