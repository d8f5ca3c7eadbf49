//! The temp tables of one `restore --sync`, and the set-based statements on them. They hold,
//! server-side, what the sync must not keep in memory: the ids of every row of the file
//! (`sync_file`, to find what the file no longer holds), the rows to write (`sync_todo`), the
//! rows to delete (`sync_gone`), the statuses of the scope (`sync_scope`) and the analyses the
//! safety backup holds (`sync_affected`). They live in the sync's transaction and go with it.

use color_eyre::Result;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use uuid::Uuid;

use super::diff::{Change, FileRow, Kind};
use super::Scope;
use crate::db::QueryContext;
use crate::validate::Counts;

/// Rows per statement when filling a temp table.
const ROWS_PER_STATEMENT: usize = 5_000;

/// The table holding the analyses of the sync's safety backup (an `id` column).
pub const AFFECTED: &str = "sync_affected";

pub fn create(conn: &mut PgConnection, scope: &Scope) -> Result<()> {
    conn.batch_execute(
        "CREATE TEMP TABLE sync_file (kind text NOT NULL, id uuid NOT NULL, analysis_id uuid NOT NULL, \
           chunk_index int4, latest bool, status text, PRIMARY KEY (kind, id)) ON COMMIT DROP; \
         CREATE INDEX ON sync_file (analysis_id); \
         CREATE TEMP TABLE sync_todo (kind text NOT NULL, id uuid NOT NULL, fate text NOT NULL, \
           content_changed bool NOT NULL, place_changed bool NOT NULL, db_analysis_id uuid, \
           PRIMARY KEY (kind, id)) ON COMMIT DROP; \
         CREATE TEMP TABLE sync_gone (kind text NOT NULL, id uuid NOT NULL, in_versions bool NOT NULL, \
           analysis_id uuid NOT NULL, PRIMARY KEY (kind, id, in_versions)) ON COMMIT DROP; \
         CREATE TEMP TABLE sync_scope (status text PRIMARY KEY) ON COMMIT DROP; \
         CREATE TEMP TABLE sync_affected (id uuid PRIMARY KEY) ON COMMIT DROP;",
    )
    .step("creating the sync's temp tables")?;
    if let Scope::Status(status) = scope {
        diesel::sql_query("INSERT INTO sync_scope VALUES ($1)")
            .bind::<Text, _>(status)
            .execute(conn)
            .step("noting the sync's scope")?;
    }
    Ok(())
}

/// Notes the rows of a window of the file.
pub fn add_file_rows(conn: &mut PgConnection, rows: &[FileRow]) -> Result<()> {
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let kinds: Vec<&str> = part.iter().map(|row| row.kind.code()).collect();
        let ids: Vec<Uuid> = part.iter().map(|row| row.id).collect();
        let analyses: Vec<Uuid> = part.iter().map(|row| row.analysis_id).collect();
        let indexes: Vec<Option<i32>> = part.iter().map(|row| row.chunk_index).collect();
        let latest: Vec<Option<bool>> = part.iter().map(|row| row.latest).collect();
        let statuses: Vec<Option<&str>> = part.iter().map(|row| row.status.as_deref()).collect();
        diesel::sql_query(
            "INSERT INTO sync_file (kind, id, analysis_id, chunk_index, latest, status) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int4[], $5::bool[], $6::text[])",
        )
        .bind::<Array<Text>, _>(&kinds)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<SqlUuid>, _>(&analyses)
        .bind::<Array<Nullable<Integer>>, _>(&indexes)
        .bind::<Array<Nullable<Bool>>, _>(&latest)
        .bind::<Array<Nullable<Text>>, _>(&statuses)
        .execute(conn)
        .step("noting the file's rows")?;
    }
    Ok(())
}

/// Notes the rows of the file to write.
pub fn add_changes(conn: &mut PgConnection, changes: &[Change]) -> Result<()> {
    for part in changes.chunks(ROWS_PER_STATEMENT) {
        let kinds: Vec<&str> = part.iter().map(|change| change.kind.code()).collect();
        let ids: Vec<Uuid> = part.iter().map(|change| change.id).collect();
        let fates: Vec<&str> = part.iter().map(|change| change.fate.code()).collect();
        let content: Vec<bool> = part.iter().map(|change| change.content_changed).collect();
        let place: Vec<bool> = part.iter().map(|change| change.place_changed).collect();
        let owners: Vec<Option<Uuid>> = part.iter().map(|change| change.db_analysis_id).collect();
        diesel::sql_query(
            "INSERT INTO sync_todo (kind, id, fate, content_changed, place_changed, db_analysis_id) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bool[], $5::bool[], $6::uuid[])",
        )
        .bind::<Array<Text>, _>(&kinds)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Text>, _>(&fates)
        .bind::<Array<Bool>, _>(&content)
        .bind::<Array<Bool>, _>(&place)
        .bind::<Array<Nullable<SqlUuid>>, _>(&owners)
        .execute(conn)
        .step("noting the rows to write")?;
    }
    Ok(())
}

/// The SQL condition on `a` (an analysis of the database) of being in the sync's scope.
fn in_scope(scope: &Scope) -> &'static str {
    match scope {
        Scope::All => "TRUE",
        Scope::Status(_) | Scope::StatusesOfFile | Scope::Listed => {
            "a.status IN (SELECT status FROM sync_scope)"
        }
    }
}

/// Finds the rows of the scope the file does not hold: the analyses of the scope it lacks,
/// and the chunks and artifacts it lacks of the analyses of the scope or of the file. Returns
/// how many per table.
pub fn find_gone(conn: &mut PgConnection, scope: &Scope) -> Result<Counts> {
    if let Scope::StatusesOfFile = scope {
        diesel::sql_query(
            "INSERT INTO sync_scope SELECT DISTINCT status FROM sync_file WHERE kind = 'a'",
        )
        .execute(conn)
        .step("noting the statuses of the file")?;
    }
    let scope = in_scope(scope);
    let of_scope_or_file = format!(
        "({scope} OR EXISTS (SELECT 1 FROM sync_file f WHERE f.kind = 'a' AND f.id = a.id))"
    );
    let statements = [
        format!(
            "INSERT INTO sync_gone SELECT 'a', a.id, false, a.id FROM analyses a WHERE {scope} \
             AND NOT EXISTS (SELECT 1 FROM sync_file f WHERE f.kind = 'a' AND f.id = a.id)"
        ),
        format!(
            "INSERT INTO sync_gone SELECT 'c', c.id, false, c.analysis_id FROM chunks c \
             JOIN analyses a ON a.id = c.analysis_id WHERE {of_scope_or_file} \
             AND NOT EXISTS (SELECT 1 FROM sync_file f WHERE f.kind = 'c' AND f.id = c.id)"
        ),
        format!(
            "INSERT INTO sync_gone SELECT 'r', r.id, false, r.analysis_id FROM artifacts r \
             JOIN analyses a ON a.id = r.analysis_id WHERE {of_scope_or_file} \
             AND NOT EXISTS (SELECT 1 FROM sync_file f WHERE f.kind = 'r' AND f.id = r.id)"
        ),
        format!(
            "INSERT INTO sync_gone SELECT 'r', v.id, true, v.analysis_id FROM artifact_versions v \
             JOIN analyses a ON a.id = v.analysis_id WHERE {of_scope_or_file} \
             AND NOT EXISTS (SELECT 1 FROM sync_file f WHERE f.kind = 'r' AND f.id = v.id)"
        ),
    ];
    for statement in statements {
        diesel::sql_query(statement)
            .execute(conn)
            .step("finding the rows the file no longer holds")?;
    }
    let mut gone = Counts::default();
    for (kind, count) in counts_by_kind(conn, "sync_gone")? {
        match kind.as_str() {
            "a" => gone.analyses = count,
            "c" => gone.chunks = count,
            _ => gone.artifacts += count,
        }
    }
    Ok(gone)
}

fn counts_by_kind(conn: &mut PgConnection, table: &str) -> Result<Vec<(String, u64)>> {
    #[derive(QueryableByName)]
    struct KindCount {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let rows: Vec<KindCount> = diesel::sql_query(format!(
        "SELECT kind, count(*) AS count FROM {table} GROUP BY kind"
    ))
    .load(conn)
    .step("counting the sync's rows")?;
    Ok(rows
        .into_iter()
        .map(|row| (row.kind, row.count as u64))
        .collect())
}

/// Notes the analyses whose rows the sync deletes or changes, and those holding the chunks
/// that the queries it deletes or changes expect (so that the safety backup is a valid file
/// on its own). Returns how many.
pub fn find_affected(conn: &mut PgConnection, query_ids: &[String]) -> Result<u64> {
    diesel::sql_query(
        "INSERT INTO sync_affected SELECT analysis_id FROM sync_gone \
         UNION SELECT db_analysis_id FROM sync_todo WHERE fate <> 'i' AND db_analysis_id IS NOT NULL \
         ON CONFLICT DO NOTHING",
    )
    .execute(conn)
    .step("finding the analyses the sync changes")?;
    diesel::sql_query(
        "INSERT INTO sync_affected SELECT DISTINCT c.analysis_id FROM queries q \
         CROSS JOIN LATERAL unnest(q.expected_chunk_ids) AS e(chunk_id) \
         JOIN chunks c ON c.id = e.chunk_id WHERE q.id = ANY($1) ON CONFLICT DO NOTHING",
    )
    .bind::<Array<Text>, _>(query_ids)
    .execute(conn)
    .step("finding the analyses of the queries the sync changes")?;
    let affected: i64 = diesel::sql_query("SELECT count(*) AS count FROM sync_affected")
        .get_result::<Count>(conn)
        .step("counting the analyses the sync changes")?
        .count;
    Ok(affected as u64)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// The golden queries of the scope: those whose expected chunks all belong to analyses of
/// the scope, as a backup of the scope would hold them (and, for every status, those that
/// expect none). A file that lists its analyses holds
/// no query it could delete.
pub fn queries_in_scope(conn: &mut PgConnection, scope: &Scope) -> Result<Vec<String>> {
    if let Scope::Listed = scope {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let condition = in_scope(scope);
    // A query that expects no chunk belongs to no status: only a file of every status may
    // delete it.
    let expects_some = match scope {
        Scope::All => "TRUE",
        _ => "cardinality(q.expected_chunk_ids) > 0",
    };
    let rows: Vec<Id> = diesel::sql_query(format!(
        "SELECT q.id FROM queries q WHERE {expects_some} AND NOT EXISTS ( \
           SELECT 1 FROM unnest(q.expected_chunk_ids) AS e(chunk_id) \
           LEFT JOIN chunks c ON c.id = e.chunk_id LEFT JOIN analyses a ON a.id = c.analysis_id \
           WHERE a.id IS NULL OR NOT ({condition}))"
    ))
    .load(conn)
    .step("finding the golden queries of the scope")?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

/// Deletes the chunks and artifacts the file no longer holds, and takes the artifacts that
/// move out of their table, before the writes (their places are then free).
pub fn delete_gone_rows(conn: &mut PgConnection) -> Result<()> {
    for (statement, step) in [
        (
            "DELETE FROM chunks c USING sync_gone g WHERE g.kind = 'c' AND g.id = c.id",
            "deleting the chunks the file no longer holds",
        ),
        (
            "DELETE FROM artifacts r USING sync_gone g WHERE g.kind = 'r' AND NOT g.in_versions AND g.id = r.id",
            "deleting the artifacts the file no longer holds",
        ),
        (
            "DELETE FROM artifact_versions v USING sync_gone g WHERE g.kind = 'r' AND g.in_versions AND g.id = v.id",
            "deleting the older artifact versions the file no longer holds",
        ),
        (
            "DELETE FROM artifacts r USING sync_todo t WHERE t.kind = 'r' AND t.fate = 'm' AND t.id = r.id",
            "taking the artifacts that move",
        ),
        (
            "DELETE FROM artifact_versions v USING sync_todo t WHERE t.kind = 'r' AND t.fate = 'm' AND t.id = v.id",
            "taking the older artifact versions that move",
        ),
    ] {
        let deleted = diesel::sql_query(statement).execute(conn);
        deleted.map_err(|e| explain_reference(e, step))?;
    }
    Ok(())
}

/// A deletion another table's foreign key refuses: say what to do.
fn explain_reference(error: diesel::result::Error, step: &str) -> color_eyre::Report {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            color_eyre::eyre::eyre!(
                "{step}: {}; a row of another table refers to a row the file no longer holds: \
                 delete that reference first, or keep the row in the file",
                info.message()
            )
        }
        _ => crate::db::explain_query_error(error, step),
    }
}

/// Moves the chunks whose `(analysis_id, chunk_index)` changes out of the way, to indexes of
/// their analysis that neither the database nor the file uses, so that the writes that follow
/// never meet a place still held (the unique constraint is not deferrable). The free indexes
/// are the lowest ones: among the first n + k + 1 (n used, k moving) there are always k, so
/// no index past what the file already uses is needed, even next to `i32::MAX`.
pub fn park_moving_chunks(conn: &mut PgConnection) -> Result<()> {
    diesel::sql_query(
        "WITH moving AS ( \
           SELECT m.id, m.analysis_id, \
                  row_number() OVER (PARTITION BY m.analysis_id ORDER BY m.chunk_index) AS rn \
           FROM sync_todo t JOIN chunks m ON m.id = t.id \
           WHERE t.kind = 'c' AND t.place_changed), \
         per AS (SELECT analysis_id, count(*) AS k FROM moving GROUP BY analysis_id), \
         used AS ( \
           SELECT x.analysis_id, x.chunk_index AS i FROM chunks x JOIN per USING (analysis_id) \
           UNION SELECT f.analysis_id, f.chunk_index FROM sync_file f JOIN per USING (analysis_id) \
             WHERE f.kind = 'c'), \
         sizes AS (SELECT analysis_id, count(*) AS n FROM used GROUP BY analysis_id), \
         free AS ( \
           SELECT per.analysis_id, g.i::int4 AS i, \
                  row_number() OVER (PARTITION BY per.analysis_id ORDER BY g.i) AS rn \
           FROM per JOIN sizes USING (analysis_id) \
           CROSS JOIN LATERAL generate_series(0::bigint, sizes.n + per.k) AS g(i) \
           LEFT JOIN used u ON u.analysis_id = per.analysis_id AND u.i = g.i \
           WHERE u.i IS NULL) \
         UPDATE chunks c SET chunk_index = free.i FROM moving \
         JOIN free ON free.analysis_id = moving.analysis_id AND free.rn = moving.rn \
         WHERE c.id = moving.id",
    )
    .execute(conn)
    .step("moving the chunks that change place out of the way")?;
    Ok(())
}

/// Drops the vectors an interrupted regeneration left for the chunks whose text the sync
/// changed: they are vectors of the old text.
pub fn drop_pending_vectors_of_old_texts(conn: &mut PgConnection) -> Result<()> {
    diesel::sql_query(
        "DELETE FROM pending_embeddings p USING sync_todo t \
         WHERE t.kind = 'c' AND t.content_changed AND p.chunk_id = t.id",
    )
    .execute(conn)
    .step("dropping the pending vectors of old texts")?;
    Ok(())
}

/// Deletes the analyses the file no longer holds (last: a chunk of one may have moved to an
/// analysis of the file).
pub fn delete_gone_analyses(conn: &mut PgConnection) -> Result<u64> {
    let step = "deleting the analyses the file no longer holds";
    let deleted = diesel::sql_query(
        "DELETE FROM analyses a USING sync_gone g WHERE g.kind = 'a' AND g.id = a.id",
    )
    .execute(conn)
    .map_err(|e| explain_reference(e, step))?;
    Ok(deleted as u64)
}

/// The rows of the file to write among `ids`, by kind and id: their fate and whether their
/// text changed.
pub fn todo_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<(Kind, Uuid), (super::diff::Fate, bool)>> {
    #[derive(QueryableByName)]
    struct Todo {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        fate: String,
        #[diesel(sql_type = Bool)]
        content_changed: bool,
    }
    let rows: Vec<Todo> = diesel::sql_query(
        "SELECT kind, id, fate, content_changed FROM sync_todo WHERE id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .step("reading the rows to write")?;
    let mut todo = std::collections::HashMap::new();
    for row in rows {
        let kind = match row.kind.as_str() {
            "a" => Kind::Analysis,
            "c" => Kind::Chunk,
            _ => Kind::Artifact,
        };
        let fate = super::diff::Fate::from_code(&row.fate).ok_or_else(|| {
            color_eyre::eyre::eyre!("internal error: unknown fate {:?} in the sync", row.fate)
        })?;
        todo.insert((kind, row.id), (fate, row.content_changed));
    }
    Ok(todo)
}

/// Rows the sync writes or deletes: (what, table, id).
pub type Listing = Vec<(String, String, String)>;

/// Every row the sync writes or deletes, for the plan's `-v` listing, in table then id order.
pub fn listing(conn: &mut PgConnection) -> Result<Listing> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        what: String,
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        id: String,
    }
    let lines: Vec<Line> = diesel::sql_query(
        "SELECT CASE fate WHEN 'i' THEN 'insert' WHEN 'm' THEN 'move' \
                ELSE CASE WHEN content_changed THEN 'update (text)' ELSE 'update' END END AS what, \
                kind, id::text AS id FROM sync_todo \
         UNION ALL SELECT 'delete', kind, id::text FROM sync_gone ORDER BY kind, what, id",
    )
    .load(conn)
    .step("listing the rows the sync writes")?;
    Ok(lines
        .into_iter()
        .map(|line| {
            let table = match line.kind.as_str() {
                "a" => "analysis",
                "c" => "chunk",
                _ => "artifact",
            };
            (line.what, table.to_string(), line.id)
        })
        .collect())
}
