-- Every change to the registry is announced on the channel eventodb_registry, so that each
-- server process sharing this database drops what it cached about the namespace (its token, its
-- schema) and ends subscriptions of a revoked token at once. A trigger rather than a NOTIFY sent
-- by the server: deletes and token changes made by other tools are announced too.
-- Payload: {"op": "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE", "id": <namespace id or null>}.
CREATE OR REPLACE FUNCTION eventodb_store.announce_namespace_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('eventodb_registry', json_build_object('op', TG_OP, 'id', NULL)::text);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('eventodb_registry', json_build_object('op', TG_OP, 'id', NEW.id)::text);
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.token_hash = OLD.token_hash
        AND NEW.schema_name = OLD.schema_name THEN
        RETURN NULL;  -- description or metadata: nothing anyone caches
    END IF;
    PERFORM pg_notify('eventodb_registry', json_build_object('op', TG_OP, 'id', OLD.id)::text);
    IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
        PERFORM pg_notify('eventodb_registry', json_build_object('op', 'INSERT', 'id', NEW.id)::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS announce_namespace_change ON eventodb_store.namespaces;
CREATE TRIGGER announce_namespace_change
    AFTER INSERT OR UPDATE OR DELETE ON eventodb_store.namespaces
    FOR EACH ROW EXECUTE FUNCTION eventodb_store.announce_namespace_change();

DROP TRIGGER IF EXISTS announce_namespace_truncate ON eventodb_store.namespaces;
CREATE TRIGGER announce_namespace_truncate
    AFTER TRUNCATE ON eventodb_store.namespaces
    FOR EACH STATEMENT EXECUTE FUNCTION eventodb_store.announce_namespace_change();
