//! When a write into `chunks` should drop the vector index, write its rows with COPY and build
//! the index once (the bulk path), rather than keep the index row by row in committed batches.
//!
//! Why this exists: pgvector's HNSW index is the cost of writing chunks. Kept in place, every
//! row inserted is a search of the graph and an update of its neighbours; built once, with
//! `maintenance_work_mem` raised, the same graph costs a fraction of that per row (and uses
//! both cores). But a build covers every row of the table, not only the new ones, so the bulk
//! path pays only when the rows written are many next to the rows already there. The batch
//! path commits as it goes: an interrupted run keeps what it wrote. The bulk path is all or
//! nothing: an interrupted or failed run leaves the database as it was, and a rerun starts
//! over, except that every vector already computed was committed to the embedding cache
//! through the restore's second connection as it came (outside the main transaction), so the
//! rerun does not ask the provider for them again. `restore --replace` always bulk loads (it
//! empties the tables); the default append and `restore --sync` ask [`bulk_pays`].
//!
//! Measured on this project's machine (2 cores, PostgreSQL 15, pgvector 0.8.0, 1024-dimension
//! vectors of chunks of about 1 KB, maintenance_work_mem 1 GB for the build) with
//! `python3 scripts/measure_hnsw.py` (SQL only, medians of 3 runs, one run for the row by row
//! write of 42 000 rows; N rows indexed in the table, n rows written, row by row in
//! transactions of 42 rows, an append batch of ten analyses of the seed's shape). Another
//! benchmark shared the machine during part of the run: the ratios are what the rule uses.
//!
//! | N | n | n/N | row by row | per row | bulk: drop, insert, build | bulk / row by row |
//! |---|---|---|---|---|---|---|
//! | 0 | 400 | | 0.70 s | 1.75 ms | 0.08 s | 0.12 |
//! | 0 | 4 000 | | 12.6 s | 3.14 ms | 2.89 s | 0.23 |
//! | 0 | 42 000 | | 212 s | 5.05 ms | 29.4 s | 0.14 |
//! | 4 000 | 400 | 0.10 | 1.30 s | 3.24 ms | 2.94 s | 2.27 |
//! | 4 000 | 4 000 | 1.00 | 18.6 s | 4.66 ms | 3.98 s | 0.21 |
//! | 20 000 | 400 | 0.02 | 1.98 s | 4.94 ms | 9.22 s | 4.66 |
//! | 20 000 | 2 000 | 0.10 | 14.9 s | 7.45 ms | 10.5 s | 0.70 |
//! | 20 000 | 4 000 | 0.20 | 36.8 s | 9.20 ms | 13.1 s | 0.36 |
//! | 40 000 | 400 | 0.01 | 2.10 s | 5.24 ms | 20.0 s | 9.55 |
//! | 40 000 | 4 000 | 0.10 | 21.4 s | 5.36 ms | 19.1 s | 0.89 |
//!
//! And at the rule's bound, n = N / 5 (`--trials 4000:800,20000:4000,40000:8000`, a second run):
//!
//! | N | n | n/N | row by row | per row | bulk: drop, insert, build | bulk / row by row |
//! |---|---|---|---|---|---|---|
//! | 4 000 | 800 | 0.20 | 2.58 s | 3.23 ms | 1.96 s | 0.76 |
//! | 20 000 | 4 000 | 0.20 | 18.4 s | 4.59 ms | 9.74 s | 0.53 |
//! | 40 000 | 8 000 | 0.20 | 43.0 s | 5.37 ms | 23.3 s | 0.54 |
//!
//! Keeping the index costs 1.75 to 9 ms a row, more as the graph grows; building it costs 0.4
//! to 0.65 ms a row of the whole table, new and old, and the build is nearly all of the bulk
//! path. So the bulk path wins when n (i - b) > N b, i and b those costs a row: from n/N of
//! about 0.08 (N = 20 000) to 0.2 (N = 4 000); at n/N = 0.1 it is already 0.7 to 0.9 of the
//! row by row time in the larger tables, and 2.3 times it in the smallest. The rule takes the
//! bulk path from n ≥ N / 5: there it takes 0.53 to 0.76 of the batches' time at every size
//! measured, and far less beyond (into an empty table, a seventh). Below it the batches are at
//! most about 1.4 times slower (n/N = 0.1 in the larger tables), faster in small tables, and
//! they keep their commits, which the bulk path gives up.
//!
//! Without a vector index there is nothing to build: 42 000 rows went in row by row in 1.31 s
//! against 1.03 s in one transaction, so an append into a table without one goes batch by
//! batch, keeping its commits (the rows that touch a vector index are none).
//!
//! Memory: the bulk append decides each row's fate from a snapshot of the keys of every row
//! of the database ([`super::existing::Existing::all`], about 100 bytes a chunk), since its
//! second connection cannot read `chunks` once the index is dropped. [`MOST_ROWS_IN_TABLE`]
//! bounds that snapshot (10 MB or so). It also keeps the build in memory: by pgvector's element
//! size (about 4.5 KB at 1024 dimensions, not measured here) the 1 GB of the build holds the
//! graph of some 200 000 rows, past which pgvector goes on building on disk, row by row, and
//! the build no longer beats inserting.

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use super::load;
use crate::db::QueryContext;

/// Past this many chunks in the table the bulk path is not taken (see the module doc).
pub const MOST_ROWS_IN_TABLE: u64 = 100_000;

/// One row written pays for the build over this many rows already in the table.
const ROWS_IN_TABLE_PER_ROW_WRITTEN: u64 = 5;

/// Whether writing `rows_to_write` chunk rows (rows that go into the vector index) into a
/// table of `rows_in_table` indexed chunk rows is faster by dropping the index, writing the
/// rows and building the index once than by keeping it row by row: true when the rows written
/// are at least a fifth of the rows there (always into an empty table), never when nothing is
/// written nor past [`MOST_ROWS_IN_TABLE`] rows in the table.
pub fn bulk_pays(rows_to_write: u64, rows_in_table: u64) -> bool {
    rows_to_write > 0
        && rows_in_table <= MOST_ROWS_IN_TABLE
        && rows_to_write.saturating_mul(ROWS_IN_TABLE_PER_ROW_WRITTEN) >= rows_in_table
}

/// Why an append takes the path it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// [`bulk_pays`] said so, from the rows to write and the rows in the table.
    Rule,
    /// `chunks` has no vector index: nothing to build once, and the batches keep their commits.
    NoVectorIndex,
    /// `--embed-no-cache`: a rolled-back bulk append would lose every vector computed, which
    /// the batches commit as they go.
    NoCache,
    /// More rows in the table than the bulk path snapshots.
    TooManyRows,
    /// The role does not own `chunks`: it may not drop the vector index nor build it.
    NotOwner,
}

/// The path of an append.
#[derive(Debug, Clone, Copy)]
pub struct Choice {
    pub bulk: bool,
    pub why: Why,
    /// Chunks the append would write, when counted.
    pub rows_to_write: Option<u64>,
    /// The file's chunks: the most it can write.
    pub file_chunks: u64,
    /// Chunks in the table (counted up to [`MOST_ROWS_IN_TABLE`] + 1).
    pub rows_in_table: u64,
}

impl Choice {
    /// The path and why, for the log and the dry run.
    pub fn describe(&self) -> String {
        let path = if self.bulk {
            "in one transaction, the vector index dropped and built once (all or nothing)"
        } else {
            "batch by batch, each committed, the vector index kept"
        };
        let in_table = if self.rows_in_table > MOST_ROWS_IN_TABLE {
            format!("more than {MOST_ROWS_IN_TABLE}")
        } else {
            self.rows_in_table.to_string()
        };
        let why = match (self.why, self.rows_to_write) {
            (Why::NoVectorIndex, _) => "chunks has no vector index".to_string(),
            (Why::NoCache, _) => {
                "--embed-no-cache: only committed batches would keep the vectors computed"
                    .to_string()
            }
            (Why::TooManyRows, _) => format!("{in_table} chunks in the table"),
            (Why::NotOwner, _) => {
                "this role does not own chunks, so it may not drop and build its vector index"
                    .to_string()
            }
            (Why::Rule, Some(write)) => {
                format!("{write} chunks to write, {in_table} in the table")
            }
            (Why::Rule, None) => format!(
                "at most {} chunks to write (the file's), {in_table} in the table",
                self.file_chunks
            ),
        };
        format!("{path}: {why}")
    }
}

/// Chooses the path of an append of a file of `file_chunks` chunks. `rows_to_write` counts
/// the file's chunks the database lacks (a lookup pass over the file); it is called only when
/// the table holds chunks and the answer could be the bulk path.
pub fn choose(
    conn: &mut PgConnection,
    file_chunks: u64,
    use_cache: bool,
    rows_to_write: impl FnOnce(&mut PgConnection) -> Result<u64>,
) -> Result<Choice> {
    let rows_in_table = chunks_in_table(conn)?;
    let mut choice = Choice {
        bulk: false,
        why: Why::Rule,
        rows_to_write: None,
        file_chunks,
        rows_in_table,
    };
    if !use_cache {
        choice.why = Why::NoCache;
    } else if rows_in_table > MOST_ROWS_IN_TABLE {
        choice.why = Why::TooManyRows;
    } else if load::vector_indexes(conn)?.is_empty() {
        // The rows that touch a vector index: none.
        choice.why = Why::NoVectorIndex;
    } else if !load::may_rebuild_vector_indexes(conn)? {
        choice.why = Why::NotOwner;
    } else if rows_in_table == 0 {
        choice.rows_to_write = Some(file_chunks);
        choice.bulk = bulk_pays(file_chunks, 0);
    } else if bulk_pays(file_chunks, rows_in_table) {
        // The file's chunks are the most it can write: only then is the count worth its pass.
        let write = rows_to_write(conn)?;
        choice.rows_to_write = Some(write);
        choice.bulk = bulk_pays(write, rows_in_table);
    }
    Ok(choice)
}

/// The chunks in the table, counted up to [`MOST_ROWS_IN_TABLE`] + 1 (past it the answer is
/// the same, and a count of every row of a large table takes a while).
fn chunks_in_table(conn: &mut PgConnection) -> Result<u64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count =
        diesel::sql_query("SELECT count(*) AS n FROM (SELECT FROM chunks LIMIT $1) c")
            .bind::<diesel::sql_types::BigInt, _>(MOST_ROWS_IN_TABLE as i64 + 1)
            .get_result(conn)
            .step("counting the chunks in the table")?;
    Ok(count.n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_pays_into_an_empty_table_and_never_for_nothing() {
        assert!(bulk_pays(1, 0));
        assert!(!bulk_pays(0, 0));
        assert!(!bulk_pays(0, 1_000));
    }

    #[test]
    fn bulk_pays_from_a_fifth_of_the_rows_there_up_to_the_snapshot_bound() {
        assert!(bulk_pays(200, 1_000));
        assert!(!bulk_pays(199, 1_000));
        assert!(bulk_pays(MOST_ROWS_IN_TABLE, MOST_ROWS_IN_TABLE));
        assert!(!bulk_pays(u64::MAX, MOST_ROWS_IN_TABLE + 1));
    }
}
