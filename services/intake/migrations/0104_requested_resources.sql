-- Resources the sponsor asks for a stay (policy resource names, sorted). Intake checks
-- their form only; what they grant is the entitlement policy's.
ALTER TABLE stays ADD COLUMN requested_resources text[] NOT NULL DEFAULT '{}';
