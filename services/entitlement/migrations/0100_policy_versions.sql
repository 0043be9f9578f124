-- The policy versions this service has run with. Grants and the due-time schedule
-- come with the entitlement issue.
CREATE TABLE policy_versions (
    version      text PRIMARY KEY,
    document     text NOT NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    activated_by text NOT NULL
);
