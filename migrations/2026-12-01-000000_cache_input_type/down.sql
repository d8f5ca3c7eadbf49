DELETE FROM embedding_cache WHERE input_type <> 'document';
ALTER TABLE embedding_cache DROP CONSTRAINT embedding_cache_pkey;
ALTER TABLE embedding_cache DROP COLUMN input_type;
ALTER TABLE embedding_cache ADD PRIMARY KEY (provider, model, dims, text_sha256);
