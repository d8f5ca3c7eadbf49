//! OpenAI's `POST /v1/embeddings`, which every OpenAI-compatible server speaks
//! (text-embeddings-inference, vLLM, llama.cpp, LM Studio, LocalAI). The key is optional
//! for local servers; `dimensions` is sent only when the user chose a dimension, since
//! models other than text-embedding-3 reject it.

use serde::{Deserialize, Serialize};

use super::args::EmbedConfig;
use super::http::JsonEndpoint;
use super::{InputKind, ModelInfo, Provider, ProviderError};

pub struct OpenAiProvider {
    info: ModelInfo,
    endpoint: JsonEndpoint,
    send_dimensions: bool,
}

impl OpenAiProvider {
    pub fn new(info: ModelInfo, config: &EmbedConfig) -> Self {
        OpenAiProvider {
            info,
            endpoint: JsonEndpoint::new(config, "/v1/embeddings"),
            send_dimensions: config.dims_explicit,
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    input: &'a [&'a str],
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
    encoding_format: &'static str,
}

/// The response shape OpenAI and Voyage share.
#[derive(Deserialize)]
pub(super) struct EmbeddingList {
    pub data: Vec<IndexedEmbedding>,
}

#[derive(Deserialize)]
pub(super) struct IndexedEmbedding {
    pub embedding: Vec<f32>,
    pub index: Option<usize>,
}

impl Provider for OpenAiProvider {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[&str], _kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError> {
        let request = Request {
            input: inputs,
            model: &self.info.model,
            dimensions: self.send_dimensions.then_some(self.info.dims),
            encoding_format: "float",
        };
        let list: EmbeddingList = self.endpoint.post(&request)?;
        in_input_order(list.data, inputs.len(), &self.info)
    }
}

/// Puts `data` in input order by its `index` fields (servers may answer in any order); with
/// no indexes at all, the answer's order is taken as is. Duplicate or out-of-range indexes
/// are an error, as is a count that differs from the inputs'.
pub(super) fn in_input_order(
    data: Vec<IndexedEmbedding>,
    expected: usize,
    info: &ModelInfo,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let fail = |what: String| ProviderError::Fatal {
        message: format!("{info} answered {what}"),
    };
    if data.len() != expected {
        return Err(fail(format!(
            "{} vectors for {expected} inputs",
            data.len()
        )));
    }
    if data.iter().all(|item| item.index.is_none()) {
        return Ok(data.into_iter().map(|item| item.embedding).collect());
    }
    let mut ordered: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in data {
        let Some(index) = item.index else {
            return Err(fail("some vectors with an index and some without".into()));
        };
        match ordered.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            Some(Some(_)) => return Err(fail(format!("index {index} twice"))),
            None => return Err(fail(format!("index {index} for {expected} inputs"))),
        }
    }
    // Every slot is filled: `expected` distinct in-range indexes for `expected` items.
    Ok(ordered.into_iter().flatten().collect())
}
