//! The embedding options every embedding command shares (CONTRACT.md), their per-provider
//! defaults, and the checks that turn them into a ready provider.

use std::fmt;
use std::time::Duration;

use color_eyre::Result;

use super::local::{self, LocalProvider};
use super::{client::EmbeddingClient, ModelInfo, Provider};
use super::{
    hash::HashProvider, ollama::OllamaProvider, openai::OpenAiProvider, voyage::VoyageProvider,
};
use crate::error::invalid_input;

/// The longest `--embed-timeout`: durations past it are a typing error, and far larger ones
/// overflow the HTTP stack's clock arithmetic.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// The vector size when none is configured, as in CONTRACT.md.
pub const DEFAULT_DIMS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// Voyage AI
    Voyage,
    /// OpenAI or any OpenAI-compatible server (text-embeddings-inference, vLLM, llama.cpp, LM Studio, LocalAI)
    Openai,
    /// Ollama
    Ollama,
    /// Built in, offline, deterministic: feature hashing of words and word pairs
    Hash,
    /// Built in, offline: all-MiniLM-L6-v2 run in this process (384 dimensions; `make model` fetches it)
    Local,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Voyage => "voyage",
            ProviderKind::Openai => "openai",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Hash => "hash",
            ProviderKind::Local => "local",
        })
    }
}

impl ProviderKind {
    fn default_url(self) -> &'static str {
        match self {
            ProviderKind::Voyage => "https://api.voyageai.com",
            ProviderKind::Openai => "https://api.openai.com",
            ProviderKind::Ollama => "http://127.0.0.1:11434",
            ProviderKind::Hash | ProviderKind::Local => "",
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            ProviderKind::Voyage => "voyage-3.5",
            ProviderKind::Openai => "text-embedding-3-small",
            ProviderKind::Ollama => "mxbai-embed-large",
            ProviderKind::Hash => super::hash::MODEL,
            ProviderKind::Local => super::local::MODEL,
        }
    }

    /// Inputs per request when the user does not say.
    fn default_batch_size(self) -> usize {
        match self {
            ProviderKind::Voyage | ProviderKind::Openai => 128,
            ProviderKind::Ollama => 32,
            ProviderKind::Hash => 256,
            // Split again into micro-batches of similar length inside the provider.
            ProviderKind::Local => 32,
        }
    }

    /// The vector size when none is configured.
    fn default_dims(self) -> usize {
        match self {
            ProviderKind::Local => super::local::DIMS,
            _ => DEFAULT_DIMS,
        }
    }

    /// Requests in flight at once when the user does not say: the machine's cores for the
    /// model that runs here, a few for a server.
    fn default_concurrency(self) -> usize {
        match self {
            ProviderKind::Local => std::thread::available_parallelism().map_or(1, usize::from),
            _ => 4,
        }
    }

    /// The most inputs the provider's API accepts in one request.
    fn max_batch_size(self) -> usize {
        match self {
            ProviderKind::Voyage => 1000,
            ProviderKind::Openai => 2048,
            ProviderKind::Ollama | ProviderKind::Hash | ProviderKind::Local => 100_000,
        }
    }

    /// The environment variable holding the API key, if the provider takes one.
    pub fn key_variable(self) -> Option<&'static str> {
        match self {
            ProviderKind::Voyage => Some("VOYAGE_API_KEY"),
            ProviderKind::Openai => Some("OPENAI_API_KEY"),
            ProviderKind::Ollama | ProviderKind::Hash | ProviderKind::Local => None,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Embedding")]
pub struct EmbedArgs {
    /// Embedding provider (no default: choose one)
    #[arg(long, env = "GOLDEN_EMBED_PROVIDER", value_enum)]
    pub embed_provider: Option<ProviderKind>,

    /// Base URL of the embedding server, with or without a trailing /v1 [default: the provider's]
    // Its value may hold a password (userinfo): never shown in --help.
    #[arg(
        long,
        env = "GOLDEN_EMBED_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub embed_url: Option<String>,

    /// Model name [default: voyage-3.5, text-embedding-3-small, mxbai-embed-large, golden-hash-v1, all-MiniLM-L6-v2]
    #[arg(long, env = "GOLDEN_EMBED_MODEL", value_name = "NAME")]
    pub embed_model: Option<String>,

    /// Vector dimension [default: 1024; 384 for local]
    #[arg(long, env = "GOLDEN_EMBED_DIMS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=16000))]
    pub embed_dims: Option<u32>,

    /// Most inputs in one request [default: 128; 32 for ollama; 256 for hash]
    #[arg(long, env = "GOLDEN_EMBED_BATCH_SIZE", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub embed_batch_size: Option<u32>,

    /// Most requests in flight at once [default: 4; the number of cores for local]
    #[arg(long, env = "GOLDEN_EMBED_CONCURRENCY", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub embed_concurrency: Option<u32>,

    /// Retries of one request (429, 5xx, timeouts, dropped connections) before the command fails
    #[arg(long, env = "GOLDEN_EMBED_MAX_RETRIES", value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub embed_max_retries: u32,

    /// Seconds one request may take (at most a day)
    #[arg(long, env = "GOLDEN_EMBED_TIMEOUT", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECONDS))]
    pub embed_timeout: u64,

    /// Always ask the provider: neither read nor fill the embedding cache
    #[arg(long, env = "GOLDEN_EMBED_NO_CACHE")]
    pub embed_no_cache: bool,

    /// Allow sending an API key over plain http:// to a host other than this machine
    #[arg(long, env = "GOLDEN_EMBED_ALLOW_HTTP")]
    pub embed_allow_http: bool,

    /// The local model's folder [default: models/all-MiniLM-L6-v2 in the working folder, a parent of it, or the project golden was built in]
    #[arg(long, env = "GOLDEN_EMBED_MODEL_DIR", value_name = "DIR")]
    pub embed_model_dir: Option<std::path::PathBuf>,
}

/// Everything a provider needs, with defaults applied. Never printed with its key.
#[derive(Clone)]
pub struct EmbedConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    pub model: String,
    pub dims: usize,
    /// Whether the user chose the dimension (OpenAI then sends `dimensions`).
    pub dims_explicit: bool,
    pub batch_size: usize,
    pub concurrency: usize,
    pub max_retries: u32,
    pub timeout: Duration,
    pub api_key: Option<String>,
    /// The local model's folder, when given.
    pub model_dir: Option<std::path::PathBuf>,
}

impl fmt::Debug for EmbedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbedConfig")
            .field("kind", &self.kind)
            .field("base_url", &crate::secrets::display_url(&self.base_url))
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl EmbedArgs {
    /// The configuration, or `None` when no provider was chosen.
    pub fn config(&self) -> Result<Option<EmbedConfig>> {
        let Some(kind) = self.embed_provider else {
            return Ok(None);
        };
        let batch_size = self
            .embed_batch_size
            .map_or(kind.default_batch_size(), |n| n as usize);
        if batch_size > kind.max_batch_size() {
            return Err(invalid_input(format!(
                "--embed-batch-size {batch_size} is more than {kind} accepts in one request ({})",
                kind.max_batch_size()
            )));
        }
        let api_key = kind
            .key_variable()
            .and_then(|name| std::env::var(name).ok())
            .map(|key| key.trim().to_string())
            .filter(|key| !key.is_empty());
        if kind == ProviderKind::Voyage && api_key.is_none() {
            return Err(invalid_input(
                "the voyage provider needs an API key: set VOYAGE_API_KEY in the environment (or in .env)",
            ));
        }
        let base_url = self
            .embed_url
            .clone()
            .unwrap_or_else(|| kind.default_url().to_string());
        let base_url = if matches!(kind, ProviderKind::Hash | ProviderKind::Local) {
            base_url
        } else {
            check_base_url(&base_url, api_key.is_some(), self.embed_allow_http)?
        };
        if kind == ProviderKind::Local {
            if let Some(model) = self
                .embed_model
                .as_deref()
                .filter(|m| *m != super::local::MODEL)
            {
                return Err(invalid_input(format!(
                    "the local provider runs {} only, not {model:?}: leave --embed-model out, or use \
                     ollama or an OpenAI-compatible server for another model",
                    super::local::MODEL
                )));
            }
            if let Some(dims) = self
                .embed_dims
                .filter(|d| *d as usize != super::local::DIMS)
            {
                return Err(invalid_input(format!(
                    "{} makes vectors of {} dimensions, not {dims}: leave --embed-dims out (a column of \
                     another size moves with `golden restore --replace --resize-column` or \
                     `golden regenerate-embeddings`)",
                    super::local::MODEL,
                    super::local::DIMS
                )));
            }
        }
        Ok(Some(EmbedConfig {
            kind,
            base_url,
            model: self
                .embed_model
                .clone()
                .unwrap_or_else(|| kind.default_model().to_string()),
            dims: self.embed_dims.map_or(kind.default_dims(), |n| n as usize),
            dims_explicit: self.embed_dims.is_some(),
            batch_size,
            concurrency: self
                .embed_concurrency
                .map_or(kind.default_concurrency(), |n| n as usize),
            max_retries: self.embed_max_retries,
            timeout: Duration::from_secs(self.embed_timeout),
            api_key,
            model_dir: self.embed_model_dir.clone(),
        }))
    }

    /// The configuration, or an error that says how to choose a provider.
    pub fn required_config(&self) -> Result<EmbedConfig> {
        self.config()?.ok_or_else(|| {
            invalid_input(
                "no embedding provider is configured: pass --embed-provider or set GOLDEN_EMBED_PROVIDER \
                 to voyage (needs VOYAGE_API_KEY), openai (any OpenAI-compatible server, OPENAI_API_KEY), \
                 ollama, local (all-MiniLM-L6-v2 built in, offline; `make model` fetches it) or hash (built \
                 in, offline, lexical); nothing was written",
            )
        })
    }

    /// A ready client for the configured provider.
    pub fn client(&self) -> Result<EmbeddingClient> {
        let config = self.required_config()?;
        EmbeddingClient::new(build_provider(&config)?, &config)
    }
}

/// The provider a configuration describes.
pub fn build_provider(config: &EmbedConfig) -> Result<Box<dyn Provider>> {
    let info = ModelInfo {
        provider: config.kind,
        model: config.model.clone(),
        dims: config.dims,
    };
    Ok(match config.kind {
        ProviderKind::Hash => Box::new(HashProvider::new(info)),
        ProviderKind::Voyage => Box::new(VoyageProvider::new(info, config)),
        ProviderKind::Openai => Box::new(OpenAiProvider::new(info, config)),
        ProviderKind::Ollama => Box::new(OllamaProvider::new(info, config)),
        ProviderKind::Local => {
            let dir = local::find_dir(config.model_dir.as_deref())?;
            Box::new(LocalProvider::load(
                &dir,
                ModelInfo {
                    model: local::model_id(),
                    ..info
                },
            )?)
        }
    })
}

/// An http(s) URL; plain http with a key only to this machine, unless explicitly allowed.
/// Returns the URL as the WHATWG parser writes it back, so the HTTP client connects to the
/// very host checked here (its own parser could read an ambiguous URL differently).
fn check_base_url(url: &str, has_key: bool, allow_http: bool) -> Result<String> {
    let shown = crate::secrets::display_url(url);
    let parsed = url::Url::parse(url)
        .map_err(|e| invalid_input(format!("--embed-url {shown:?} is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if has_key && !allow_http && !is_loopback(&parsed) {
                return Err(invalid_input(format!(
                    "refusing to send an API key over plain http to {shown}: use https, or pass --embed-allow-http \
                     if this network is trusted"
                )));
            }
        }
        _ => {
            return Err(invalid_input(format!(
                "--embed-url {shown:?} is not an http:// or https:// URL"
            )))
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid_input(format!("--embed-url {shown:?} has no host")));
    }
    Ok(parsed.to_string())
}

/// This machine, decided on the parsed host alone (never on a prefix of the text, which
/// `127.0.0.1.attacker.example` or `localhost:x@attacker.example` would pass): an IPv4
/// address in 127.0.0.0/8, `::1`, or the exact name `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::check_base_url;

    #[test]
    fn plain_http_with_a_key_only_to_this_machine() {
        assert!(check_base_url("https://api.voyageai.com", true, false).is_ok());
        assert!(check_base_url("http://127.0.0.1:8080/v1", true, false).is_ok());
        assert!(check_base_url("http://localhost:11434", true, false).is_ok());
        assert!(check_base_url("http://[::1]:80", true, false).is_ok());
        assert!(check_base_url("http://gpu-box:8080", true, false).is_err());
        assert!(check_base_url("http://gpu-box:8080", true, true).is_ok());
        assert!(check_base_url("http://gpu-box:8080", false, false).is_ok());
        assert!(check_base_url("ftp://host", false, false).is_err());
        assert!(check_base_url("https://", false, false).is_err());
        assert!(check_base_url("http://127.1.2.3", true, false).is_ok());
        assert!(check_base_url("http://LOCALHOST:1", true, false).is_ok());
    }

    #[test]
    fn hosts_that_only_look_local_are_not_this_machine() {
        for url in [
            "http://127.0.0.1.attacker.example",
            "http://localhost:x@attacker.example",
            "http://127.0.0.1@attacker.example",
            "http://127.0.0.1:80@attacker.example/v1",
            "http://localhost.attacker.example",
            "http://localhost./v1",
            "http://[::ffff:127.0.0.1]",
            "http://[::2]",
            "http://attacker.example#@127.0.0.1",
            "http://attacker.example?@127.0.0.1",
            "http://attacker.example\\@127.0.0.1",
        ] {
            assert!(check_base_url(url, true, false).is_err(), "{url}");
        }
    }

    #[test]
    fn the_checked_url_is_the_one_used() {
        // A backslash is a '/' to the WHATWG parser: the host is 127.0.0.1, and the URL the
        // client gets says so without ambiguity.
        assert_eq!(
            check_base_url("http://127.0.0.1\\@attacker.example", true, false).unwrap(),
            "http://127.0.0.1/@attacker.example"
        );
        let error = check_base_url("http://u:hunter2@remote:1", true, false).unwrap_err();
        assert!(
            error.to_string().contains("http://u:***@remote:1"),
            "{error}"
        );
        assert!(!error.to_string().contains("hunter2"));
    }
}
