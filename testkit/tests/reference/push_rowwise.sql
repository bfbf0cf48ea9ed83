-- The row-by-row syncbridge_push as it shipped before the set-based one (sql/supabase/
-- 03_versions.sql at a456f0e), renamed: the oracle tests/push_equivalence.rs compares the
-- shipped function against. Test-only; never installed by the agent or the setup scripts.
CREATE OR REPLACE FUNCTION public.syncbridge_push_rowwise(p_table text, p_keys text[], p_shared text[], p_rows jsonb)
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

GRANT EXECUTE ON FUNCTION public.syncbridge_push_rowwise(text, text[], text[], jsonb) TO service_role;
