-- Names folded (accents, case, punctuation and spaces removed), for searching by name:
-- family, birth and given names, space-separated.
ALTER TABLE persons ADD COLUMN folded_names text NOT NULL DEFAULT '';
