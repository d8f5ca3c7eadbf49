-- Vectors already paid for, keyed by what made them and the exact text. Restore and
-- regenerate-embeddings look here before they call a provider, so a repeated local reset of
-- unchanged content makes no request. Not part of the dataset: `restore --replace` keeps it.
CREATE TABLE embedding_cache (
    provider text NOT NULL,
    model text NOT NULL,
    dims integer NOT NULL CHECK (dims > 0),
    -- SHA-256 of the input text as UTF-8.
    text_sha256 bytea NOT NULL CHECK (length(text_sha256) = 32),
    embedding vector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model, dims, text_sha256)
);

-- Embeddings computed by regenerate-embeddings and not yet swapped into `chunks`: the
-- progress of a regeneration, kept across interruptions so a rerun continues.
CREATE TABLE pending_embeddings (
    chunk_id uuid PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    embedding vector NOT NULL,
    model text NOT NULL,
    dims integer NOT NULL CHECK (dims > 0),
    -- SHA-256 of the text the vector was made from: a chunk edited since is embedded again.
    text_sha256 bytea NOT NULL CHECK (length(text_sha256) = 32)
);
