-- Keep every field of a backup file, whichever tool wrote it (issue 12): the keys golden does
-- not map to a column go to an `extra` jsonb object on their row, the file-level keys to
-- `dataset_extras`, and `backup` writes them all back. Every column added has a default, so
-- other programs that write these tables with the contract's columns only are not affected.

ALTER TABLE analyses ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(extra) = 'object');
ALTER TABLE chunks ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(extra) = 'object');
ALTER TABLE artifacts ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(extra) = 'object');
ALTER TABLE queries ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(extra) = 'object');

-- Artifact versions: a dataset may keep several artifacts of one analysis (SkillForge does).
-- `artifacts` keeps one per analysis, the latest, as every program that reads it expects; the
-- older ones go to `artifact_versions`. `version` is the number the file gave a version (NULL
-- when it gave none); the latest is the highest version, then the newest, then the greatest id.
ALTER TABLE artifacts ADD COLUMN version integer;
CREATE TABLE artifact_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    analysis_id uuid NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    summary text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    version integer,
    extra jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(extra) = 'object')
);
CREATE INDEX artifact_versions_analysis_id_idx ON artifact_versions (analysis_id);

-- References to expected chunks that matched no chunk when the file was read (SkillForge 2.0
-- queries name chunks by path); kept as written, and `evaluate` does not score such a query.
ALTER TABLE queries ADD COLUMN unresolved_expected_chunks text[] NOT NULL DEFAULT '{}';

-- The file-level keys golden does not define (SkillForge's `source`, `fixtures`, artifacts
-- whose analysis is not in the file, ...), written back by `backup` at the top of the file.
-- `metadata` holds the file's metadata keys golden does not compute.
CREATE TABLE dataset_extras (
    key text PRIMARY KEY CHECK (key <> ''),
    value jsonb NOT NULL
);
