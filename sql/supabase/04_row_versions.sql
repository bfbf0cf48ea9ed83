-- syncbridge: the clinic's version of each synced row (synced_at), so that a forward write the
-- agent gave up on (a client timeout, a killed agent) and that lands late never overwrites a
-- newer one (README "Who wins").
--
-- Written for PostgreSQL 15+ as Supabase runs it; run after 01_schema.sql and 03_versions.sql.
-- Re-runnable: columns are added only when missing, the function is replaced and the triggers
-- dropped and recreated.
--
-- synced_at is the time of the clinic change a forward write carries: the CreatedAt of the
-- record's newest SyncQueue item (UTC), sent by the agent with every upsert and push. An
-- UPDATE whose synced_at is older than the row's is a stale clinic write and is skipped (the
-- trigger returns NULL: INSERT ... ON CONFLICT DO UPDATE, PostgREST's upsert, then leaves
-- that row as it is and goes on with the others). Equal times pass: a resend of one change.
-- Supabase-only, like sync_versions: the agent never writes it to SQL Server.
--
-- Only the agent's role (service_role) moves it: a portal write (anon, authenticated, or any
-- other role, the SQL editor's included) keeps the row's synced_at on UPDATE and starts from
-- none on INSERT, so a portal user cannot pin a row against the clinic's later changes.
--
-- A table of your own that the agent writes gets the same column and trigger:
--   ALTER TABLE public.<t> ADD COLUMN IF NOT EXISTS synced_at timestamptz;
--   CREATE TRIGGER <t>_guard_synced_at BEFORE INSERT OR UPDATE ON public.<t>
--       FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();

ALTER TABLE public.patients ADD COLUMN IF NOT EXISTS synced_at timestamptz;
ALTER TABLE public.work ADD COLUMN IF NOT EXISTS synced_at timestamptz;
ALTER TABLE public.aligner_sets ADD COLUMN IF NOT EXISTS synced_at timestamptz;
ALTER TABLE public.aligner_batches ADD COLUMN IF NOT EXISTS synced_at timestamptz;
ALTER TABLE public.aligner_notes ADD COLUMN IF NOT EXISTS synced_at timestamptz;

CREATE OR REPLACE FUNCTION public.syncbridge_guard_synced_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- current_user is the role PostgREST switched to for the request (SET ROLE); the function
    -- is SECURITY INVOKER, so no definer's rights can stand in for it.
    IF current_user <> 'service_role' THEN
        IF TG_OP = 'UPDATE' THEN
            NEW.synced_at := OLD.synced_at;
        ELSE
            NEW.synced_at := NULL;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.synced_at < OLD.synced_at THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;

-- Named to sort before the tables' other BEFORE triggers (PostgreSQL fires them by name), so a
-- skipped write stamps nothing.
DROP TRIGGER IF EXISTS patients_guard_synced_at ON public.patients;
CREATE TRIGGER patients_guard_synced_at
    BEFORE INSERT OR UPDATE ON public.patients
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();

DROP TRIGGER IF EXISTS work_guard_synced_at ON public.work;
CREATE TRIGGER work_guard_synced_at
    BEFORE INSERT OR UPDATE ON public.work
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();

DROP TRIGGER IF EXISTS aligner_sets_guard_synced_at ON public.aligner_sets;
CREATE TRIGGER aligner_sets_guard_synced_at
    BEFORE INSERT OR UPDATE ON public.aligner_sets
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();

DROP TRIGGER IF EXISTS aligner_batches_guard_synced_at ON public.aligner_batches;
CREATE TRIGGER aligner_batches_guard_synced_at
    BEFORE INSERT OR UPDATE ON public.aligner_batches
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();

DROP TRIGGER IF EXISTS aligner_notes_guard_synced_at ON public.aligner_notes;
CREATE TRIGGER aligner_notes_guard_synced_at
    BEFORE INSERT OR UPDATE ON public.aligner_notes
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_guard_synced_at();
