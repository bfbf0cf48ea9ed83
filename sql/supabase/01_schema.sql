-- syncbridge: the Supabase side of the sample clinic schema (docs/sample-schema.md).
--
-- Written for PostgreSQL 15+ as Supabase runs it; paste it into the SQL editor or run it with psql.
-- Re-runnable: tables and indexes are created only when missing, functions are replaced and
-- triggers dropped and recreated, so running it again changes nothing that already matches.
--
-- The agent writes these tables through PostgREST with the secret (service_role) key, which
-- bypasses Row Level Security. RLS is enabled with no policies, so the publishable/anon key can
-- neither read nor write them until the portal adds policies of its own.
--
-- Tables are listed parent before child, the order the foreign keys need.

-- Every table carries updated_at, the version the agent's catch-up reads in keyset order.
-- clock_timestamp() rather than now(): now() is the transaction's start time, so two
-- transactions writing one row could stamp it out of the order they wrote it.
CREATE OR REPLACE FUNCTION public.syncbridge_touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TABLE IF NOT EXISTS public.patients (
    person_id     integer     PRIMARY KEY,
    patient_name  text        NOT NULL,
    phone         text,
    date_of_birth date,
    is_active     boolean     NOT NULL DEFAULT true,
    patient_guid  uuid        NOT NULL,
    notes         text,
    date_added    timestamp(3) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS public.work (
    work_id        integer       PRIMARY KEY,
    person_id      integer       NOT NULL REFERENCES public.patients (person_id),
    type_of_work   text          NOT NULL,
    total_required numeric(19,4),
    currency       text          NOT NULL DEFAULT 'IQD',
    start_date     date,
    finished       boolean       NOT NULL DEFAULT false,
    addition_time  timestamp(3)  NOT NULL,
    updated_at     timestamptz   NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS public.aligner_sets (
    aligner_set_id       integer       PRIMARY KEY,
    work_id              integer       NOT NULL REFERENCES public.work (work_id),
    set_sequence         integer       NOT NULL,
    upper_aligners_count integer       NOT NULL DEFAULT 0,
    lower_aligners_count integer       NOT NULL DEFAULT 0,
    set_cost             numeric(12,2),
    is_active            boolean       NOT NULL DEFAULT true,
    creation_date        timestamptz   NOT NULL,
    updated_at           timestamptz   NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS public.aligner_batches (
    aligner_batch_id          integer     PRIMARY KEY,
    aligner_set_id            integer     NOT NULL REFERENCES public.aligner_sets (aligner_set_id),
    batch_sequence            integer     NOT NULL,
    upper_aligner_count       integer     NOT NULL DEFAULT 0,
    lower_aligner_count       integer     NOT NULL DEFAULT 0,
    days                      integer,
    manufacture_date          date,
    delivered_to_patient_date date,
    notes                     text,
    label_code                bytea,
    updated_at                timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS public.aligner_notes (
    note_uid       uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    aligner_set_id integer      NOT NULL REFERENCES public.aligner_sets (aligner_set_id),
    note_type      text         NOT NULL CHECK (note_type IN ('Lab', 'Doctor')),
    note_text      text         NOT NULL,
    created_at     timestamp(3) NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    is_edited      boolean      NOT NULL DEFAULT false,
    edited_at      timestamp(3),
    is_read        boolean      NOT NULL DEFAULT false,
    updated_at     timestamptz  NOT NULL DEFAULT clock_timestamp()
);

-- Foreign keys are not indexed by PostgreSQL itself; without these a parent delete scans the child.
CREATE INDEX IF NOT EXISTS work_person_id_idx ON public.work (person_id);
CREATE INDEX IF NOT EXISTS aligner_sets_work_id_idx ON public.aligner_sets (work_id);
CREATE INDEX IF NOT EXISTS aligner_batches_aligner_set_id_idx ON public.aligner_batches (aligner_set_id);
CREATE INDEX IF NOT EXISTS aligner_notes_aligner_set_id_idx ON public.aligner_notes (aligner_set_id);

-- Catch-up pages through changes in (updated_at, key) order; these make each page an index range.
CREATE INDEX IF NOT EXISTS patients_updated_at_idx ON public.patients (updated_at, person_id);
CREATE INDEX IF NOT EXISTS work_updated_at_idx ON public.work (updated_at, work_id);
CREATE INDEX IF NOT EXISTS aligner_sets_updated_at_idx ON public.aligner_sets (updated_at, aligner_set_id);
CREATE INDEX IF NOT EXISTS aligner_batches_updated_at_idx ON public.aligner_batches (updated_at, aligner_batch_id);
CREATE INDEX IF NOT EXISTS aligner_notes_updated_at_idx ON public.aligner_notes (updated_at, note_uid);

DROP TRIGGER IF EXISTS patients_touch_updated_at ON public.patients;
CREATE TRIGGER patients_touch_updated_at
    BEFORE INSERT OR UPDATE ON public.patients
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_touch_updated_at();

DROP TRIGGER IF EXISTS work_touch_updated_at ON public.work;
CREATE TRIGGER work_touch_updated_at
    BEFORE INSERT OR UPDATE ON public.work
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_touch_updated_at();

DROP TRIGGER IF EXISTS aligner_sets_touch_updated_at ON public.aligner_sets;
CREATE TRIGGER aligner_sets_touch_updated_at
    BEFORE INSERT OR UPDATE ON public.aligner_sets
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_touch_updated_at();

DROP TRIGGER IF EXISTS aligner_batches_touch_updated_at ON public.aligner_batches;
CREATE TRIGGER aligner_batches_touch_updated_at
    BEFORE INSERT OR UPDATE ON public.aligner_batches
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_touch_updated_at();

DROP TRIGGER IF EXISTS aligner_notes_touch_updated_at ON public.aligner_notes;
CREATE TRIGGER aligner_notes_touch_updated_at
    BEFORE INSERT OR UPDATE ON public.aligner_notes
    FOR EACH ROW EXECUTE FUNCTION public.syncbridge_touch_updated_at();

ALTER TABLE public.patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.work ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.aligner_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.aligner_batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.aligner_notes ENABLE ROW LEVEL SECURITY;
