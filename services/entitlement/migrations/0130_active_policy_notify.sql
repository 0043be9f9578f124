-- Every replica keeps the active policy in memory (Check, Explain and Simulate answer
-- from it). Whatever makes a version active (ActivatePolicy, a start with a new
-- configured file) sends that version on the `entitlement_policy` channel when it
-- commits; each replica listens and loads it.
CREATE FUNCTION notify_active_policy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('entitlement_policy', NEW.version);
    RETURN NULL;
END
$$;
CREATE TRIGGER active_policy_changed
    AFTER INSERT OR UPDATE OF version ON active_policy
    FOR EACH ROW EXECUTE FUNCTION notify_active_policy();
