//! The dataset as a BEIR folder, the layout retrieval benchmarks load (`beir`'s
//! GenericDataLoader, MTEB's retrieval tasks, ir_datasets):
//!
//! - `corpus.jsonl`: one chunk a line, `{"_id", "title", "text", "metadata"}`, the title being
//!   its analysis's, section and place in `metadata`;
//! - `queries.jsonl`: every golden query, `{"_id", "text", "metadata"}`;
//! - `qrels/test.tsv`: `query-id`, `corpus-id`, `score` (1) for each expected chunk of the
//!   scored queries, with that header line.
//!
//! Each file is written beside itself and renamed into place, so a folder is never left
//! with half a corpus.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::judgments::Judgments;
use crate::atomic;
use crate::db::QueryContext;
use crate::interrupt;
use crate::paths::{self, OutputPath};
use crate::schema::{analyses, chunks};

/// Chunks read per query, keyset by id, so memory holds one page of texts.
const CHUNKS_PER_PAGE: i64 = 2_000;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Exported {
    pub corpus: u64,
    pub queries: u64,
    pub qrels: u64,
}

/// The three files of a BEIR folder, checked before anything is written.
pub struct Folder {
    pub corpus: OutputPath,
    pub queries: OutputPath,
    pub qrels: OutputPath,
}

impl Folder {
    pub fn check(folder: &Path) -> Result<Folder> {
        Ok(Folder {
            corpus: paths::output(&folder.join("corpus.jsonl"), "BEIR corpus", &[])?,
            queries: paths::output(&folder.join("queries.jsonl"), "BEIR queries", &[])?,
            qrels: paths::output(&folder.join("qrels").join("test.tsv"), "BEIR qrels", &[])?,
        })
    }

    pub fn files(&self) -> [(&OutputPath, &'static str); 3] {
        [
            (&self.corpus, "BEIR corpus"),
            (&self.queries, "BEIR queries"),
            (&self.qrels, "BEIR qrels"),
        ]
    }
}

/// The qrels of a BEIR folder: a header, then `query-id`, `corpus-id`, `score` a line.
pub fn qrels(judgments: &Judgments) -> Result<String> {
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for query in judgments.scored() {
        // BEIR reads the file with Python's csv module: a tab or a line break would shift the
        // columns, and a quote would open a quoted field that swallows the lines after it.
        if query.id.contains(['\t', '\n', '\r', '"']) || query.id.chars().any(char::is_control) {
            return Err(crate::error::invalid_input(format!(
                "the query id {:?} holds a tab, a line break, a quote or a control character, which a \
                 BEIR qrels file cannot carry; rename the query in the backup file",
                query.id
            )));
        }
        for chunk in &query.expected {
            qrels.push_str(&format!("{}\t{chunk}\t1\n", query.id));
        }
    }
    Ok(qrels)
}

/// Writes the BEIR folder checked as `folder` (created if missing).
pub fn export(conn: &mut PgConnection, judgments: &Judgments, folder: &Folder) -> Result<Exported> {
    let (corpus_path, queries_path, qrels_path) = (&folder.corpus, &folder.queries, &folder.qrels);
    // Every refusal before the first write.
    let qrels_text = qrels(judgments)?;
    let mut exported = Exported {
        qrels: judgments.scored().map(|q| q.expected.len() as u64).sum(),
        ..Exported::default()
    };

    let titles: HashMap<Uuid, Option<String>> = analyses::table
        .select((analyses::id, analyses::title))
        .load(conn)
        .step("reading the analyses' titles")?
        .into_iter()
        .collect();
    let mut corpus = atomic::temp_file_beside(&corpus_path.target).wrap_err_with(|| {
        format!(
            "creating a temp file beside {}",
            corpus_path.shown.display()
        )
    })?;
    {
        let mut out = std::io::BufWriter::new(corpus.as_file_mut());
        let mut after: Option<Uuid> = None;
        loop {
            interrupt::check()?;
            type Row = (Uuid, Uuid, String, Option<String>, Option<String>, i32);
            let mut page = chunks::table
                .select((
                    chunks::id,
                    chunks::analysis_id,
                    chunks::content,
                    chunks::section_title,
                    chunks::section_path,
                    chunks::chunk_index,
                ))
                .order(chunks::id)
                .limit(CHUNKS_PER_PAGE)
                .into_boxed();
            if let Some(last) = after {
                page = page.filter(chunks::id.gt(last));
            }
            let rows: Vec<Row> = page.load(conn).step("reading the chunks")?;
            let Some(last) = rows.last() else { break };
            after = Some(last.0);
            for (id, analysis, content, section_title, section_path, chunk_index) in rows {
                let title = titles.get(&analysis).cloned().flatten().unwrap_or_default();
                let line = json!({
                    "_id": id,
                    "title": title,
                    "text": content,
                    "metadata": {
                        "analysis_id": analysis,
                        "section_title": section_title,
                        "section_path": section_path,
                        "chunk_index": chunk_index,
                    },
                });
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
                exported.corpus += 1;
            }
        }
        out.flush()
            .wrap_err_with(|| format!("writing {}", corpus_path.shown.display()))?;
    }

    let mut queries = String::new();
    for query in &judgments.queries {
        let line = json!({
            "_id": query.id,
            "text": query.query,
            "metadata": {"category": query.category, "difficulty": query.difficulty},
        });
        queries.push_str(&serde_json::to_string(&line)?);
        queries.push('\n');
        exported.queries += 1;
    }
    let queries_temp = atomic::write_temp_beside(&queries_path.target, queries.as_bytes())
        .wrap_err_with(|| format!("writing {}", queries_path.shown.display()))?;
    let qrels_temp = atomic::write_temp_beside(&qrels_path.target, qrels_text.as_bytes())
        .wrap_err_with(|| format!("writing {}", qrels_path.shown.display()))?;
    for (temp, path) in [
        (corpus, corpus_path),
        (queries_temp, queries_path),
        (qrels_temp, qrels_path),
    ] {
        atomic::persist(temp, &path.target)
            .wrap_err_with(|| format!("putting {} in place", path.shown.display()))?;
    }
    Ok(exported)
}
