-- Why a stay ended early (intake's EarlyEnd as a code: left, expelled, deceased,
-- transferred), NULL when it ends as planned: the policy's grace after the last day
-- applies only then, unless its [grace_after_early_end] gives some for the code.
ALTER TABLE stays ADD COLUMN early_end text;
