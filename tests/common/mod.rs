//! Shared test support: a database of its own per test (created on the local server of
//! `make db`, dropped afterwards, so tests run in parallel), the built binary run as a user
//! runs it, and the sample dataset loaded the way other tools of a team would write it.
#![allow(dead_code)]

pub mod dialects;
pub mod embed_server;
pub mod git;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use assert_cmd::Command;
use diesel::prelude::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use golden::backup_file::records::read_analyses_at;
use golden::models::{NewAnalysis, NewArtifact, NewChunk};
use golden::schema::{analyses, artifacts, chunks};
use pgvector::Vector;

/// The committed sample dataset.
pub fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/golden_dataset_backup.json")
}

/// The server the tests create their databases on: `GOLDEN_TEST_SERVER_URL`, else the local
/// server of `make db` on `GOLDEN_PGPORT` (54329 when unset), which `make test` starts.
fn server_url() -> String {
    std::env::var("GOLDEN_TEST_SERVER_URL").unwrap_or_else(|_| {
        let port = std::env::var("GOLDEN_PGPORT")
            .ok()
            .filter(|port| !port.is_empty())
            .unwrap_or_else(|| "54329".into());
        format!("postgres://postgres@127.0.0.1:{port}")
    })
}

/// A database of its own, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A new database with the golden tables.
    pub fn migrated() -> TestDb {
        let db = TestDb::empty();
        let mut conn = db.conn();
        golden::db::run_pending_migrations(&mut conn).expect("migrations apply");
        db
    }

    /// A new database holding the committed sample, restored with the offline embedder.
    pub fn with_sample() -> TestDb {
        let db = TestDb::migrated();
        db.restore_sample();
        db
    }

    /// A new database with the golden tables whose encoding is `encoding` (LATIN1, say).
    pub fn migrated_with_encoding(encoding: &str) -> TestDb {
        let db = TestDb::create(&format!(
            "ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ));
        let mut conn = db.conn();
        golden::db::run_pending_migrations(&mut conn).expect("migrations apply");
        db
    }

    /// A new database without tables (with the vector extension, as `make db` creates them).
    pub fn empty() -> TestDb {
        TestDb::create("")
    }

    /// A new database created with `options` (`CREATE DATABASE … <options>`).
    fn create(options: &str) -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "golden_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = admin_connection();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\" {options}"))
            .execute(&mut admin)
            .unwrap();
        let db = TestDb {
            url: format!("{}/{name}", server_url()),
            name,
        };
        diesel::sql_query("CREATE EXTENSION IF NOT EXISTS vector")
            .execute(&mut db.conn())
            .unwrap();
        db
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// Runs one SQL statement.
    pub fn execute(&self, sql: &str) -> usize {
        diesel::sql_query(sql)
            .execute(&mut self.conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The value of a single-number query.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT ({sql})::bigint AS n"))
            .get_result::<Count>(&mut self.conn())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }

    /// A digest of every row of the three tables, vectors included: equal digests, equal data.
    pub fn digest(&self) -> String {
        self.digest_of(&[("analyses", "id"), ("chunks", "id"), ("artifacts", "id")])
    }

    /// A digest of every table golden writes: [`TestDb::digest`]'s, `artifact_versions`,
    /// `dataset_extras` and `queries`.
    pub fn full_digest(&self) -> String {
        self.digest_of(&[
            ("analyses", "id"),
            ("chunks", "id"),
            ("artifacts", "id"),
            ("artifact_versions", "id"),
            ("dataset_extras", "key"),
            ("queries", "id"),
        ])
    }

    /// A digest of every value a restore writes from a file, vectors included, in every table
    /// golden writes: [`TestDb::full_digest`]'s but for `queries.created_at`, which the file
    /// does not hold (the time of the insert). Equal across databases that hold the same file.
    pub fn content_digest(&self) -> String {
        let queries = "(SELECT string_agg((q.id, q.query, q.expected_chunk_ids, q.category, \
             q.difficulty, q.extra, q.unresolved_expected_chunks)::text, '|' ORDER BY q.id) \
             FROM queries q)";
        let rows = self.digest_of(&[
            ("analyses", "id"),
            ("chunks", "id"),
            ("artifacts", "id"),
            ("artifact_versions", "id"),
            ("dataset_extras", "key"),
        ]);
        #[derive(QueryableByName)]
        struct Digest {
            #[diesel(sql_type = diesel::sql_types::Text)]
            digest: String,
        }
        diesel::sql_query(format!(
            "SELECT md5('{rows}' || '#' || coalesce({queries}, '')) AS digest"
        ))
        .get_result::<Digest>(&mut self.conn())
        .unwrap()
        .digest
    }

    /// Drops the vector index of `chunks`: an append then goes batch by batch, each batch
    /// committed, whatever the sizes (there is no index to build once: `restore::bulk`). For
    /// the tests of that path.
    pub fn drop_vector_index(&self) {
        self.execute("DROP INDEX chunks_embedding_hnsw_idx");
    }

    /// Builds the vector index again, as the migration defines it.
    pub fn create_vector_index(&self) {
        self.execute(
            "CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops)",
        );
    }

    /// The vector index's definition and the identity of its storage (a new one each time
    /// the index is built), or None when there is none.
    pub fn vector_index(&self) -> Option<(String, i64)> {
        #[derive(QueryableByName)]
        struct Index {
            #[diesel(sql_type = diesel::sql_types::Text)]
            definition: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            filenode: i64,
        }
        diesel::sql_query(
            "SELECT i.indexdef AS definition, c.relfilenode::bigint AS filenode FROM pg_indexes i \
             JOIN pg_class c ON c.relname = i.indexname \
             WHERE i.tablename = 'chunks' AND i.indexdef ~* 'USING hnsw'",
        )
        .get_result::<Index>(&mut self.conn())
        .optional()
        .unwrap()
        .map(|index| (index.definition, index.filenode))
    }

    /// The MD5 of the rows of `tables` (each with the column that orders it).
    pub fn digest_of(&self, tables: &[(&str, &str)]) -> String {
        #[derive(QueryableByName)]
        struct Digest {
            #[diesel(sql_type = diesel::sql_types::Text)]
            digest: String,
        }
        let parts: Vec<String> = tables
            .iter()
            .map(|(table, key)| {
                format!(
                    "coalesce((SELECT string_agg(t::text, '|' ORDER BY {key}) FROM {table} t), '')"
                )
            })
            .collect();
        diesel::sql_query(format!(
            "SELECT md5({}) AS digest",
            parts.join(" || '#' || ")
        ))
        .get_result::<Digest>(&mut self.conn())
        .unwrap()
        .digest
    }

    /// The stored embedding of a chunk, if any.
    pub fn embedding_of(&self, chunk_id: &str) -> Option<Vec<f32>> {
        use golden::schema::chunks;
        let id: uuid::Uuid = chunk_id.parse().unwrap();
        chunks::table
            .find(id)
            .select(chunks::embedding)
            .first::<Option<Vector>>(&mut self.conn())
            .unwrap()
            .map(|v| v.to_vec())
    }

    /// Restores the committed sample with the offline `hash` embedder, as a user would.
    pub fn restore_sample(&self) {
        let dir = workdir();
        golden(Some(self), dir.path())
            .args([
                "restore",
                "--embed-provider",
                "hash",
                sample_path().to_str().unwrap(),
            ])
            .assert()
            .code(0);
    }

    /// `golden verify --against-db` of the sample passes: the database holds exactly it.
    pub fn assert_holds_the_sample(&self) {
        let dir = workdir();
        golden(Some(self), dir.path())
            .args(["verify", "--against-db", sample_path().to_str().unwrap()])
            .assert()
            .code(0);
    }

    /// Inserts every record of a backup file, with a made-up embedding per chunk when asked.
    pub fn load(&self, path: &Path, with_embeddings: bool) {
        let mut records = Vec::new();
        let header = read_analyses_at(path, |record| {
            records.push(record);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let queries: Vec<golden::backup_file::record::BackupQuery> = header
            .queries
            .map(|q| serde_json::from_value(q).unwrap())
            .unwrap_or_default();
        let mut conn = self.conn();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for record in &records {
                insert_record(conn, record, with_embeddings)?;
            }
            for query in &queries {
                diesel::insert_into(golden::schema::queries::table)
                    .values(golden::models::NewQuery::from_backup(query))
                    .execute(conn)?;
            }
            Ok(())
        })
        .unwrap();
    }
}

/// A connection holding golden's dataset lock (the advisory lock 0x676f6c64656e, "golden" in
/// ASCII), as another writing run would, until [`DatasetLock::release`] or its drop.
pub struct DatasetLock(PgConnection);

impl DatasetLock {
    pub fn release(&mut self) {
        diesel::sql_query("SELECT pg_advisory_unlock(113728257549678)")
            .execute(&mut self.0)
            .unwrap();
    }
}

impl TestDb {
    pub fn hold_the_dataset_lock(&self) -> DatasetLock {
        let mut holder = self.conn();
        diesel::sql_query("SELECT pg_advisory_lock(113728257549678)")
            .execute(&mut holder)
            .unwrap();
        DatasetLock(holder)
    }
}

/// A FIFO (named pipe) at `path`.
pub fn make_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut admin = admin_connection();
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin);
    }
}

fn admin_connection() -> PgConnection {
    let url = format!("{}/postgres", server_url());
    PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("the test server {url} is not reachable ({e}); start it with `make db`")
    })
}

pub fn insert_record(
    conn: &mut PgConnection,
    record: &golden::backup_file::record::BackupAnalysis,
    with_embeddings: bool,
) -> QueryResult<()> {
    diesel::insert_into(analyses::table)
        .values(NewAnalysis::from(record))
        .execute(conn)?;
    let rows: Vec<NewChunk> = record
        .chunks
        .iter()
        .map(|chunk| {
            NewChunk::from_backup(
                chunk,
                record.id,
                with_embeddings.then(|| made_up_embedding(&chunk.content, 1024)),
                with_embeddings.then_some("test-model"),
            )
        })
        .collect();
    diesel::insert_into(chunks::table)
        .values(&rows)
        .execute(conn)?;
    for artifact in record.artifact_versions.iter().chain(&record.artifact) {
        diesel::insert_into(artifacts::table)
            .values(NewArtifact::from_backup(artifact, record.id))
            .execute(conn)?;
    }
    Ok(())
}

/// A deterministic unit vector derived from the text; only its presence and size matter here.
pub fn made_up_embedding(text: &str, dims: usize) -> Vector {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut values: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = values
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    values.iter_mut().for_each(|v| *v /= norm);
    Vector::from(values)
}

/// The binary, run in `dir` against `db`, with nothing inherited that would change its behaviour.
pub fn golden(db: Option<&TestDb>, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_golden"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL");
    // A developer's proxy or libpq settings would change where the tests' requests and
    // connections go.
    for variable in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "OPENAI_API_KEY",
        "VOYAGE_API_KEY",
    ] {
        cmd.env_remove(variable);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("GOLDEN_") {
            cmd.env_remove(key);
        }
    }
    if let Some(db) = db {
        cmd.env("DATABASE_URL", &db.url);
    }
    cmd
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses the `--json` summary a command printed on stdout.
pub fn json_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", stdout_of(output)))
}

/// A temp folder for a test's files.
pub fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The (where, problem) pairs of a `verify --json` summary.
pub fn problems_of(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["problems"]
        .as_array()
        .expect("a problems list")
        .iter()
        .map(|p| {
            (
                p["where"].as_str().unwrap().to_string(),
                p["problem"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
