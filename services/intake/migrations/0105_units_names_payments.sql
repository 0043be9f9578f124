-- The unit catalogue: the sites, labs, schools and services that host learners, as
-- data that the university extends without code (SaveUnit). A stay's sponsor_unit is
-- one of its codes: upper-case letters, digits, '-' and '_'.
CREATE TABLE units (
    code  text PRIMARY KEY CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{1,31}$'),
    kind  text NOT NULL CHECK (kind IN ('site', 'lab', 'school', 'service')),
    label text NOT NULL
);

INSERT INTO units (code, kind, label) VALUES
    ('IFSI-NORD', 'school',  'Nursing school (IFSI), north site'),
    ('IFSI-SUD',  'school',  'Nursing school (IFSI), south site'),
    ('IFSI-CHU',  'school',  'Nursing school (IFSI) of the university hospital'),
    ('INSPE',     'school',  'Teacher-training school (INSPÉ)'),
    ('ED-SPI',    'school',  'Doctoral school of engineering sciences (SPI)'),
    ('ED-SHS',    'school',  'Doctoral school of humanities and social sciences (SHS)'),
    ('ED-SVS',    'school',  'Doctoral school of life and health sciences (SVS)'),
    ('ED-MSTIC',  'school',  'Doctoral school of mathematics and information sciences (MSTIC)'),
    ('SUFA',      'service', 'Continuing-education service (SUFA)'),
    ('DFC',       'service', 'Continuing-education directorate (DFC)'),
    ('DAVA',      'service', 'Académie''s service for the validation of experience (DAVA)'),
    ('LAB-CHEM',  'lab',     'Chemistry laboratory'),
    ('LAB-BIO',   'lab',     'Biology laboratory'),
    ('LAB-42',    'lab',     'Laboratory 42'),
    ('LAB-7290',  'lab',     'Joint research unit 7290 (CNRS)');

-- New stays and changes of unit must name a unit of the catalogue. NOT VALID: stays
-- registered before the catalogue keep the unit they were given.
ALTER TABLE stays ADD CONSTRAINT stays_sponsor_unit
    FOREIGN KEY (sponsor_unit) REFERENCES units (code) NOT VALID;

-- The default policy gives visiting doctoral students their card once the stay is
-- paid (`paid`): their stays without an agreement are due, not free. Stays already
-- registered that way become due as well (entitlement grants on `paid` only, so no
-- grant changes with it).
UPDATE populations SET payment_required = true WHERE code = 'VISITING_DOCTORAL';
UPDATE stays SET payment_status = 'due'
 WHERE population = 'VISITING_DOCTORAL' AND agreement_id IS NULL
   AND payment_status = 'not_required' AND NOT cancelled;

-- Names are normalised at registration (NFC, no surrounding spaces, one space between
-- words); those stored before are brought to the same form. Folded names and match
-- keys ignore spaces and how an accent is encoded, so they do not change. Directory
-- gets the clean names with the learner's next event.
CREATE FUNCTION pg_temp.clean_name(name text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT NULLIF(btrim(regexp_replace(normalize(name, NFC),
        E'[[:space:]\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+', ' ', 'g')), '')
$$;
UPDATE persons SET
    family_name = COALESCE(pg_temp.clean_name(family_name), family_name),
    birth_name = pg_temp.clean_name(birth_name),
    given_names = COALESCE(pg_temp.clean_name(given_names), given_names)
WHERE family_name <> COALESCE(pg_temp.clean_name(family_name), family_name)
   OR birth_name IS DISTINCT FROM pg_temp.clean_name(birth_name)
   OR given_names <> COALESCE(pg_temp.clean_name(given_names), given_names);
DROP FUNCTION pg_temp.clean_name(text);
