//! `golden cache stats` and `golden cache prune`: look into and trim the embedding cache.

use color_eyre::Result;
use diesel::prelude::*;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::db::{self, QueryContext};
use crate::error::Exit;
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Entries per provider, model and dimension, how many the chunks use, and the size
    Stats,
    /// Drop the entries in no use: another model, text that changed (a golden query's vector for a model of the chunks is kept)
    Prune {
        /// Drop every entry
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Serialize, QueryableByName)]
struct Group {
    #[diesel(sql_type = diesel::sql_types::Text)]
    provider: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    model: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    dims: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    used_by_chunks: i64,
}

/// The (model, dimension, input type, text hash) keys in use now: the chunks' vectors, and
/// the golden queries' vectors for each model the chunks are embedded by (what `evaluate`
/// asks for next).
const USED: &str = "WITH models AS (SELECT DISTINCT embedding_model AS model, vector_dims(embedding) AS dims \
                    FROM chunks WHERE embedding IS NOT NULL AND embedding_model IS NOT NULL) \
                    SELECT DISTINCT embedding_model AS model, vector_dims(embedding) AS dims, \
                    'document'::text AS input_type, sha256(convert_to(content, 'UTF8')) AS text_sha256 \
                    FROM chunks WHERE embedding IS NOT NULL AND embedding_model IS NOT NULL \
                    UNION SELECT m.model, m.dims, 'query'::text, sha256(convert_to(q.query, 'UTF8')) \
                    FROM models m CROSS JOIN queries q";

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let mut conn = db::connect(global)?;
    match args.action {
        Action::Stats => stats(&mut conn, output),
        Action::Prune { all } => prune(&mut conn, all, output),
    }
}

fn stats(conn: &mut PgConnection, output: Output) -> Result<Exit> {
    let groups: Vec<Group> = diesel::sql_query(format!(
        "WITH used AS ({USED}) \
         SELECT c.provider, c.model, c.dims, count(*) AS entries, \
                count(u.model) AS used_by_chunks \
         FROM embedding_cache c LEFT JOIN used u ON u.model = c.model AND u.dims = c.dims AND u.input_type = c.input_type AND u.text_sha256 = c.text_sha256 \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ))
    .load(conn)
    .step("reading the embedding cache")?;
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let size: Size = diesel::sql_query("SELECT pg_total_relation_size('embedding_cache') AS bytes")
        .get_result(conn)
        .step("measuring the embedding cache")?;
    let entries: i64 = groups.iter().map(|g| g.entries).sum();
    if groups.is_empty() {
        output.line("the embedding cache is empty")?;
    }
    for g in &groups {
        output.line(format_args!(
            "{} {} ({} dimensions): {} entries, {} in use",
            g.provider, g.model, g.dims, g.entries, g.used_by_chunks
        ))?;
    }
    output.line(format_args!(
        "{entries} entries, {:.1} MB",
        size.bytes as f64 / 1e6
    ))?;
    #[derive(Serialize)]
    struct Summary<'a> {
        entries: i64,
        bytes: i64,
        groups: &'a [Group],
    }
    output.summary(&Summary {
        entries,
        bytes: size.bytes,
        groups: &groups,
    })?;
    Ok(Exit::Success)
}

fn prune(conn: &mut PgConnection, all: bool, output: Output) -> Result<Exit> {
    let sql = if all {
        "DELETE FROM embedding_cache".to_string()
    } else {
        format!(
            "WITH used AS ({USED}) DELETE FROM embedding_cache c WHERE NOT EXISTS \
             (SELECT 1 FROM used u WHERE u.model = c.model AND u.dims = c.dims AND u.input_type = c.input_type AND u.text_sha256 = c.text_sha256)"
        )
    };
    let removed = diesel::sql_query(sql)
        .execute(conn)
        .step("pruning the embedding cache")?;
    let kept: i64 = crate::schema::embedding_cache::table
        .count()
        .get_result(conn)
        .step("counting the embedding cache")?;
    output.line(format_args!("removed {removed} entries, kept {kept}"))?;
    #[derive(Serialize)]
    struct Summary {
        removed: usize,
        kept: i64,
    }
    output.summary(&Summary { removed, kept })?;
    Ok(Exit::Success)
}
