//! The secrets of this run, known to every place that prints: the logger and the error
//! reporter remove any trace of them (see [`crate::redact`]) from every line, at any level.
//!
//! Masking a secret where it is expected (a URL's password field, the key a provider was
//! given) misses the places where it is not: a server that repeats another key, libpq
//! quoting a piece of a malformed connection string, a proxy echoing a URL. So
//! [`register_run_secrets`] collects, once the configuration is known (flags, environment and
//! `.env` alike), the API keys, the database passwords and the `--embed-url` password, and
//! [`redact`] is applied to whatever goes to the terminal.

use std::borrow::Cow;
use std::sync::{LazyLock, PoisonError, RwLock};

use crate::conninfo;
use crate::redact::Redactor;

/// The environment variables that hold API keys (CONTRACT.md), whichever provider is used.
pub const API_KEY_VARIABLES: [&str; 2] = ["VOYAGE_API_KEY", "OPENAI_API_KEY"];

static REGISTRY: LazyLock<RwLock<Redactor>> = LazyLock::new(|| RwLock::new(Redactor::new()));

/// Adds a secret to the registry (one shorter than 4 characters is only masked where it
/// stands, never searched for).
pub fn register(secret: &str) {
    // A panic while the lock was held cannot leave the set half-updated in a way that
    // matters: at worst a secret is missing, so the poisoned value is used as it is.
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    registry.add(secret);
    let trimmed = secret.trim();
    if trimmed != secret {
        registry.add(trimmed);
    }
}

/// `text` without any trace of a registered secret.
pub fn redact(text: &str) -> Cow<'_, str> {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    match registry.redact(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(redacted) => Cow::Owned(redacted),
    }
}

/// Registers every secret the run's configuration holds: the API keys of the environment
/// (which `.env` has filled by now), the passwords of the database connection string and of
/// PGPASSWORD, and the password of the embedding server's URL.
pub fn register_run_secrets(database_url: &str, embed_urls: &[String]) {
    for variable in API_KEY_VARIABLES {
        if let Ok(key) = std::env::var(variable) {
            register(&key);
        }
    }
    if let Ok(password) = std::env::var("PGPASSWORD") {
        register(&password);
    }
    for secret in conninfo::secrets_of(database_url) {
        register(&secret);
    }
    for embed_url in embed_urls {
        for secret in url_password(embed_url) {
            register(&secret);
        }
    }
}

/// The password of an http(s) URL's userinfo, as written and decoded.
fn url_password(text: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(text) else {
        return Vec::new();
    };
    let Some(written) = url.password() else {
        return Vec::new();
    };
    let mut secrets = vec![written.to_string()];
    let decoded = percent_decode(written);
    if decoded != written {
        secrets.push(decoded);
    }
    secrets
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |d: Option<&u8>| d.and_then(|&d| (d as char).to_digit(16));
        if b[i] == b'%' {
            if let (Some(high), Some(low)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An http(s) URL as it may be shown: the password of its userinfo replaced by `***`.
pub fn display_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one, and this one has.
            let _ = url.set_password(Some(crate::redact::MASK));
            let shown = url.to_string();
            // The serializer adds a '/' to a bare origin; show what the user wrote.
            if !text.ends_with('/') && shown.ends_with('/') && url.path() == "/" {
                shown[..shown.len() - 1].to_string()
            } else {
                shown
            }
        }
        Ok(_) => text.to_string(),
        // Not a URL url can read: hide whatever sits between "://" and the last '@'.
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***{}", &text[..scheme_end + 3], &text[at..])
            }
            _ => text.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            display_url("https://user:secret@host:8080"),
            "https://user:***@host:8080"
        );
        assert_eq!(
            display_url("http://user:s%40cret@127.0.0.1:1/v1/"),
            "http://user:***@127.0.0.1:1/v1/"
        );
        assert_eq!(display_url("https://host/v1"), "https://host/v1");
        assert_eq!(display_url("ftp://u:p@[bad"), "ftp://***@[bad");
        assert_eq!(
            url_password("https://u:s%40cret@host"),
            vec!["s%40cret".to_string(), "s@cret".to_string()]
        );
    }
}
