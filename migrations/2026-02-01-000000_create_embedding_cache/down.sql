DROP TABLE pending_embeddings;
DROP TABLE embedding_cache;
