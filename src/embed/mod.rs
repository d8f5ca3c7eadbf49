//! Embedding providers behind one small trait, and the client that batches, parallelises,
//! retries and checks their answers.
//!
//! A provider makes exactly one request for the inputs it is given and classifies what went
//! wrong; everything else (batch sizes, retries with backoff, splitting a batch the server
//! finds too large, running requests in parallel, checking every vector) lives once in
//! [`client::EmbeddingClient`], so each provider stays a page of protocol code.

pub mod args;
pub mod cache;
pub mod client;
pub mod hash;
mod http;
pub mod local;
pub mod ollama;
pub mod openai;
pub mod voyage;

use std::fmt;
use std::time::Duration;

pub use args::{EmbedArgs, ProviderKind};
pub use client::EmbeddingClient;

/// Whether the texts are documents to store or queries to search with; Voyage embeds them
/// differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Document,
    Query,
}

impl InputKind {
    /// The `embedding_cache.input_type` of a vector made for this kind of input.
    pub fn cache_key(self) -> &'static str {
        match self {
            InputKind::Document => "document",
            InputKind::Query => "query",
        }
    }
}

/// Which provider, model and dimension a vector comes from: the identity of an embedding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub provider: ProviderKind,
    pub model: String,
    pub dims: usize,
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} model {} ({} dimensions)",
            self.provider, self.model, self.dims
        )
    }
}

/// One request to a provider.
pub trait Provider: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Embeds `inputs` in one request and returns one vector per input, in input order
    /// (the provider reorders by the indexes its protocol carries).
    fn embed(&self, inputs: &[&str], kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError>;
}

/// What went wrong with one request, classified for the retry logic.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderError {
    /// Worth retrying: 429, 5xx, a timeout, a dropped connection.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server rejected the request as too large (413, or a batch-size error): split it.
    TooLarge { message: String },
    /// Retrying will not help: a refused key, a missing model, a malformed answer.
    Fatal { message: String },
    /// An interruption came while the request was in flight; the request was left behind.
    Interrupted,
}

impl ProviderError {
    pub fn message(&self) -> &str {
        match self {
            ProviderError::Transient { message, .. }
            | ProviderError::TooLarge { message }
            | ProviderError::Fatal { message } => message,
            ProviderError::Interrupted => "interrupted",
        }
    }
}
