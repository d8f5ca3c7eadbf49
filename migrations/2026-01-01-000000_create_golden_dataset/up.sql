-- The golden dataset: analyses (one per source document), their chunks with an embedding,
-- and one artifact (a summary) per analysis. See CONTRACT.md for what must exist.
-- Columns beyond the contract's have defaults, so other tools may insert with the contract's
-- columns only.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE analyses (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url text NOT NULL,
    title text,
    content_type text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Backup reads analyses of one status in (created_at, id) order, page by page.
CREATE INDEX analyses_status_created_at_id_idx ON analyses (status, created_at, id);
-- The same order without a status filter (`backup --status all`).
CREATE INDEX analyses_created_at_id_idx ON analyses (created_at, id);

CREATE TABLE chunks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    analysis_id uuid NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    content text NOT NULL,
    section_title text,
    section_path text,
    content_type text NOT NULL,
    chunk_index integer NOT NULL CHECK (chunk_index >= 0),
    embedding vector(1024),
    embedding_model text,
    -- Also the index behind "the chunks of these analyses, by chunk_index".
    CONSTRAINT chunks_analysis_id_chunk_index_key UNIQUE (analysis_id, chunk_index)
);

CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops);

CREATE TABLE artifacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    analysis_id uuid NOT NULL UNIQUE REFERENCES analyses (id) ON DELETE CASCADE,
    summary text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
