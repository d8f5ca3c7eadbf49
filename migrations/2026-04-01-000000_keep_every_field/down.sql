DROP TABLE dataset_extras;
ALTER TABLE queries DROP COLUMN unresolved_expected_chunks;
DROP TABLE artifact_versions;
ALTER TABLE artifacts DROP COLUMN version;
ALTER TABLE queries DROP COLUMN extra;
ALTER TABLE artifacts DROP COLUMN extra;
ALTER TABLE chunks DROP COLUMN extra;
ALTER TABLE analyses DROP COLUMN extra;
