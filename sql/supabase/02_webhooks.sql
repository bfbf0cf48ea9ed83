-- syncbridge: Supabase Database Webhooks for reverse sync (portal edits -> clinic SQL Server).
--
-- Written for PostgreSQL 15+ on Supabase; re-runnable (functions are replaced, triggers recreated).
-- The triggers take the exact form Supabase's dashboard generates for a Database Webhook
-- (supabase_functions.http_request with url, method, headers, params, timeout), so they show up
-- and can be inspected under Database -> Webhooks. On Supabase the supabase_functions schema
-- exists once Database Webhooks are enabled in the dashboard (Database -> Webhooks -> Enable).
--
-- Usage, after 01_schema.sql and after enabling Database Webhooks:
--   select public.syncbridge_install_webhooks('https://your-tunnel-host/api/sync/webhook', 'your-secret');
-- The agent checks the secret as "Authorization: Bearer <secret>".
-- Remove them with:
--   select public.syncbridge_uninstall_webhooks();
--
-- Which changes are sent:
--   aligner_notes    INSERT, UPDATE, DELETE
--   aligner_batches  UPDATE (the agent applies only a change of days)
-- With skip_agent_writes (the default) a row written by the agent itself through PostgREST does
-- not come back to it as a webhook: the agent sends "x-syncbridge-origin: clinic" and the triggers
-- carry WHEN (NOT public.syncbridge_request_is_agent()).

-- True when the current statement came through PostgREST from the syncbridge agent: the
-- agent's origin header AND the service role. The header alone could be set by any portal
-- client to hide its own write from the webhook; the service role cannot be claimed without
-- the service key.
-- It runs in the WHEN clause of triggers on tables the portal writes, so it must never raise:
-- a missing, empty or malformed request.headers setting (SQL editor, psql, pg_cron, another
-- client) simply means "not the agent".
CREATE OR REPLACE FUNCTION public.syncbridge_request_is_agent()
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = ''
AS $$
DECLARE
    headers jsonb;
    claims jsonb;
BEGIN
    headers := nullif(current_setting('request.headers', true), '')::jsonb;
    claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
    RETURN coalesce(headers ->> 'x-syncbridge-origin' = 'clinic', false)
       AND coalesce(claims ->> 'role' = 'service_role', false);
EXCEPTION
    WHEN OTHERS THEN
        RETURN false;
END;
$$;

CREATE OR REPLACE FUNCTION public.syncbridge_install_webhooks(
    webhook_url text,
    webhook_secret text,
    skip_agent_writes boolean DEFAULT true
)
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    -- Built as JSON rather than by concatenation so a secret containing quotes or backslashes
    -- still yields valid JSON headers.
    headers text := jsonb_build_object(
        'Content-Type', 'application/json',
        'Authorization', 'Bearer ' || webhook_secret
    )::text;
    when_clause text := CASE
        WHEN skip_agent_writes THEN 'WHEN (NOT public.syncbridge_request_is_agent())'
        ELSE ''
    END;
BEGIN
    IF coalesce(webhook_url, '') = '' THEN
        RAISE EXCEPTION 'syncbridge_install_webhooks: webhook_url is required';
    END IF;
    IF coalesce(webhook_secret, '') = '' THEN
        RAISE EXCEPTION 'syncbridge_install_webhooks: webhook_secret is required';
    END IF;

    DROP TRIGGER IF EXISTS aligner_notes_to_sqlserver ON public.aligner_notes;
    EXECUTE format(
        'CREATE TRIGGER aligner_notes_to_sqlserver '
        'AFTER INSERT OR UPDATE OR DELETE ON public.aligner_notes '
        'FOR EACH ROW %s '
        'EXECUTE FUNCTION supabase_functions.http_request(%L, %L, %L, %L, %L)',
        when_clause, webhook_url, 'POST', headers, '{}', '5000'
    );

    DROP TRIGGER IF EXISTS aligner_batches_to_sqlserver ON public.aligner_batches;
    EXECUTE format(
        'CREATE TRIGGER aligner_batches_to_sqlserver '
        'AFTER UPDATE ON public.aligner_batches '
        'FOR EACH ROW %s '
        'EXECUTE FUNCTION supabase_functions.http_request(%L, %L, %L, %L, %L)',
        when_clause, webhook_url, 'POST', headers, '{}', '5000'
    );
END;
$$;

CREATE OR REPLACE FUNCTION public.syncbridge_uninstall_webhooks()
RETURNS void
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    DROP TRIGGER IF EXISTS aligner_notes_to_sqlserver ON public.aligner_notes;
    DROP TRIGGER IF EXISTS aligner_batches_to_sqlserver ON public.aligner_batches;
END;
$$;

-- The install function takes the webhook secret and decides where row data is sent; keep it away
-- from the API roles (PostgREST exposes public functions as /rest/v1/rpc/...). The roles exist on
-- Supabase; on a plain PostgreSQL only PUBLIC is revoked.
REVOKE ALL ON FUNCTION public.syncbridge_install_webhooks(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.syncbridge_uninstall_webhooks() FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON FUNCTION public.syncbridge_install_webhooks(text, text, boolean) FROM %I', api_role);
            EXECUTE format('REVOKE ALL ON FUNCTION public.syncbridge_uninstall_webhooks() FROM %I', api_role);
        END IF;
    END LOOP;
END;
$$;
