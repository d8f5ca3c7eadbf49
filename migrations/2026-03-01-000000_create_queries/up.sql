-- The golden queries: what users ask, and the chunks that answer it. `golden evaluate`
-- measures retrieval against them. Expected chunks are an array, not a foreign key: a query
-- may outlive a chunk, and `verify` reports the ids that no longer exist.
CREATE TABLE queries (
    id text PRIMARY KEY CHECK (id <> ''),
    query text NOT NULL,
    expected_chunk_ids uuid[] NOT NULL DEFAULT '{}',
    category text,
    difficulty text,
    created_at timestamptz NOT NULL DEFAULT now()
);
