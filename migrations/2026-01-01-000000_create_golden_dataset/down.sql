DROP TABLE artifacts;
DROP TABLE chunks;
DROP TABLE analyses;
-- The vector extension stays: other schemas of the database may use it.
