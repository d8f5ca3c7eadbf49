//! Swapping the pending vectors into `chunks`, in one transaction.
//!
//! Why not simply `UPDATE chunks … FROM pending_embeddings`: until the transaction ends, the
//! old version of every updated row stays in the table, and an index built in the same
//! transaction indexes those too (another transaction might still see them). The HNSW build,
//! most of the swap's time, would insert every vector twice. So the rows are copied aside with
//! their new vectors into a temporary table, checked, and written back into `chunks` after a
//! `TRUNCATE` (a new, empty file): the index is then built over live rows only, as after a
//! `restore --replace`, and the table is left without dead rows to vacuum.
//!
//! Writing the rows back is only safe when nothing else hangs on them: a table with a foreign
//! key to `chunks` makes `TRUNCATE` fail, and triggers on `chunks` would see every row deleted
//! and inserted again. Then the vectors are updated in place, the slower way. Either way every
//! check runs before the first change, and a failure anywhere rolls all of it back.

use color_eyre::eyre::bail;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use crate::db::{self, quote_identifier, QueryContext};
use crate::restore::load;

/// The temporary table holding every chunk row with its new vector, dropped at commit.
const ASIDE: &str = "golden_regenerated";
/// Its two columns of its own, named so that no column of `chunks` clashes with them.
const REPLACED: &str = "golden_regenerate__replaced";
const POSITION: &str = "golden_regenerate__position";

/// What the swap will change.
#[derive(QueryableByName)]
struct Plan {
    /// Chunks that get a new vector.
    #[diesel(sql_type = BigInt)]
    replaced: i64,
    /// Chunks that keep their vector: up to date, or edited or added since the run read them.
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
    db::in_final_transaction(conn, |conn| {
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
        let in_place = rewrite_blocker(conn)?;
        let plan = match &in_place {
            None => {
                let columns = chunk_columns(conn)?;
                diesel::sql_query(format!(
                    "CREATE TEMPORARY TABLE {ASIDE} ON COMMIT DROP AS {}",
                    regenerated_rows(&columns, dims)
                ))
                .execute(conn)
                .step("setting the chunks aside with their new vectors")?;
                let plan = plan(conn, ASIDE, dims)?;
                check(&plan, dims, changes_dims)?;
                let indexes = load::drop_vector_indexes(conn)?;
                write_back(conn, &columns, dims, changes_dims)?;
                load::build_indexes(conn, &indexes)?;
                plan
            }
            Some(reason) => {
                log::info!(
                    "{reason}: updating the vectors in place (the index build takes longer)"
                );
                let rows = format!("({}) AS regenerated", regenerated_rows(&[], dims));
                let plan = plan(conn, &rows, dims)?;
                check(&plan, dims, changes_dims)?;
                let indexes = load::drop_vector_indexes(conn)?;
                update_in_place(conn, dims, changes_dims)?;
                load::build_indexes(conn, &indexes)?;
                plan
            }
        };
        Ok(plan.replaced as u64)
    })
}

/// Why the rows cannot be written back (`None`: they can).
fn rewrite_blocker(conn: &mut PgConnection) -> Result<Option<String>> {
    #[derive(QueryableByName)]
    struct Dependents {
        #[diesel(sql_type = Nullable<Text>)]
        referenced_by: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        triggers: Option<String>,
    }
    let found: Dependents = diesel::sql_query(
        "SELECT (SELECT string_agg(conrelid::regclass::text, ', ') FROM pg_constraint \
                 WHERE contype = 'f' AND confrelid = 'chunks'::regclass \
                 AND conrelid <> 'pending_embeddings'::regclass) AS referenced_by, \
                (SELECT string_agg(tgname::text, ', ') FROM pg_trigger \
                 WHERE tgrelid = 'chunks'::regclass AND NOT tgisinternal) AS triggers",
    )
    .get_result(conn)
    .step("looking for tables and triggers that depend on chunks")?;
    Ok(match (found.referenced_by, found.triggers) {
        (Some(tables), _) => Some(format!("{tables} references chunks")),
        (None, Some(triggers)) => Some(format!("chunks has triggers ({triggers})")),
        (None, None) => None,
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

/// Every chunk row with `columns`, its pending vector and model where one was made from the
/// chunk's current text (else its own), whether it was replaced, and its position in the
/// table. The vector comes as `embedding` whether or not `columns` lists it.
fn regenerated_rows(columns: &[String], dims: usize) -> String {
    let embedding =
        "CASE WHEN p.chunk_id IS NULL THEN c.embedding ELSE p.embedding END AS embedding";
    let mut select: Vec<String> = columns
        .iter()
        .filter(|column| column.as_str() != "embedding")
        .map(|column| match column.as_str() {
            "embedding_model" => "CASE WHEN p.chunk_id IS NULL THEN c.embedding_model \
                                  ELSE p.model END AS embedding_model"
                .to_string(),
            other => format!("c.{}", quote_identifier(other)),
        })
        .collect();
    select.push(embedding.to_string());
    format!(
        "SELECT {}, p.chunk_id IS NOT NULL AS {REPLACED}, c.ctid AS {POSITION} \
         FROM chunks c LEFT JOIN pending_embeddings p ON p.chunk_id = c.id AND p.dims = {dims} \
         AND p.text_sha256 = sha256(convert_to(c.content, 'UTF8'))",
        select.join(", ")
    )
}

/// Counts what the swap will change in `rows` (a table or a subquery of [`regenerated_rows`]).
fn plan(conn: &mut PgConnection, rows: &str, dims: usize) -> Result<Plan> {
    diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE {REPLACED}) AS replaced, \
         count(*) FILTER (WHERE NOT {REPLACED}) AS kept, \
         count(*) FILTER (WHERE vector_dims(embedding) <> {dims}) AS wrong_size \
         FROM {rows}"
    ))
    .get_result(conn)
    .step("checking the new vectors")
}

fn check(plan: &Plan, dims: usize, changes_dims: bool) -> Result<()> {
    if changes_dims && plan.kept > 0 {
        bail!(
            "{} chunks would be left without a vector of {dims} dimensions (edited or added \
             while the run went on); nothing changed: run regenerate-embeddings again",
            plan.kept
        );
    }
    if plan.wrong_size > 0 {
        bail!(
            "{} chunks hold a vector that is not of {dims} dimensions; nothing changed: run \
             regenerate-embeddings again",
            plan.wrong_size
        );
    }
    Ok(())
}

/// Empties `chunks` and writes the rows set aside back, in their order.
fn write_back(
    conn: &mut PgConnection,
    columns: &[String],
    dims: usize,
    changes_dims: bool,
) -> Result<()> {
    diesel::sql_query("TRUNCATE chunks, pending_embeddings")
        .execute(conn)
        .step("emptying chunks to write its rows back with the new vectors")?;
    if changes_dims {
        change_dims(conn, dims)?;
    }
    let list = columns
        .iter()
        .map(|column| quote_identifier(column))
        .collect::<Vec<_>>()
        .join(", ");
    diesel::sql_query(format!(
        "INSERT INTO chunks ({list}) OVERRIDING SYSTEM VALUE \
         SELECT {list} FROM {ASIDE} ORDER BY {POSITION}"
    ))
    .execute(conn)
    .step("writing the chunks back with their new vectors")?;
    Ok(())
}

/// The slower way, for a `chunks` that other tables or triggers depend on.
fn update_in_place(conn: &mut PgConnection, dims: usize, changes_dims: bool) -> Result<()> {
    if changes_dims {
        change_dims(conn, dims)?;
    }
    diesel::sql_query(
        "UPDATE chunks SET embedding = p.embedding, embedding_model = p.model \
         FROM pending_embeddings p WHERE chunks.id = p.chunk_id \
         AND sha256(convert_to(chunks.content, 'UTF8')) = p.text_sha256",
    )
    .execute(conn)
    .step("copying the new vectors into chunks")?;
    diesel::sql_query("TRUNCATE pending_embeddings")
        .execute(conn)
        .step("clearing the pending vectors")?;
    Ok(())
}

/// On an empty table (after `write_back`'s TRUNCATE) this is instant; in place, every vector
/// becomes NULL until the new ones are copied in (the plan checked that every chunk has one).
fn change_dims(conn: &mut PgConnection, dims: usize) -> Result<()> {
    diesel::sql_query(format!(
        "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dims}) USING NULL"
    ))
    .execute(conn)
    .step("changing the dimension of chunks.embedding")?;
    Ok(())
}
