//! `golden regenerate-embeddings`: re-embeds the chunks in the database with the configured
//! provider, after a model change (to another size too) or to fill chunks without a vector.
//! Resumable: a rerun after an interruption continues where the last one stopped.

use std::time::Instant;

use color_eyre::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::compare::embedding_column_dims;
use crate::db;
use crate::embed::cache::CachedEmbedder;
use crate::embed::EmbedArgs;
use crate::error::Exit;
use crate::interrupt;
use crate::output::{counted, Output};
use crate::progress::Progress;
use crate::regenerate::{Regeneration, Selection};
use crate::schema::chunks;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only chunks without an embedding (filled in place)
    #[arg(long)]
    pub only_missing: bool,

    /// Every chunk, even those the target model already embedded (by default those are kept)
    #[arg(long, conflicts_with = "only_missing")]
    pub all: bool,

    /// Chunks per committed step: the most work an interruption can lose
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub commit_every: u32,

    #[command(flatten)]
    pub embed: EmbedArgs,
}

#[derive(Serialize)]
struct Summary {
    chunks_embedded: u64,
    chunks_skipped: u64,
    embedding_requests: u64,
    embeddings_computed: u64,
    embeddings_reused: u64,
    provider: String,
    model: String,
    dims: usize,
    dims_changed_from: Option<i32>,
    seconds: f64,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    use diesel::prelude::*;
    let started = Instant::now();
    interrupt::install();
    let client = args.embed.client()?;
    let mut conn = db::connect(global)?;
    db::lock_dataset(&mut conn)?;
    let total: i64 = chunks::table
        .count()
        .get_result(&mut conn)
        .map_err(|e| db::explain_query_error(e, "counting chunks"))?;
    let regeneration = Regeneration {
        embedder: CachedEmbedder {
            client: &client,
            use_cache: !args.embed.embed_no_cache,
        },
        selection: if args.only_missing {
            Selection::Missing
        } else if args.all {
            Selection::All
        } else {
            Selection::NotByTarget
        },
        commit_every: args.commit_every as usize,
        column_dims: embedding_column_dims(&mut conn)?,
    };
    let progress = Progress::new("regenerate", total as u64, "chunks", output);
    let mut side = db::connect(global)?;
    let outcome = regeneration.run(&mut conn, &mut side, &progress)?;
    progress.finish();

    let info = client.info();
    if let Some(from) = outcome.dims_changed_from {
        output.line(format_args!(
            "chunks.embedding changed from {from} to {} dimensions",
            info.dims
        ))?;
    }
    output.line(format_args!(
        "re-embedded {} chunks with {info} ({} already up to date); {} computed in {}, {} from the cache, in {:.1} s",
        outcome.chunks_embedded,
        outcome.chunks_skipped,
        outcome.embeddings_computed,
        counted(client.requests(), "request", "requests"),
        outcome.embeddings_reused,
        started.elapsed().as_secs_f64()
    ))?;
    output.summary(&Summary {
        chunks_embedded: outcome.chunks_embedded,
        chunks_skipped: outcome.chunks_skipped,
        embedding_requests: client.requests(),
        embeddings_computed: outcome.embeddings_computed,
        embeddings_reused: outcome.embeddings_reused,
        provider: info.provider.to_string(),
        model: info.model.clone(),
        dims: info.dims,
        dims_changed_from: outcome.dims_changed_from,
        seconds: started.elapsed().as_secs_f64(),
    })?;
    Ok(Exit::Success)
}
