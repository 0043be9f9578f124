-- Every e-purse export keeps its right-holders as they were sent, so that it can be
-- fetched again by its id (as print batches can). Exports taken before have none.
ALTER TABLE epurse_exports ADD COLUMN lines jsonb;
