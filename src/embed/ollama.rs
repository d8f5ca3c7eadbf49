//! Ollama's `POST /api/embed`, which takes a list of inputs and answers `embeddings` in
//! input order.

use serde::{Deserialize, Serialize};

use super::args::EmbedConfig;
use super::http::JsonEndpoint;
use super::{InputKind, ModelInfo, Provider, ProviderError};

pub struct OllamaProvider {
    info: ModelInfo,
    endpoint: JsonEndpoint,
}

impl OllamaProvider {
    pub fn new(info: ModelInfo, config: &EmbedConfig) -> Self {
        OllamaProvider {
            info,
            endpoint: JsonEndpoint::new(config, "/api/embed"),
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
}

#[derive(Deserialize)]
struct Response {
    embeddings: Vec<Vec<f32>>,
}

impl Provider for OllamaProvider {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[&str], _kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError> {
        let response: Response = self.endpoint.post(&Request {
            model: &self.info.model,
            input: inputs,
        })?;
        Ok(response.embeddings)
    }
}
