-- Matching compares every name a person goes by (family and birth names), among the
-- persons born the same day or holding the same INE (see crates/identity): the single
-- key of birth name, first given name and birth date is gone, the birth date is the
-- look-up (persons_birth_date, since 0102).
DROP INDEX persons_match_key;
ALTER TABLE persons DROP COLUMN match_key;

-- Folding now transliterates Cyrillic and Greek by their standards and never folds a
-- name to nothing: the folded names are made again at the next start.
UPDATE persons SET folded_names = '';
