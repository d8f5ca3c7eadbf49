//! Turns many texts into vectors through one provider: requests of at most `batch_size`
//! inputs, at most `concurrency` of them in flight on a rayon pool of that many threads,
//! each retried with exponential backoff and jitter (honouring `Retry-After`) on transient
//! failures, split when the server finds it too large, and every answer checked: one vector
//! per input, in input order, of the expected dimension, finite numbers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use color_eyre::eyre::eyre;
use color_eyre::Result;
use rayon::prelude::*;

use super::args::{EmbedConfig, ProviderKind};
use super::{InputKind, ModelInfo, Provider, ProviderError};
use crate::interrupt;

/// The first retry waits about this long; each next one twice as long.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured as given.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

pub struct EmbeddingClient {
    provider: Box<dyn Provider>,
    batch_size: usize,
    concurrency: usize,
    max_retries: u32,
    dims_explicit: bool,
    pool: rayon::ThreadPool,
    /// Learned from the server: the largest batch it accepted after refusing a larger one.
    accepted_batch: AtomicUsize,
    requests: AtomicU64,
}

impl EmbeddingClient {
    pub fn new(provider: Box<dyn Provider>, config: &EmbedConfig) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.concurrency.max(1))
            .thread_name(|i| format!("golden-embed-{i}"))
            .build()
            .map_err(|e| eyre!("starting {} embedding threads: {e}", config.concurrency))?;
        Ok(EmbeddingClient {
            provider,
            batch_size: config.batch_size.max(1),
            concurrency: config.concurrency.max(1),
            max_retries: config.max_retries,
            dims_explicit: config.dims_explicit,
            pool,
            accepted_batch: AtomicUsize::new(usize::MAX),
            requests: AtomicU64::new(0),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        self.provider.info()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Requests sent so far (retries and split halves included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Embeds `texts`, returning one vector per text in the same order.
    pub fn embed_all(&self, texts: &[&str], kind: InputKind) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batches: Vec<Vec<Vec<f32>>> = self.pool.install(|| {
            texts
                .par_chunks(self.batch_size)
                .map(|batch| self.embed_batch(batch, kind))
                .collect::<Result<_>>()
        })?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// One batch: within the size the server accepts, retried, split when too large.
    fn embed_batch(&self, inputs: &[&str], kind: InputKind) -> Result<Vec<Vec<f32>>> {
        let accepted = self.accepted_batch.load(Ordering::Relaxed);
        if inputs.len() > accepted {
            let mut vectors = Vec::with_capacity(inputs.len());
            for part in inputs.chunks(accepted) {
                vectors.extend(self.embed_batch(part, kind)?);
            }
            return Ok(vectors);
        }
        let mut attempt = 0;
        loop {
            interrupt::check()?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self
                .provider
                .embed(inputs, kind)
                .and_then(|vectors| self.checked(vectors, inputs.len()));
            match answer {
                Ok(vectors) => return Ok(vectors),
                Err(ProviderError::TooLarge { message }) if inputs.len() > 1 => {
                    let half = inputs.len().div_ceil(2);
                    self.accepted_batch.fetch_min(half, Ordering::Relaxed);
                    log::warn!(
                        "{message}; splitting the {} inputs into requests of {half}",
                        inputs.len()
                    );
                    let (first, second) = inputs.split_at(half);
                    let mut vectors = self.embed_batch(first, kind)?;
                    vectors.extend(self.embed_batch(second, kind)?);
                    return Ok(vectors);
                }
                Err(ProviderError::Transient {
                    message,
                    retry_after,
                }) if attempt < self.max_retries => {
                    let delay = backoff(attempt, retry_after);
                    attempt += 1;
                    log::warn!(
                        "{message}; retry {attempt} of {} in {:.1} s",
                        self.max_retries,
                        delay.as_secs_f64()
                    );
                    interrupt::sleep(delay)?;
                }
                Err(ProviderError::Transient { message, .. }) => {
                    return Err(eyre!(
                        "{message}; gave up after {} (--embed-max-retries sets how many)",
                        crate::output::counted(self.max_retries.into(), "retry", "retries")
                    ));
                }
                Err(ProviderError::Interrupted) => {
                    return Err(color_eyre::Report::new(interrupt::Interrupted))
                }
                Err(error) => return Err(eyre!("{}", error.message())),
            }
        }
    }

    /// One vector per input, of the expected dimension, finite numbers.
    fn checked(
        &self,
        vectors: Vec<Vec<f32>>,
        inputs: usize,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let info = self.info();
        let fail = |what: String| ProviderError::Fatal {
            message: format!("{info} answered {what}"),
        };
        if vectors.len() != inputs {
            return Err(fail(format!(
                "{} vectors for {inputs} inputs",
                vectors.len()
            )));
        }
        for (position, vector) in vectors.iter().enumerate() {
            if vector.len() != info.dims {
                let hint = if info.provider == ProviderKind::Openai && !self.dims_explicit {
                    format!("; pass --embed-dims {} to ask the server for that size, or set --embed-dims to the model's", info.dims)
                } else {
                    "; set --embed-dims to the model's size".to_string()
                };
                return Err(fail(format!(
                    "a vector of {} dimensions for input {position}, expected {}{hint}",
                    vector.len(),
                    info.dims
                )));
            }
            if let Some(bad) = vector.iter().find(|value| !value.is_finite()) {
                return Err(fail(format!(
                    "a vector with the number {bad} for input {position}"
                )));
            }
        }
        Ok(vectors)
    }
}

/// How long to wait before retry number `attempt + 1`: the server's `Retry-After` when it
/// gave one, else exponential backoff with jitter (half to full of the doubled delay).
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(RETRY_AFTER_CAP);
    }
    let full = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(BACKOFF_CAP);
    full.mul_f64(0.5 + 0.5 * jitter())
}

/// A number in [0, 1) that differs between threads and calls; only for spreading retries.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 0..4 {
            let delay = backoff(attempt, None);
            let full = BACKOFF_BASE * 2u32.pow(attempt);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
        assert!(backoff(20, None) <= BACKOFF_CAP);
        assert_eq!(
            backoff(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(9999))), RETRY_AFTER_CAP);
    }
}
