//! `queries`: the golden queries and the chunks that answer them.

use diesel::prelude::*;
use uuid::Uuid;

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
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = queries)]
pub struct NewQuery<'a> {
    pub id: &'a str,
    pub query: &'a str,
    pub expected_chunk_ids: Vec<Option<Uuid>>,
    pub category: Option<&'a str>,
    pub difficulty: Option<&'a str>,
}
