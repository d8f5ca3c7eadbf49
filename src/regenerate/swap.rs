//! Swapping the pending vectors into `chunks`, in one transaction.
//!
//! Why not `UPDATE chunks … FROM pending_embeddings`: until the transaction ends, the old
//! version of every updated row stays in the table, and an index built in the same
//! transaction indexes those too (another transaction might still see them). The HNSW build,
//! most of the swap's time, would insert every vector twice. So the rows are copied aside with
//! their new vectors into a temporary table, checked, and written back into `chunks` after a
//! `TRUNCATE` (a new, empty file): the index is then built over live rows only, as after a
//! `restore --replace`, and the table is left without dead rows to vacuum. Every check runs
//! before the truncation, and a failure anywhere rolls all of it back.

use color_eyre::eyre::bail;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::{self, quote_identifier, QueryContext};
use crate::restore::load;

/// The temporary table holding every chunk row with its new vector, dropped at commit.
const ASIDE: &str = "golden_regenerated";

/// What the swap will change, counted on the rows set aside.
#[derive(QueryableByName)]
struct Plan {
    /// Chunks that get a new vector.
    #[diesel(sql_type = BigInt)]
    replaced: i64,
    /// Chunks that keep their vector: up to date, or their text changed since it was embedded.
    #[diesel(sql_type = BigInt)]
    kept: i64,
    /// Chunks whose vector (new or kept) is not of the target dimension.
    #[diesel(sql_type = BigInt)]
    wrong_size: i64,
}

/// Replaces the vectors of the chunks that have a pending one made from their current text,
/// changing the column's dimension first when `changes_dims`, and builds the vector indexes
/// once. Returns how many chunks got a new vector.
pub fn swap_in(conn: &mut PgConnection, dims: usize, changes_dims: bool) -> Result<u64> {
    db::in_transaction(conn, |conn| {
        diesel::sql_query("LOCK TABLE chunks, pending_embeddings IN ACCESS EXCLUSIVE MODE")
            .execute(conn)
            .step("locking chunks")?;
        let pending: i64 = crate::schema::pending_embeddings::table
            .count()
            .get_result(conn)
            .step("counting pending vectors")?;
        if pending == 0 && !changes_dims {
            return Ok(0);
        }
        let columns = chunk_columns(conn)?;
        set_aside(conn, &columns, dims)?;
        let plan = plan(conn, dims)?;
        if changes_dims && plan.kept > 0 {
            bail!(
                "{} chunks would be left without a vector of {dims} dimensions (their text \
                 changed during the run); nothing changed: run regenerate-embeddings again",
                plan.kept
            );
        }
        if plan.wrong_size > 0 {
            bail!(
                "{} chunks hold a vector that is not of {dims} dimensions; nothing changed",
                plan.wrong_size
            );
        }
        let indexes = load::drop_vector_indexes(conn)?;
        diesel::sql_query("TRUNCATE chunks, pending_embeddings")
            .execute(conn)
            .step("emptying chunks to write its rows back with the new vectors")?;
        if changes_dims {
            diesel::sql_query(format!(
                "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dims}) USING NULL"
            ))
            .execute(conn)
            .step("changing the dimension of chunks.embedding")?;
        }
        let list = columns
            .iter()
            .map(|column| quote_identifier(column))
            .collect::<Vec<_>>()
            .join(", ");
        diesel::sql_query(format!(
            "INSERT INTO chunks ({list}) OVERRIDING SYSTEM VALUE \
             SELECT {list} FROM {ASIDE} ORDER BY golden_position"
        ))
        .execute(conn)
        .step("writing the chunks back with their new vectors")?;
        load::build_indexes(conn, &indexes)?;
        Ok(plan.replaced as u64)
    })
}

/// The columns of `chunks` an INSERT can write, in table order: all of them, including any a
/// team added, so writing the rows back loses nothing.
fn chunk_columns(conn: &mut PgConnection) -> Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        attname: String,
    }
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT attname::text AS attname FROM pg_attribute \
         WHERE attrelid = 'chunks'::regclass AND attnum > 0 AND NOT attisdropped \
         AND attgenerated = '' ORDER BY attnum",
    )
    .load(conn)
    .step("listing the columns of chunks")?;
    Ok(columns.into_iter().map(|column| column.attname).collect())
}

/// Copies every chunk row into the temporary table, with its pending vector and model where
/// one was made from the chunk's current text, and its position in the table.
fn set_aside(conn: &mut PgConnection, columns: &[String], dims: usize) -> Result<()> {
    let select = columns
        .iter()
        .map(|column| match column.as_str() {
            "embedding" => "CASE WHEN p.chunk_id IS NULL THEN c.embedding ELSE p.embedding END \
                            AS embedding"
                .to_string(),
            "embedding_model" => "CASE WHEN p.chunk_id IS NULL THEN c.embedding_model \
                                  ELSE p.model END AS embedding_model"
                .to_string(),
            other => format!("c.{}", quote_identifier(other)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    diesel::sql_query(format!(
        "CREATE TEMPORARY TABLE {ASIDE} ON COMMIT DROP AS \
         SELECT {select}, p.chunk_id IS NOT NULL AS golden_replaced, c.ctid AS golden_position \
         FROM chunks c LEFT JOIN pending_embeddings p ON p.chunk_id = c.id AND p.dims = {dims} \
         AND p.text_sha256 = sha256(convert_to(c.content, 'UTF8'))"
    ))
    .execute(conn)
    .step("setting the chunks aside with their new vectors")?;
    Ok(())
}

fn plan(conn: &mut PgConnection, dims: usize) -> Result<Plan> {
    diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE golden_replaced) AS replaced, \
         count(*) FILTER (WHERE NOT golden_replaced) AS kept, \
         count(*) FILTER (WHERE vector_dims(embedding) <> {dims}) AS wrong_size \
         FROM {ASIDE}"
    ))
    .get_result(conn)
    .step("checking the new vectors")
}
