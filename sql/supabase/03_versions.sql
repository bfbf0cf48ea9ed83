-- syncbridge: per-column versions of the portal-owned ("shared") columns, and the one-request
-- forward push that respects them (README "Who wins").
--
-- Written for PostgreSQL 15+ as Supabase runs it; run after 01_schema.sql. Re-runnable.
--
-- The rule: for a shared column the newest edit wins, by UTC time. A portal edit's time is
-- stamped here, per column, into sync_versions (a trigger, clock_timestamp()); a clinic edit's
-- time is its SyncQueue item's CreatedAt, which the agent sends with the value. Ties go to
-- the portal. sync_versions is Supabase-only: the agent never writes it to SQL Server.

ALTER TABLE public.aligner_notes ADD COLUMN IF NOT EXISTS sync_versions jsonb NOT NULL DEFAULT '{}';
ALTER TABLE public.aligner_batches ADD COLUMN IF NOT EXISTS sync_versions jsonb NOT NULL DEFAULT '{}';

-- Stamps sync_versions[col] for each shared column (the trigger's arguments) that an INSERT
-- sets or an UPDATE changes. Writes by syncbridge_push (syncbridge.writer = on, local to its
-- transaction) are left alone: it sets the clinic's times itself. A portal write cannot set
-- sync_versions directly: an UPDATE keeps the old versions, an INSERT starts from none.
CREATE OR REPLACE FUNCTION public.syncbridge_stamp_versions()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_col text;
    v_new jsonb := to_jsonb(NEW);
    v_old jsonb;
    v_now jsonb := to_jsonb(clock_timestamp());
BEGIN
    IF coalesce(current_setting('syncbridge.writer', true), '') = 'on' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        v_old := to_jsonb(OLD);
        NEW.sync_versions := coalesce(OLD.sync_versions, '{}'::jsonb);
    ELSE
        NEW.sync_versions := '{}'::jsonb;
    END IF;
    FOREACH v_col IN ARRAY TG_ARGV LOOP
        IF v_old IS NULL OR (v_new -> v_col) IS DISTINCT FROM (v_old -> v_col) THEN
            NEW.sync_versions := jsonb_set(NEW.sync_versions, ARRAY[v_col], v_now);
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS aligner_notes_stamp_versions ON public.aligner_notes;
CREATE TRIGGER aligner_notes_stamp_versions
    BEFORE INSERT OR UPDATE ON public.aligner_notes
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_stamp_versions('note_text', 'is_edited', 'edited_at');

DROP TRIGGER IF EXISTS aligner_batches_stamp_versions ON public.aligner_batches;
CREATE TRIGGER aligner_batches_stamp_versions
    BEFORE INSERT OR UPDATE ON public.aligner_batches
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_stamp_versions('days');

-- The forward push of one batch of one table, in one request (POST /rest/v1/rpc/syncbridge_push
-- with the service key). p_rows is an array of {"row": {...}, "changed": {"<shared column>":
-- "<clinic time>"}}: a missing row is inserted whole, its shared columns versioned with the
-- clinic's times; an existing row gets every clinic-owned column, and each shared column the
-- clinic changed only when the clinic's time is newer than the column's version; a row whose
-- synced_at (the clinic's row version, 04_row_versions.sql) is older than the existing row's is
-- left alone whole. Returns the
-- shared columns it refused where Supabase holds another value: [{"index", "column", "value",
-- "version"}], index being the row's position in p_rows.
--
-- SECURITY INVOKER: it can do nothing its caller could not. Only tables with a sync_versions
-- column are accepted; identifiers are quoted with format('%I'); values never become SQL text
-- (they are read from the JSON with jsonb_populate_record).
CREATE OR REPLACE FUNCTION public.syncbridge_push(p_table text, p_keys text[], p_shared text[], p_rows jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_columns text[];
    v_item jsonb;
    v_index integer := -1;
    v_row jsonb;
    v_changed jsonb;
    v_current jsonb;
    v_versions jsonb;
    v_cols text[];
    v_set text[];
    v_col text;
    v_key_pred text;
    v_refused jsonb := '[]'::jsonb;
BEGIN
    SELECT array_agg(a.attname::text) INTO v_columns
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname = p_table AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_columns IS NULL OR NOT ('sync_versions' = ANY (v_columns)) THEN
        -- 42P01 (undefined table): a schema fault the agent pauses on, not a row's.
        RAISE EXCEPTION 'syncbridge_push: relation public.% does not exist or has no sync_versions column', p_table
            USING ERRCODE = '42P01';
    END IF;
    IF coalesce(cardinality(p_keys), 0) = 0 OR NOT (p_keys <@ v_columns) THEN
        RAISE EXCEPTION 'syncbridge_push: key columns % are not columns of %', p_keys, p_table
            USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('syncbridge.writer', 'on', true);
    SELECT string_agg(format('t.%1$I = r.%1$I', k), ' AND ') INTO v_key_pred FROM unnest(p_keys) AS k;
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_rows) LOOP
        v_index := v_index + 1;
        v_row := v_item -> 'row';
        v_changed := coalesce(v_item -> 'changed', '{}'::jsonb);
        -- Only columns the table has: one dropped in Supabase meanwhile is drift, not an error.
        SELECT array_agg(k) INTO v_cols
        FROM jsonb_object_keys(v_row) AS k
        WHERE k = ANY (v_columns) AND k <> 'sync_versions';
        EXECUTE format(
            'SELECT to_jsonb(t) FROM public.%I AS t, jsonb_populate_record(NULL::public.%I, $1) AS r WHERE %s FOR UPDATE OF t',
            p_table, p_table, v_key_pred)
        INTO v_current USING v_row;
        IF v_current IS NULL THEN
            SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) INTO v_versions
            FROM jsonb_each(v_changed) WHERE key = ANY (p_shared);
            EXECUTE format(
                'INSERT INTO public.%I (%s, sync_versions) SELECT %s, $2 FROM jsonb_populate_record(NULL::public.%I, $1) AS r',
                p_table,
                (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_cols) AS c),
                (SELECT string_agg(format('r.%I', c), ', ') FROM unnest(v_cols) AS c),
                p_table)
            USING v_row, v_versions;
            CONTINUE;
        END IF;
        -- A clinic row older than the one Supabase holds (a push the agent gave up on that
        -- lands late; synced_at: 04_row_versions.sql) changes nothing, its shared columns
        -- included: the newer push already said what the clinic has. Equal times pass.
        IF (v_row ->> 'synced_at') IS NOT NULL AND (v_current ->> 'synced_at') IS NOT NULL
           AND (v_row ->> 'synced_at')::timestamptz < (v_current ->> 'synced_at')::timestamptz THEN
            CONTINUE;
        END IF;
        v_versions := coalesce(v_current -> 'sync_versions', '{}'::jsonb);
        v_set := ARRAY[]::text[];
        FOREACH v_col IN ARRAY v_cols LOOP
            IF v_col = ANY (p_keys) THEN
                CONTINUE;
            ELSIF NOT (v_col = ANY (p_shared)) THEN
                v_set := v_set || v_col;
            ELSIF v_changed ? v_col THEN
                -- Ties go to the portal: the clinic's time must be strictly newer.
                IF v_versions ->> v_col IS NULL
                   OR (v_changed ->> v_col)::timestamptz > (v_versions ->> v_col)::timestamptz THEN
                    v_set := v_set || v_col;
                    v_versions := jsonb_set(v_versions, ARRAY[v_col], v_changed -> v_col);
                ELSIF (v_current -> v_col) IS DISTINCT FROM (v_row -> v_col) THEN
                    v_refused := v_refused || jsonb_build_object(
                        'index', v_index, 'column', v_col,
                        'value', v_current -> v_col, 'version', v_versions -> v_col);
                END IF;
            END IF;
        END LOOP;
        EXECUTE format(
            'UPDATE public.%I AS t SET (%s) = ROW(%s) FROM jsonb_populate_record(NULL::public.%I, $1) AS r WHERE %s AND ROW(%s) IS DISTINCT FROM ROW(%s)',
            p_table,
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_set || 'sync_versions'::text) AS c),
            (SELECT string_agg(format('r.%I', c), ', ') FROM unnest(v_set) AS c) || CASE WHEN cardinality(v_set) > 0 THEN ', ' ELSE '' END || '$2',
            p_table,
            v_key_pred,
            (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(v_set || 'sync_versions'::text) AS c),
            (SELECT string_agg(format('r.%I', c), ', ') FROM unnest(v_set) AS c) || CASE WHEN cardinality(v_set) > 0 THEN ', ' ELSE '' END || '$2')
        USING v_row, v_versions;
    END LOOP;
    RETURN v_refused;
END;
$$;

-- Only the agent (the service key) may push: through it a caller writes version times
-- directly, past the stamping trigger, so a portal user (anon, authenticated) calling it could
-- pin a column's version in the future and win every later conflict. PostgreSQL grants
-- EXECUTE to PUBLIC by default, and Supabase to anon and authenticated as well.
REVOKE EXECUTE ON FUNCTION public.syncbridge_push(text, text[], text[], jsonb) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE EXECUTE ON FUNCTION public.syncbridge_push(text, text[], text[], jsonb) FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE EXECUTE ON FUNCTION public.syncbridge_push(text, text[], text[], jsonb) FROM authenticated;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT EXECUTE ON FUNCTION public.syncbridge_push(text, text[], text[], jsonb) TO service_role;
    END IF;
END
$$;
