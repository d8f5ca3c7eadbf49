//! Whether the database can hold the file's text. The tool talks UTF-8 to the server; a
//! database of another encoding (LATIN1, say) refuses, at the insert, every character it
//! cannot represent, and an append would then commit some batches and fail on a later one,
//! again on every rerun. So before the first write, every character of the file beyond ASCII
//! (collected by validation, with its first place) is sent to the server once: it converts
//! them, or the restore stops (exit 2) naming the characters and where they are.

use std::collections::BTreeMap;

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::db::QueryContext;
use crate::error::invalid_input;

/// The most characters named in the error.
const NAMED: usize = 10;

/// Fails (exit 2) when the database's encoding cannot hold a character of `non_ascii`.
pub fn check(conn: &mut PgConnection, non_ascii: &BTreeMap<char, String>) -> Result<()> {
    if non_ascii.is_empty() {
        return Ok(());
    }
    #[derive(QueryableByName)]
    struct Encoding {
        #[diesel(sql_type = Text)]
        encoding: String,
    }
    let Encoding { encoding } = diesel::sql_query(
        "SELECT pg_encoding_to_char(encoding)::text AS encoding FROM pg_database \
         WHERE datname = current_database()",
    )
    .get_result(conn)
    .step("asking the database's encoding")?;
    // UTF8 holds everything; SQL_ASCII stores the bytes as they come, unconverted.
    if encoding == "UTF8" || encoding == "SQL_ASCII" {
        return Ok(());
    }
    let all: String = non_ascii.keys().collect();
    if converts(conn, &all) {
        return Ok(());
    }
    let refused: Vec<(&char, &String)> = non_ascii
        .iter()
        .filter(|(c, _)| !converts(conn, &c.to_string()))
        .collect();
    let named: Vec<String> = refused
        .iter()
        .take(NAMED)
        .map(|(c, place)| format!("{c:?} (U+{:04X}) first in {place}", u32::from(**c)))
        .collect();
    Err(invalid_input(format!(
        "the database's encoding is {encoding}, which cannot hold {} character{} of the file: {}{}; \
         nothing was written. Restore into a UTF8 database (CREATE DATABASE … ENCODING 'UTF8' \
         TEMPLATE template0), or remove those characters from the file",
        refused.len(),
        if refused.len() == 1 { "" } else { "s" },
        named.join(", "),
        if refused.len() > NAMED { ", …" } else { "" }
    )))
}

/// Whether the server converts `text` into the database's encoding.
fn converts(conn: &mut PgConnection, text: &str) -> bool {
    #[derive(QueryableByName)]
    struct Length {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[allow(dead_code)]
        length: i32,
    }
    diesel::sql_query("SELECT length($1) AS length")
        .bind::<Text, _>(text)
        .get_result::<Length>(conn)
        .is_ok()
}
