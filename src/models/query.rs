//! `queries`: the golden queries and the chunks that answer them.

use std::collections::HashSet;

use color_eyre::Result;
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::record::BackupQuery;
use crate::db::QueryContext;
use crate::schema::queries;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = queries)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Query {
    pub id: String,
    pub query: String,
    /// PostgreSQL array elements may be NULL; the migration never stores one.
    pub expected_chunk_ids: Vec<Option<Uuid>>,
    pub category: Option<String>,
    pub difficulty: Option<String>,
    /// The keys of the query's record that golden maps to no column (a JSON object).
    pub extra: serde_json::Value,
    /// Expected chunks named by a reference that matched no chunk (kept as written).
    pub unresolved_expected_chunks: Vec<Option<String>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = queries)]
pub struct NewQuery<'a> {
    pub id: &'a str,
    pub query: &'a str,
    pub expected_chunk_ids: Vec<Option<Uuid>>,
    pub category: Option<&'a str>,
    pub difficulty: Option<&'a str>,
    pub extra: serde_json::Value,
    pub unresolved_expected_chunks: Vec<Option<&'a str>>,
}

impl<'a> NewQuery<'a> {
    /// The row of a backup file's query.
    pub fn from_backup(query: &'a BackupQuery) -> Self {
        NewQuery {
            id: &query.id,
            query: &query.query,
            expected_chunk_ids: query.expected_chunk_ids.iter().copied().map(Some).collect(),
            category: query.category.as_deref(),
            difficulty: query.difficulty.as_deref(),
            extra: serde_json::Value::Object(query.extra.clone()),
            unresolved_expected_chunks: query
                .unresolved_expected_chunks
                .iter()
                .map(|reference| Some(reference.as_str()))
                .collect(),
        }
    }
}

/// The queries a backup of `status` (`None`: every analysis) holds, and those it leaves out.
pub struct ForBackup {
    /// In byte order of their ids.
    pub queries: Vec<BackupQuery>,
    /// The queries expecting a chunk outside the backup (another status, or deleted).
    pub left_out: Vec<BackupQuery>,
}

/// Reads every query (few: read whole) and sorts out those whose expected chunks are not all
/// in a backup of `status`. Byte order, not the database's collation: the same data gives the
/// same file everywhere.
pub fn for_backup(conn: &mut PgConnection, status: Option<&str>) -> Result<ForBackup> {
    #[derive(QueryableByName)]
    struct Orphan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let all: Vec<Query> = queries::table
        .select(Query::as_select())
        .order(sql::<diesel::sql_types::Text>("queries.id COLLATE \"C\""))
        .load(conn)
        .step("reading the golden queries")?;
    let orphans: Vec<Orphan> = diesel::sql_query(
        "SELECT DISTINCT q.id FROM queries q, unnest(q.expected_chunk_ids) AS e(chunk_id) \
         LEFT JOIN chunks c ON c.id = e.chunk_id LEFT JOIN analyses a ON a.id = c.analysis_id \
         WHERE a.id IS NULL OR ($1::text IS NOT NULL AND a.status <> $1)",
    )
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(status)
    .load(conn)
    .step("checking the queries' expected chunks")?;
    let orphans: HashSet<String> = orphans.into_iter().map(|orphan| orphan.id).collect();
    let (left_out, queries) = all
        .into_iter()
        .map(BackupQuery::from)
        .partition(|query| orphans.contains(&query.id));
    Ok(ForBackup { queries, left_out })
}

/// The queries `ids` for a backup of the analyses listed in `table` (a table of the session
/// with an `id` column), and those of them it leaves out (expecting a chunk of another
/// analysis).
pub fn for_listed_backup(
    conn: &mut PgConnection,
    table: &str,
    ids: &[String],
) -> Result<ForBackup> {
    #[derive(QueryableByName)]
    struct Orphan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let listed: Vec<Query> = queries::table
        .filter(queries::id.eq_any(ids))
        .select(Query::as_select())
        .order(sql::<diesel::sql_types::Text>("queries.id COLLATE \"C\""))
        .load(conn)
        .step("reading the golden queries")?;
    let orphans: Vec<Orphan> = diesel::sql_query(format!(
        "SELECT DISTINCT q.id FROM queries q, unnest(q.expected_chunk_ids) AS e(chunk_id) \
         LEFT JOIN chunks c ON c.id = e.chunk_id \
         WHERE q.id = ANY($1) AND (c.id IS NULL OR c.analysis_id NOT IN (SELECT id FROM {table}))"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(ids)
    .load(conn)
    .step("checking the queries' expected chunks")?;
    let orphans: HashSet<String> = orphans.into_iter().map(|orphan| orphan.id).collect();
    let (left_out, queries) = listed
        .into_iter()
        .map(BackupQuery::from)
        .partition(|query| orphans.contains(&query.id));
    Ok(ForBackup { queries, left_out })
}
