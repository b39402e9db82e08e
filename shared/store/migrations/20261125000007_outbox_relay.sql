-- The publishing half of the transactional outbox (events crate, relay.rs).
--
-- Runtime roles may only INSERT into outbox_events, and row-level security hides every other
-- org's rows, so the relay reaches pending rows only through these two SECURITY DEFINER
-- functions, owned by the migration owner (the table owner, which RLS does not restrict).
-- They expose exactly two operations and nothing else: claim pending rows, and mark rows
-- published. Both run inside the caller's transaction.
--
-- outbox_claim: up to p_limit pending rows, oldest first, locked FOR UPDATE SKIP LOCKED, so
-- concurrent relays never claim the same row; the locks are held until the caller's
-- transaction ends (a crash or rollback releases them and the rows stay pending).
CREATE FUNCTION outbox_claim(p_limit int)
    RETURNS TABLE (id uuid, org_id uuid, topic text, kind text, payload jsonb)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    SELECT e.id, e.org_id, e.topic, e.kind, e.payload
      FROM public.outbox_events e
     WHERE e.published_at IS NULL
     ORDER BY e.created_at, e.id
     LIMIT greatest(least(p_limit, 1000), 0)
       FOR UPDATE SKIP LOCKED
$$;

-- outbox_mark_published: marks the given rows published (only rows still pending; rows
-- already marked keep their first publish time). Returns how many rows it marked.
CREATE FUNCTION outbox_mark_published(p_ids uuid[])
    RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
    AS $$
    WITH marked AS (
        UPDATE public.outbox_events
           SET published_at = now()
         WHERE id = ANY (p_ids) AND published_at IS NULL
        RETURNING 1
    )
    SELECT count(*)::integer FROM marked
$$;

REVOKE ALL ON FUNCTION outbox_claim(int), outbox_mark_published(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_claim(int), outbox_mark_published(uuid[])
    TO runwarden_auth, runwarden_runs, runwarden_quotas;

-- Wake the relays (LISTEN outbox) when events commit: NOTIFY is delivered at commit, never
-- for a rolled-back transaction. One notification per statement, not per row (PostgreSQL
-- also folds identical notifications of one transaction into one). The relay polls every
-- second as well, so a lost notification only delays publishing.
CREATE FUNCTION outbox_notify() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER
    SET search_path = public, pg_temp
    AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
