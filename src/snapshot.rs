//! What `golden load` accepts of an SQL snapshot: exactly the lines `golden dump` (pg_dump
//! `--data-only` of the three tables) writes, and nothing else.
//!
//! psql runs whatever a file holds. A snapshot that says `COMMIT;` in its middle would commit
//! the load's `DELETE` before the rest failed; one that says `\set ON_ERROR_STOP off` would
//! make a failed load look successful; `\!` runs a shell command. So the snapshot is read line
//! by line as it is fed to psql, and a line outside pg_dump's data-only grammar stops the load
//! before psql sees it: comments and blank lines, `SET name = value;`,
//! `SELECT pg_catalog.set_config(…);` and `SELECT pg_catalog.setval(…);`, pg_dump's
//! `\restrict` / `\unrestrict`, and `COPY <schema>.<analyses|chunks|artifacts> (…) FROM stdin;`
//! followed by its data up to the line `\.` (COPY data never holds a raw newline, so the data
//! ends exactly where psql's does).

use std::io::{BufRead, BufReader, Read};

/// The tables a snapshot may load.
const TABLES: [&str; 5] = [
    "analyses",
    "chunks",
    "artifacts",
    "artifact_versions",
    "dataset_extras",
];

/// The snapshot's lines (each with its newline), checked; the first line outside the grammar
/// is an error naming it, and ends the lines.
pub fn checked_lines<R: Read>(snapshot: R) -> impl Iterator<Item = Result<Vec<u8>, String>> {
    let mut reader = BufReader::with_capacity(256 * 1024, snapshot);
    let mut number = 0usize;
    let mut in_copy = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                done = true;
                return in_copy.then(|| {
                    Err(format!(
                        "the snapshot ends inside the data of a COPY (after line {number}): it is cut short"
                    ))
                });
            }
            Ok(_) => {}
            Err(e) => {
                done = true;
                return Some(Err(format!("cannot read the snapshot: {e}")));
            }
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if in_copy {
            in_copy = text != "\\.";
            return Some(Ok(line));
        }
        match statement(text) {
            Statement::Copy => in_copy = true,
            Statement::Allowed => {}
            Statement::Refused => {
                done = true;
                let shown: String = text.chars().take(80).collect();
                return Some(Err(format!(
                    "line {number} of the snapshot is not what `golden dump` writes ({shown:?}): \
                     golden loads only its own snapshots (pg_dump --data-only of analyses, chunks \
                     and artifacts)"
                )));
            }
        }
        Some(Ok(line))
    })
}

enum Statement {
    Allowed,
    Copy,
    Refused,
}

/// A line of the snapshot outside COPY data.
fn statement(line: &str) -> Statement {
    if line.trim().is_empty() || line.starts_with("--") {
        return Statement::Allowed;
    }
    if let Some(key) = line
        .strip_prefix("\\restrict ")
        .or_else(|| line.strip_prefix("\\unrestrict "))
    {
        return allowed_if(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    // One statement a line, and no other: a `;` only at its end.
    let Some(body) = line.strip_suffix(';') else {
        return Statement::Refused;
    };
    if body.contains(';') || body.contains('\\') {
        return Statement::Refused;
    }
    if let Some(setting) = body.strip_prefix("SET ") {
        let (name, value) = setting.split_once(" = ").unwrap_or(("", ""));
        return allowed_if(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && !value.is_empty(),
        );
    }
    if body.starts_with("SELECT pg_catalog.set_config(")
        || body.starts_with("SELECT pg_catalog.setval(")
    {
        return allowed_if(body.ends_with(')'));
    }
    if let Some(copy) = body.strip_prefix("COPY ") {
        let Some(target) = copy.strip_suffix(" FROM stdin") else {
            return Statement::Refused;
        };
        let table = target.split([' ', '(']).next().unwrap_or_default();
        let name = table.rsplit('.').next().unwrap_or_default();
        return if TABLES.contains(&name) {
            Statement::Copy
        } else {
            Statement::Refused
        };
    }
    Statement::Refused
}

fn allowed_if(condition: bool) -> Statement {
    if condition {
        Statement::Allowed
    } else {
        Statement::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::checked_lines;

    fn verdict(snapshot: &str) -> Result<usize, String> {
        checked_lines(snapshot.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map(|lines| lines.len())
    }

    #[test]
    fn pg_dump_data_only_passes_and_anything_else_stops_the_load() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\
                    SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
                    SELECT pg_catalog.set_config('search_path', '', false);\n\
                    COPY public.chunks (id, content) FROM stdin;\n\
                    a1\tCOMMIT; \\\\! rm -rf /\n\\.\n\n\\unrestrict abc123\n";
        assert_eq!(verdict(dump), Ok(13));
        for bad in [
            "COMMIT;\n",
            "SET a = 1; COMMIT;\n",
            "\\set ON_ERROR_STOP off\n",
            "\\echo 'golden: ready to commit'\n",
            "\\! touch /tmp/x\n",
            "\\q\n",
            "BEGIN;\n",
            "COPY public.queries (id) FROM stdin;\n\\.\n",
            "DELETE FROM chunks;\n",
            "COPY public.chunks (id) FROM stdin;\nunterminated\n",
        ] {
            assert!(verdict(bad).is_err(), "{bad:?}");
        }
    }
}
