-- Test-only stand-in for what a Supabase project provides before any migration of ours runs:
-- the API roles PostgREST switches to, their default grants, and the supabase_functions schema
-- behind Database Webhooks. Loaded by syncbridge-testkit into its template database, before
-- sql/supabase/*.sql. Never run this against a real Supabase project.
--
-- supabase_functions.http_request() mimics Supabase's trigger function: same arguments
-- (url, method, headers, params, timeout_ms) and the same POST payload
-- {type, table, schema, record, old_record}. Where Supabase hands the request to pg_net, this
-- queues it in a table and wakes the testkit's WebhookRelay with NOTIFY. Both are transactional
-- and seen only after commit, which is how pg_net behaves: a rolled-back write sends nothing.
-- A queue table rather than the NOTIFY payload itself, because NOTIFY payloads stop at 8000 bytes
-- and a long note would then fail the portal's write, which pg_net would not.

-- Roles are cluster-wide; create them once, quietly, whichever test database gets there first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END;
$$;

-- Supabase's defaults: the API roles may use everything in public; Row Level Security and
-- explicit revokes are what narrow it down. Default privileges cover tables created later,
-- including the ones tests create for themselves.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role;

CREATE SCHEMA IF NOT EXISTS supabase_functions;
GRANT USAGE ON SCHEMA supabase_functions TO anon, authenticated, service_role;

-- Requests waiting for the relay, oldest first (pg_net keeps an equivalent net.http_request_queue).
CREATE TABLE IF NOT EXISTS supabase_functions.syncbridge_webhook_queue (
    id        bigserial   PRIMARY KEY,
    request   jsonb       NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION supabase_functions.http_request()
RETURNS trigger
LANGUAGE plpgsql
-- Portal users (anon/authenticated) fire these triggers; like Supabase's own function it runs
-- with its owner's rights so they need no access to the queue.
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    url text := TG_ARGV[0];
    method text := TG_ARGV[1];
    headers jsonb := '{"Content-Type": "application/json"}';
    params jsonb := '{}';
    timeout_ms integer := 1000;
    payload jsonb;
BEGIN
    IF url IS NULL OR url = 'null' THEN
        RAISE EXCEPTION 'url argument is missing';
    END IF;
    IF method IS NULL OR method = 'null' THEN
        RAISE EXCEPTION 'method argument is missing';
    END IF;
    IF TG_ARGV[2] IS NOT NULL AND TG_ARGV[2] <> 'null' THEN
        headers := TG_ARGV[2]::jsonb;
    END IF;
    IF TG_ARGV[3] IS NOT NULL AND TG_ARGV[3] <> 'null' THEN
        params := TG_ARGV[3]::jsonb;
    END IF;
    IF TG_ARGV[4] IS NOT NULL AND TG_ARGV[4] <> 'null' THEN
        timeout_ms := TG_ARGV[4]::integer;
    END IF;

    IF method = 'POST' THEN
        payload := jsonb_build_object(
            'old_record', CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
            'record', CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END,
            'type', TG_OP,
            'table', TG_TABLE_NAME,
            'schema', TG_TABLE_SCHEMA
        );
    ELSIF method <> 'GET' THEN
        RAISE EXCEPTION 'method argument % is invalid', method;
    END IF;

    INSERT INTO supabase_functions.syncbridge_webhook_queue (request)
    VALUES (jsonb_build_object(
        'url', url,
        'method', method,
        'headers', headers,
        'params', params,
        'timeout_ms', timeout_ms,
        'body', payload
    ));
    PERFORM pg_notify('syncbridge_webhooks', TG_TABLE_NAME);

    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
