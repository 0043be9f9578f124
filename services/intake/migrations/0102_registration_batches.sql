-- Logins are looked up by prefix (base, base2, base3…) many at a time, as a range in
-- byte order.
CREATE INDEX logins_bytes ON logins (login COLLATE "C");
-- Near matches are looked for among persons born the same day.
CREATE INDEX persons_birth_date ON persons (birth_date);
