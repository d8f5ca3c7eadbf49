//! The HTTP plumbing the remote providers share: one blocking ureq agent with timeouts, a
//! JSON POST, and the classification of every failure into retry, split or stop. Error
//! messages carry the server's own words but never the API key, in any encoding, nor the
//! password of the URL.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::EmbedConfig;
use super::ProviderError;
use crate::redact::Redactor;

/// The largest answer read: 2048 vectors of 4096 numbers as JSON text fit well within it.
const MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;
/// How much of an error body goes into a message.
const EXCERPT_CHARS: usize = 300;

pub struct JsonEndpoint {
    agent: ureq::Agent,
    url: String,
    /// The URL as messages show it: without the password of its userinfo.
    shown_url: String,
    api_key: Option<String>,
    /// Removes the API key in any form a server may repeat it in.
    key_redactor: Redactor,
    /// "voyage model voyage-3.5", for messages.
    label: String,
    key_variable: Option<&'static str>,
    timeout: Duration,
}

impl JsonEndpoint {
    /// An endpoint at `path` below the configured base URL. A base written with a trailing
    /// `/v1`, as OpenAI SDKs write it, is accepted for paths that start with `/v1`.
    pub fn new(config: &EmbedConfig, path: &str) -> Self {
        let mut base = config.base_url.trim_end_matches('/').to_string();
        if path.starts_with("/v1/") && base.ends_with("/v1") {
            base.truncate(base.len() - "/v1".len());
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(10))))
            .max_idle_connections_per_host(config.concurrency.max(1))
            .user_agent(concat!("golden/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let url = format!("{base}{path}");
        let mut key_redactor = Redactor::new();
        if let Some(key) = &config.api_key {
            key_redactor.add(key);
        }
        JsonEndpoint {
            agent,
            shown_url: crate::secrets::display_url(&url),
            url,
            api_key: config.api_key.clone(),
            key_redactor,
            label: format!("{} model {}", config.kind, config.model),
            key_variable: config.kind.key_variable(),
            timeout: config.timeout,
        }
    }

    /// POSTs `body` as JSON and parses the answer as `T`.
    pub fn post<B: Serialize, T: DeserializeOwned>(&self, body: &B) -> Result<T, ProviderError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| self.fatal(format!("could not encode the request: {e}")))?;
        let (status, retry_after, bytes) = match self.exchange_abandoned_on_interrupt(body)? {
            Exchange::Answer {
                status,
                retry_after,
                body,
            } => (status, retry_after, body),
            Exchange::Transport(error) => return Err(self.transport_error(error)),
        };
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                if e.is_eof() {
                    // The body ended early: the connection dropped in the middle of the answer.
                    ProviderError::Transient {
                        message: format!(
                            "{} at {}: the answer was cut short ({e})",
                            self.label, self.shown_url
                        ),
                        retry_after: None,
                    }
                } else {
                    self.fatal(format!("answered with unexpected JSON: {e}"))
                }
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        Err(self.status_error(status, &text, retry_after))
    }

    /// Sends the request on a thread of its own and waits for its answer, or for an
    /// interruption: a blocking request cannot be stopped, so an interrupted run leaves it
    /// behind (it ends with the process) instead of waiting up to `--embed-timeout` for it.
    fn exchange_abandoned_on_interrupt(&self, body: Vec<u8>) -> Result<Exchange, ProviderError> {
        let agent = self.agent.clone();
        let url = self.url.clone();
        let authorization = self.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let (send, answer) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("golden-http".into())
            .spawn(move || {
                let _ = send.send(exchange(&agent, &url, authorization, body));
            })
            .map_err(|e| self.fatal(format!("could not start a request: {e}")))?;
        loop {
            match answer.recv_timeout(Duration::from_millis(50)) {
                Ok(exchange) => return Ok(exchange),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if crate::interrupt::check().is_err() {
                        return Err(ProviderError::Interrupted);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.fatal("lost its request thread".to_string()))
                }
            }
        }
    }

    fn status_error(
        &self,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        let said = self.excerpt(body);
        match status {
            429 => ProviderError::Transient {
                message: format!("{} is rate limiting (HTTP 429): {said}", self.label),
                retry_after,
            },
            500..=599 => ProviderError::Transient {
                message: format!(
                    "{} failed on the server (HTTP {status}): {said}",
                    self.label
                ),
                retry_after,
            },
            413 => ProviderError::TooLarge {
                message: format!("{} found the request too large (HTTP 413)", self.label),
            },
            400 | 422 if looks_like_batch_too_large(body) => ProviderError::TooLarge {
                message: format!(
                    "{} found the batch too large (HTTP {status}): {said}",
                    self.label
                ),
            },
            401 | 403 => self.fatal(format!(
                "refused the API key (HTTP {status}): {said}; check {}",
                self.key_variable.unwrap_or("the server's authentication")
            )),
            404 => self.fatal(format!(
                "answered 404 Not Found at {}: check --embed-url and --embed-model ({said})",
                self.shown_url
            )),
            _ => self.fatal(format!("rejected the request (HTTP {status}): {said}")),
        }
    }

    fn transport_error(&self, error: ureq::Error) -> ProviderError {
        let message = self.redact(&error.to_string());
        match error {
            ureq::Error::Timeout(_) => ProviderError::Transient {
                message: format!(
                    "{} did not answer within {} s ({message})",
                    self.label,
                    self.timeout.as_secs()
                ),
                retry_after: None,
            },
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
            | ureq::Error::Decompress(..) => ProviderError::Transient {
                message: format!(
                    "{} at {}: connection failed or dropped ({message})",
                    self.label, self.shown_url
                ),
                retry_after: None,
            },
            _ => self.fatal(format!("at {}: {message}", self.shown_url)),
        }
    }

    fn fatal(&self, what: String) -> ProviderError {
        ProviderError::Fatal {
            message: format!("{} {}", self.label, self.redact(&what)),
        }
    }

    fn excerpt(&self, body: &str) -> String {
        // Redact before cutting, so no fragment of a key survives the cut.
        let redacted = self.redact(body);
        let body = redacted.trim();
        let mut excerpt: String = body.chars().take(EXCERPT_CHARS).collect();
        if body.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        if excerpt.is_empty() {
            excerpt.push_str("(no message)");
        }
        excerpt
    }

    /// Removes the API key (every substring of 8 bytes or more of it, JSON-escaped,
    /// percent-encoded, base64 or hex too), the URL's password and every other secret of the
    /// run from text that came back from the server or the HTTP stack.
    fn redact(&self, text: &str) -> String {
        let text = text.replace(&self.url, &self.shown_url);
        let text = self.key_redactor.redact(&text);
        crate::secrets::redact(&text).into_owned()
    }
}

/// `Retry-After` as delay-seconds (HTTP dates are rare from APIs and treated as absent).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds = value.trim().parse::<f64>().ok()?;
    // Negative, NaN or absurdly large values are ignored, never a panic.
    Duration::try_from_secs_f64(seconds).ok()
}

/// Servers that reject a batch for its size without a 413 (text-embeddings-inference answers
/// 422 "batch size … > maximum allowed batch size", others 400 "too many inputs").
fn looks_like_batch_too_large(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    (lower.contains("batch")
        && (lower.contains("size") || lower.contains("large") || lower.contains("max")))
        || lower.contains("too many inputs")
        || lower.contains("too large")
        || lower.contains("maximum context length")
}

/// What one HTTP exchange gave: an answer (any status) or a transport failure.
enum Exchange {
    Answer {
        status: u16,
        retry_after: Option<Duration>,
        body: Vec<u8>,
    },
    Transport(ureq::Error),
}

/// POSTs `body` (JSON) to `url` and reads the answer: the whole body of a success, up to
/// 64 KB of an error's.
fn exchange(
    agent: &ureq::Agent,
    url: &str,
    authorization: Option<String>,
    body: Vec<u8>,
) -> Exchange {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = match request.send(&body[..]) {
        Ok(response) => response,
        Err(error) => return Exchange::Transport(error),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    let limit = if (200..300).contains(&status) {
        MAX_RESPONSE_BYTES
    } else {
        64 * 1024
    };
    let body = response.body_mut().with_config().limit(limit).read_to_vec();
    match body {
        Ok(body) => Exchange::Answer {
            status,
            retry_after,
            body,
        },
        // An error's body is only its message: without it, the status still says what failed.
        Err(_) if !(200..300).contains(&status) => Exchange::Answer {
            status,
            retry_after,
            body: Vec::new(),
        },
        Err(error) => Exchange::Transport(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_batch_errors() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            None,
            "too large is ignored, not a panic"
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert!(looks_like_batch_too_large(
            r#"{"error":"batch size 64 > maximum allowed batch size 32","error_type":"Validation"}"#
        ));
        assert!(!looks_like_batch_too_large(
            r#"{"error":"model not found"}"#
        ));
    }
}
