-- Voyage (and other providers) embed a query differently from a document of the same text,
-- so the cache keys a vector by what it was made for as well. Every vector cached before
-- this migration was a document's: `evaluate` did not cache its queries then.
ALTER TABLE embedding_cache
    ADD COLUMN input_type text NOT NULL DEFAULT 'document'
        CHECK (input_type IN ('document', 'query'));
ALTER TABLE embedding_cache DROP CONSTRAINT embedding_cache_pkey;
ALTER TABLE embedding_cache ADD PRIMARY KEY (provider, model, dims, input_type, text_sha256);
