//! Progress of a long write: a bar on a terminal (analyses, chunks, embeddings per second,
//! time left), a plain line every few seconds otherwise (CI logs, `make` output), nothing
//! with `-q` or `--json`. Shared by the threads of a restore.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::output::Output;

const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    verb: &'static str,
    /// What the bar counts: "analyses" for a restore, "chunks" for a regeneration.
    unit: &'static str,
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    started: Instant,
    last_line: Mutex<Instant>,
    analyses: AtomicU64,
    chunks: AtomicU64,
    embeddings: AtomicU64,
}

impl Progress {
    /// A progress of `total` `unit`s ("analyses" or "chunks").
    pub fn new(verb: &'static str, total: u64, unit: &'static str, output: Output) -> Progress {
        let shown = output.progress_allowed();
        let terminal = shown && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{verb} {{bar:30}} {{pos}}/{{len}} {unit} · {{msg}} · {{eta}} left"
            )) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            verb,
            unit,
            bar,
            plain: shown && !terminal,
            total,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            analyses: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            embeddings: AtomicU64::new(0),
        }
    }

    /// Records vectors obtained from the provider.
    pub fn embedded(&self, vectors: u64) {
        self.embeddings.fetch_add(vectors, Ordering::Relaxed);
        self.refresh();
    }

    /// Records analyses (and their chunks) written.
    pub fn written(&self, analyses: u64, chunks: u64) {
        self.analyses.fetch_add(analyses, Ordering::Relaxed);
        self.chunks.fetch_add(chunks, Ordering::Relaxed);
        self.refresh();
    }

    /// Says what a long step without counts is doing (building an index, say).
    pub fn step(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        } else if self.plain {
            log::info!("{}: {what}", self.verb);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn refresh(&self) {
        let analyses = self.analyses.load(Ordering::Relaxed);
        let chunks = self.chunks.load(Ordering::Relaxed);
        let embeddings = self.embeddings.load(Ordering::Relaxed);
        let rate = embeddings as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let (position, message) = if self.unit == "chunks" {
            (chunks, format!("{rate:.0} embeddings/s"))
        } else {
            (
                analyses,
                format!("{chunks} chunks · {rate:.0} embeddings/s"),
            )
        };
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(message);
        } else if self.plain {
            let Ok(mut last) = self.last_line.lock() else {
                return;
            };
            if last.elapsed() >= PLAIN_LINE_EVERY {
                *last = Instant::now();
                log::info!(
                    "{}: {position}/{} {}, {message}",
                    self.verb,
                    self.total,
                    self.unit
                );
            }
        }
    }
}
