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
-- left alone whole. Returns the shared columns it refused where Supabase holds another value:
-- [{"index", "column", "value", "version"}], index being the row's position in p_rows.
--
-- Set-based: per shape of row (the columns it carries; one shape per batch as the agent sends
-- them) one statement reads the refusals and locks the existing rows, one updates them and one
-- inserts the missing, whatever the batch's size, so a batch costs three planned statements
-- rather than two per row. A key given twice in one call counts once, its last row.
--
-- SECURITY INVOKER: it can do nothing its caller could not. Only tables with a sync_versions
-- column are accepted; identifiers are quoted with format('%I') and %L; values never become
-- SQL text (they are read from the JSON with jsonb_populate_record).
CREATE OR REPLACE FUNCTION public.syncbridge_push(p_table text, p_keys text[], p_shared text[], p_rows jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_columns text[];
    v_shapes jsonb;
    v_first text[];
    v_others text[];
    v_shape jsonb;
    v_of_shape text;
    v_last bigint[];
    v_cols text[];
    v_plain text[];
    v_shared text[];
    v_key_pred text;
    v_row_keys text;
    v_input text;
    v_stale text;
    v_accept text;
    v_set_cols text;
    v_set_vals text;
    v_part jsonb;
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
    IF p_rows IS NULL THEN
        RETURN v_refused;
    ELSIF jsonb_typeof(p_rows) <> 'array' THEN
        RAISE EXCEPTION 'syncbridge_push: p_rows is not an array' USING ERRCODE = '22023';
    END IF;
    PERFORM set_config('syncbridge.writer', 'on', true);
    SELECT string_agg(format('t.%1$I = r.%1$I', k), ' AND ') INTO v_key_pred FROM unnest(p_keys) AS k;
    -- A row's key as the statements below read it (p: the row as a record of the table).
    SELECT string_agg(format('p.%I', k), ', ') INTO v_row_keys FROM unnest(p_keys) AS k;

    -- Each shape: the table's columns a row carries (one dropped in Supabase meanwhile is
    -- drift, not an error), sorted so that rows with the same columns share a statement.
    -- In the order of the shapes as text arrays, the order they have always been taken in.
    -- First the common case, one shape (every batch the agent sends): every row an object
    -- holding all of the first row's columns and none of the table's others, two key
    -- look-ups per row instead of a sorted list of its keys.
    IF jsonb_typeof(p_rows -> 0 -> 'row') = 'object' THEN
        v_first := ARRAY(SELECT k FROM jsonb_object_keys(p_rows -> 0 -> 'row') AS k
                         WHERE k = ANY (v_columns) AND k <> 'sync_versions' ORDER BY k);
        v_others := ARRAY(SELECT c FROM unnest(v_columns) AS c
                          WHERE c <> 'sync_versions' AND NOT (c = ANY (v_first)));
        -- NULL (a row missing, say) is not a yes: such a call takes the general pass below.
        SELECT jsonb_build_array(to_jsonb(v_first)) INTO v_shapes
        WHERE NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_rows) AS e
            WHERE NOT coalesce(jsonb_typeof(e.value -> 'row') = 'object'
                               AND (e.value -> 'row') ?& v_first
                               AND NOT ((e.value -> 'row') ?| v_others), false));
    END IF;
    IF v_shapes IS NULL THEN
        SELECT jsonb_agg(to_jsonb(s.shape) ORDER BY s.shape) INTO v_shapes
        FROM (SELECT DISTINCT ARRAY(
                  SELECT k FROM jsonb_object_keys(e.value -> 'row') AS k
                  WHERE k = ANY (v_columns) AND k <> 'sync_versions' ORDER BY k) AS shape
              FROM jsonb_array_elements(p_rows) AS e) AS s;
    END IF;
    -- One shape (every batch the agent sends): every row is of it, so the statements below
    -- need not work out each row's shape again (a sorted key list per row, three times).
    IF jsonb_array_length(coalesce(v_shapes, '[]')) > 1 THEN
        -- Several shapes: a key given twice counts once, its last row, whatever the shapes of
        -- its rows (each statement below sees one shape only): the places of the last rows.
        EXECUTE format(
            'SELECT array_agg(w.n) FROM (
                 SELECT DISTINCT ON (%1$s) e.n
                 FROM jsonb_array_elements($1) WITH ORDINALITY AS e(item, n),
                      jsonb_populate_record(NULL::public.%2$I, e.item -> ''row'') AS p
                 ORDER BY %1$s, e.n DESC) AS w',
            v_row_keys,
            p_table)
        INTO v_last USING p_rows;
        v_of_shape := 'WHERE ARRAY(SELECT k FROM jsonb_object_keys(e.item -> ''row'') AS k
                         WHERE k = ANY ($2) AND k <> ''sync_versions'' ORDER BY k) = $3
                     AND e.n = ANY ($5)';
    ELSE
        v_of_shape := '';
    END IF;
    FOR v_shape IN SELECT value FROM jsonb_array_elements(coalesce(v_shapes, '[]')) LOOP
        v_cols := ARRAY(SELECT jsonb_array_elements_text(v_shape));
        IF cardinality(v_cols) = 0 THEN
            RAISE EXCEPTION 'syncbridge_push: a row carries no column of %', p_table USING ERRCODE = '22023';
        END IF;
        v_plain := ARRAY(SELECT c FROM unnest(v_cols) AS c WHERE NOT (c = ANY (p_keys)) AND NOT (c = ANY (p_shared)));
        v_shared := ARRAY(SELECT c FROM unnest(v_cols) AS c WHERE NOT (c = ANY (p_keys)) AND c = ANY (p_shared));
        -- The rows of this shape, numbered by their place in p_rows; the last of a key wins.
        v_input := format(
            'SELECT DISTINCT ON (%1$s) e.n - 1 AS _sb_idx, e.item -> ''row'' AS _sb_raw,
                    coalesce(e.item -> ''changed'', ''{}''::jsonb) AS _sb_changed, p.*
             FROM jsonb_array_elements($1) WITH ORDINALITY AS e(item, n),
                  jsonb_populate_record(NULL::public.%2$I, e.item -> ''row'') AS p
             %3$s
             ORDER BY %1$s, e.n DESC',
            v_row_keys,
            p_table, v_of_shape);
        -- A clinic row older than the one Supabase holds (a push the agent gave up on that
        -- lands late; synced_at: 04_row_versions.sql) changes nothing, its shared columns
        -- included: the newer push already said what the clinic has. Equal times pass.
        IF 'synced_at' = ANY (v_cols) THEN
            v_stale := 'coalesce(r.synced_at < t.synced_at, false)';
        ELSE
            v_stale := 'false';
        END IF;
        -- Whether the clinic's change of shared column %1$I is taken: ties go to the portal,
        -- the clinic's time must be strictly newer than the column's version.
        v_accept := '(r._sb_changed ? %1$L AND (t.sync_versions ->> %1$L IS NULL
                       OR (r._sb_changed ->> %1$L)::timestamptz > (t.sync_versions ->> %1$L)::timestamptz))';

        -- 1. Lock the existing rows and read what is refused, before anything changes.
        IF cardinality(v_shared) > 0 THEN
            EXECUTE format(
                'WITH r AS (%1$s)
                 SELECT coalesce(jsonb_agg(jsonb_build_object(
                            ''index'', x.idx, ''column'', x.col, ''value'', x.value, ''version'', x.version)
                            ORDER BY x.idx, x.col), ''[]''::jsonb)
                 FROM (SELECT r._sb_idx AS idx, s.col, s.value, s.version, s.refused
                       FROM r JOIN public.%2$I AS t ON %3$s
                       CROSS JOIN LATERAL (VALUES %4$s) AS s(col, refused, value, version)
                       WHERE NOT %5$s
                       FOR UPDATE OF t) AS x
                 WHERE x.refused',
                v_input, p_table, v_key_pred,
                (SELECT string_agg(format(
                    '(%1$L, r._sb_changed ? %1$L AND NOT ' || v_accept
                    || ' AND coalesce(to_jsonb(t.%1$I), ''null'') IS DISTINCT FROM r._sb_raw -> %1$L,'
                    || ' coalesce(to_jsonb(t.%1$I), ''null''), t.sync_versions -> %1$L)', c), ', ')
                 FROM unnest(v_shared) AS c),
                v_stale)
            INTO v_part USING p_rows, v_columns, v_cols, p_shared, v_last;
            v_refused := v_refused || v_part;
        END IF;

        -- 2. Update the existing rows: every clinic-owned column, each shared column taken.
        v_set_cols := array_to_string(ARRAY(
            SELECT format('%I', c) FROM unnest(v_plain || v_shared || 'sync_versions'::text) WITH ORDINALITY AS u(c, n) ORDER BY n), ', ');
        v_set_vals := array_to_string(
            ARRAY(SELECT format('r.%I', c) FROM unnest(v_plain) WITH ORDINALITY AS u(c, n) ORDER BY n)
            || ARRAY(SELECT format('CASE WHEN ' || v_accept || ' THEN r.%1$I ELSE t.%1$I END', c)
                     FROM unnest(v_shared) WITH ORDINALITY AS u(c, n) ORDER BY n)
            || ('coalesce(t.sync_versions, ''{}''::jsonb)' || array_to_string(ARRAY(
                   SELECT format(' || CASE WHEN ' || v_accept || ' THEN jsonb_build_object(%1$L, r._sb_changed -> %1$L) ELSE ''{}''::jsonb END', c)
                   FROM unnest(v_shared) WITH ORDINALITY AS u(c, n) ORDER BY n), '')),
            ', ');
        EXECUTE format(
            'WITH r AS (%1$s)
             UPDATE public.%2$I AS t SET (%3$s) = ROW(%4$s)
             FROM r
             WHERE %5$s AND NOT %6$s AND ROW(%7$s) IS DISTINCT FROM ROW(%4$s)',
            v_input, p_table, v_set_cols, v_set_vals, v_key_pred, v_stale,
            array_to_string(ARRAY(
                SELECT format('t.%I', c) FROM unnest(v_plain || v_shared || 'sync_versions'::text) WITH ORDINALITY AS u(c, n) ORDER BY n), ', '))
        USING p_rows, v_columns, v_cols, p_shared, v_last;

        -- 3. Insert the missing rows whole, their shared columns versioned with the clinic's
        -- times.
        EXECUTE format(
            'WITH r AS (%1$s)
             INSERT INTO public.%2$I (%3$s, sync_versions)
             SELECT %4$s, (SELECT coalesce(jsonb_object_agg(v.key, v.value), ''{}''::jsonb)
                          FROM jsonb_each(r._sb_changed) AS v WHERE v.key = ANY ($4))
             FROM r
             WHERE NOT EXISTS (SELECT 1 FROM public.%2$I AS t WHERE %5$s)',
            v_input, p_table,
            array_to_string(ARRAY(SELECT format('%I', c) FROM unnest(v_cols) WITH ORDINALITY AS u(c, n) ORDER BY n), ', '),
            array_to_string(ARRAY(SELECT format('r.%I', c) FROM unnest(v_cols) WITH ORDINALITY AS u(c, n) ORDER BY n), ', '),
            v_key_pred)
        USING p_rows, v_columns, v_cols, p_shared, v_last;
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
