//! Voyage AI's `POST /v1/embeddings`: documents and queries are embedded differently
//! (`input_type`), and `output_dimension` picks the size (256, 512, 1024 or 2048).

use serde::Serialize;

use super::args::EmbedConfig;
use super::http::JsonEndpoint;
use super::openai::{in_input_order, EmbeddingList};
use super::{InputKind, ModelInfo, Provider, ProviderError};

pub struct VoyageProvider {
    info: ModelInfo,
    endpoint: JsonEndpoint,
}

impl VoyageProvider {
    pub fn new(info: ModelInfo, config: &EmbedConfig) -> Self {
        VoyageProvider {
            info,
            endpoint: JsonEndpoint::new(config, "/v1/embeddings"),
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    input: &'a [&'a str],
    model: &'a str,
    input_type: &'static str,
    output_dimension: usize,
}

impl Provider for VoyageProvider {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[&str], kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError> {
        let request = Request {
            input: inputs,
            model: &self.info.model,
            input_type: match kind {
                InputKind::Document => "document",
                InputKind::Query => "query",
            },
            output_dimension: self.info.dims,
        };
        let list: EmbeddingList = self.endpoint.post(&request)?;
        in_input_order(list.data, inputs.len(), &self.info)
    }
}
