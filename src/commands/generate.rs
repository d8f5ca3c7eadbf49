//! `golden generate` (hidden, for benchmarks): fills the database with a deterministic
//! dataset shaped like the seed's: about 4.2 chunks of about 1 KB of text per analysis, one
//! artifact each, embeddings from the built-in hash embedder. Not part of the contract.

use chrono::{Duration, TimeZone, Utc};
use color_eyre::Result;
use diesel::prelude::*;
use pgvector::Vector;
use uuid::Uuid;

use crate::cli::GlobalArgs;
use crate::db::{self, QueryContext};
use crate::embed::hash::embed_text;
use crate::error::Exit;
use crate::models::{NewAnalysis, NewArtifact, NewChunk};
use crate::output::Output;
use crate::restore::load;
use crate::schema::{analyses, artifacts, chunks};

/// Analyses written per COPY.
const BATCH: u64 = 1_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many analyses to generate
    #[arg(long)]
    pub analyses: u64,

    /// Seed of the generator: the same seed gives the same rows
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Dimension of the hash embeddings stored with the chunks (0: no embeddings)
    #[arg(long, default_value_t = 1024)]
    pub embed_dims: usize,

    /// Delete the current rows first
    #[arg(long)]
    pub replace: bool,
}

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            ((u128::from(self.next()) << 64) | u128::from(self.next())).to_le_bytes(),
        )
        .into_uuid()
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "ro", "ti", "mel", "van", "sor", "qui", "den", "lo", "mar", "pex", "tur", "ba", "ni",
    "cor", "sel", "dra", "fo", "gin", "ha", "jut", "le", "mon", "ra",
];

fn word(rng: &mut Rng) -> String {
    let syllables = 1 + rng.below(3);
    (0..syllables)
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
        .collect()
}

/// About `bytes` of sentence-like text.
fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        let words = 8 + rng.below(10);
        for i in 0..words {
            let w = word(rng);
            if i == 0 {
                let mut chars = w.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(&w);
            }
        }
        out.push_str(". ");
    }
    out.truncate(out.trim_end().len());
    out
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let mut conn = db::connect(global)?;
    let mut rng = Rng(args.seed);
    let start = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let mut totals = (0u64, 0u64);
    db::in_transaction(&mut conn, |conn| {
        if args.replace {
            diesel::sql_query("TRUNCATE chunks, artifacts, analyses, pending_embeddings")
                .execute(conn)
                .step("emptying the tables")?;
        }
        let indexes = load::drop_vector_indexes(conn)?;
        let mut written = 0;
        while written < args.analyses {
            let n = BATCH.min(args.analyses - written);
            let mut rows = Vec::new();
            for i in 0..n {
                let number = written + i;
                let id = rng.uuid();
                let created = start
                    + Duration::seconds((number * 37) as i64)
                    + Duration::microseconds(rng.below(1_000_000) as i64);
                let chunk_count = match rng.below(10) {
                    0 => 3,
                    1..=6 => 4,
                    _ => 5,
                };
                let chunk_rows: Vec<(Uuid, String, String)> = (0..chunk_count)
                    .map(|c| {
                        (
                            rng.uuid(),
                            format!("Section {}", c + 1),
                            text(&mut rng, 1_000),
                        )
                    })
                    .collect();
                let summary = text(&mut rng, 400);
                rows.push((id, number, created, chunk_rows, rng.uuid(), summary));
            }
            let titles: Vec<String> = rows
                .iter()
                .map(|r| format!("Generated document {}", r.1))
                .collect();
            let urls: Vec<String> = rows
                .iter()
                .map(|r| format!("https://bench.golden-dataset.org/doc/{}", r.1))
                .collect();
            let new_analyses: Vec<NewAnalysis> = rows
                .iter()
                .zip(titles.iter().zip(&urls))
                .map(|(r, (title, url))| NewAnalysis {
                    id: r.0,
                    url,
                    title: Some(title),
                    content_type: "article",
                    status: "completed",
                    created_at: r.2,
                    updated_at: r.2,
                    extra: serde_json::json!({}),
                })
                .collect();
            let paths: Vec<Vec<String>> = rows
                .iter()
                .zip(&titles)
                .map(|(r, title)| {
                    r.3.iter()
                        .map(|(_, section, _)| format!("{title} > {section}"))
                        .collect()
                })
                .collect();
            let mut new_chunks = Vec::new();
            for (r, paths) in rows.iter().zip(&paths) {
                for (index, ((chunk_id, section, content), path)) in
                    r.3.iter().zip(paths).enumerate()
                {
                    new_chunks.push(NewChunk {
                        id: *chunk_id,
                        analysis_id: r.0,
                        content,
                        section_title: Some(section),
                        section_path: Some(path),
                        content_type: "article",
                        chunk_index: index as i32,
                        embedding: (args.embed_dims > 0)
                            .then(|| Vector::from(embed_text(content, args.embed_dims))),
                        embedding_model: (args.embed_dims > 0).then_some(crate::embed::hash::MODEL),
                        extra: serde_json::json!({}),
                    });
                }
            }
            let new_artifacts: Vec<NewArtifact> = rows
                .iter()
                .map(|r| NewArtifact {
                    id: r.4,
                    analysis_id: r.0,
                    summary: &r.5,
                    created_at: r.2,
                    extra: serde_json::json!({}),
                    version: None,
                })
                .collect();
            diesel::copy_from(analyses::table)
                .from_insertable(&new_analyses)
                .execute(conn)
                .step("copying analyses")?;
            totals.1 += diesel::copy_from(chunks::table)
                .from_insertable(&new_chunks)
                .execute(conn)
                .step("copying chunks")? as u64;
            diesel::copy_from(artifacts::table)
                .from_insertable(&new_artifacts)
                .execute(conn)
                .step("copying artifacts")?;
            written += n;
            totals.0 = written;
        }
        load::build_indexes(conn, &indexes)?;
        Ok(())
    })?;
    output.line(format_args!(
        "generated {} analyses, {} chunks, {} artifacts",
        totals.0, totals.1, totals.0
    ))?;
    Ok(Exit::Success)
}
