//! The built-in offline embedder: signed feature hashing of word unigrams and bigrams,
//! L2-normalised. A real lexical embedding (texts sharing words and word pairs are close),
//! deterministic across machines and versions, of any dimension, with no model to download:
//! for demos, tests and local resets without an API.

use super::{InputKind, ModelInfo, Provider, ProviderError};

/// The name recorded in `chunks.embedding_model`; bump it if the algorithm ever changes.
pub const MODEL: &str = "golden-hash-v1";

/// Words too common to say anything about a text.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "that", "the", "this", "to", "with",
];

pub struct HashProvider {
    info: ModelInfo,
}

impl HashProvider {
    pub fn new(info: ModelInfo) -> Self {
        HashProvider { info }
    }
}

impl Provider for HashProvider {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, inputs: &[&str], _kind: InputKind) -> Result<Vec<Vec<f32>>, ProviderError> {
        Ok(inputs
            .iter()
            .map(|text| embed_text(text, self.info.dims))
            .collect())
    }
}

/// The embedding of one text.
pub fn embed_text(text: &str, dims: usize) -> Vec<f32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && !STOPWORDS.contains(word))
        .collect();
    let mut vector = vec![0f32; dims];
    let mut add = |feature: &[&[u8]], weight: f32| {
        let hash = hash_feature(feature);
        let slot = (hash % dims as u64) as usize;
        let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
        vector[slot] += sign * weight;
    };
    for word in &words {
        add(&[b"w:", word.as_bytes()], 1.0);
    }
    for pair in words.windows(2) {
        add(&[b"b:", pair[0].as_bytes(), b" ", pair[1].as_bytes()], 0.5);
    }
    if words.is_empty() {
        // Punctuation or nothing: still a unit vector (a zero vector has no cosine distance).
        add(&[b"t:", lower.as_bytes()], 1.0);
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// FNV-1a over the parts, then splitmix64's finaliser so every bit depends on every byte.
fn hash_feature(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &byte in *part {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::embed_text;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn unit_vectors_that_put_shared_words_close() {
        let query = embed_text("How does HNSW build its graph?", 1024);
        let near = embed_text("The HNSW index builds a layered graph of vectors.", 1024);
        let far = embed_text("Cargo resolves semantic version requirements.", 1024);
        assert!((cosine(&query, &query) - 1.0).abs() < 1e-5);
        assert!(cosine(&query, &near) > cosine(&query, &far) + 0.1);
        assert_eq!(embed_text("same text", 256), embed_text("same text", 256));
        assert_eq!(
            embed_text("", 8).iter().map(|v| v * v).sum::<f32>().round(),
            1.0
        );
        assert_eq!(embed_text("x", 3).len(), 3);
    }

    #[test]
    fn stable_across_versions() {
        // The exact values are part of the contract of `golden-hash-v1`: a change here means
        // stored vectors no longer match new ones, and the model name must change with it.
        let v = embed_text("golden dataset", 8);
        let rounded: Vec<i32> = v.iter().map(|x| (x * 1000.0).round() as i32).collect();
        assert_eq!(rounded, HASH_V1_GOLDEN_DATASET_8);
    }

    const HASH_V1_GOLDEN_DATASET_8: [i32; 8] = [-333, 0, 0, 0, 0, -667, 0, -667];
}
