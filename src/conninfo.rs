//! libpq's two connection string forms, parsed as libpq parses them, so that golden knows
//! where the passwords are: to show a connection string with `***` in their place, to
//! register them as secrets that no message may print, and to hand pg_dump and psql a
//! connection string without them (the password goes in PGPASSWORD, out of `ps`).
//!
//! The rules follow libpq 15's `conninfo_parse` and `conninfo_uri_parse_options`:
//!
//! - key/value: `keyword = value` pairs separated by whitespace; a value is either bare (up
//!   to the next whitespace, `\` escaping the next character) or single-quoted (`\'` and
//!   `\\` inside); a keyword given twice takes its last value;
//! - URI: `postgres[ql]://[user[:password]@][host][:port][,...][/dbname][?k=v&...]`, where the
//!   userinfo runs to the first `@` before any `/`, the user to its first `:`, the password
//!   after it (so `#`, `?`, quotes and spaces belong to it), every part percent-decoded, and
//!   query parameters (`?password=…` too) override what came before.
//!
//! Parse errors name a position and the problem, never a value: libpq's own messages quote
//! the words they fail on, which may be pieces of a password.

use std::fmt;
use std::ops::Range;

use crate::redact::MASK;

/// The keywords whose values are secrets.
const SECRET_KEYWORDS: [&str; 2] = ["password", "sslpassword"];

fn is_secret_keyword(keyword: &str) -> bool {
    SECRET_KEYWORDS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(keyword))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Uri,
    KeywordValue,
}

/// One `keyword = value` setting, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub keyword: String,
    pub value: String,
    /// Where the value is written in the connection string, quotes and encoding included.
    raw: Range<usize>,
}

/// A parsed connection string: its settings in the order they were written.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub form: Form,
    pub params: Vec<Param>,
}

/// Why a connection string does not parse: a byte position and the problem, no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub problem: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at character {} (values are not shown)",
            self.problem,
            self.position + 1
        )
    }
}

impl std::error::Error for ParseError {}

/// The length of the URI prefix libpq recognises (`postgresql://` or `postgres://`), or 0.
fn uri_prefix_length(text: &str) -> usize {
    ["postgresql://", "postgres://"]
        .iter()
        .find(|prefix| text.starts_with(*prefix))
        .map_or(0, |prefix| prefix.len())
}

/// Parses a connection string as libpq would.
pub fn parse(text: &str) -> Result<ConnInfo, ParseError> {
    if uri_prefix_length(text) > 0 {
        parse_uri(text)
    } else {
        parse_keyword_value(text)
    }
}

impl ConnInfo {
    /// The value libpq uses for `keyword`: the last one given.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|param| param.keyword == keyword)
            .map(|param| param.value.as_str())
    }

    /// The password libpq uses, if the string gives one.
    pub fn password(&self) -> Option<&str> {
        self.get("password")
    }

    /// The same connection as a key/value string without `password`, every value quoted
    /// the way libpq reads it back.
    pub fn to_keyword_value_without_password(&self) -> String {
        self.params
            .iter()
            .filter(|param| param.keyword != "password")
            .map(|param| format!("{}={}", param.keyword, quote_value(&param.value)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `value` single-quoted for a key/value connection string: `'` and `\` escaped.
pub fn quote_value(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// C's `isspace` in the "C" locale, which libpq uses to split key/value strings.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn parse_keyword_value(text: &str) -> Result<ConnInfo, ParseError> {
    let b = text.as_bytes();
    let mut params = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && is_c_space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let keyword_start = i;
        while i < b.len() && b[i] != b'=' && !is_c_space(b[i]) {
            i += 1;
        }
        let keyword = &text[keyword_start..i];
        while i < b.len() && is_c_space(b[i]) {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            return Err(ParseError {
                position: keyword_start,
                problem: "a word without \"=\" after it",
            });
        }
        i += 1;
        while i < b.len() && is_c_space(b[i]) {
            i += 1;
        }
        let value_start = i;
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                if i == b.len() {
                    return Err(ParseError {
                        position: value_start,
                        problem: "a quoted value without its closing quote",
                    });
                }
                match b[i] {
                    b'\\' => {
                        i += 1;
                        if i < b.len() {
                            value.push(b[i]);
                            i += 1;
                        }
                    }
                    b'\'' => {
                        i += 1;
                        break;
                    }
                    other => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !is_c_space(b[i]) {
                if b[i] == b'\\' {
                    i += 1;
                    if i < b.len() {
                        value.push(b[i]);
                        i += 1;
                    }
                } else {
                    value.push(b[i]);
                    i += 1;
                }
            }
        }
        params.push(Param {
            keyword: keyword.to_string(),
            // Only ASCII backslashes and quotes were dropped, so the bytes are still UTF-8.
            value: String::from_utf8_lossy(&value).into_owned(),
            raw: value_start..i,
        });
    }
    Ok(ConnInfo {
        form: Form::KeywordValue,
        params,
    })
}

/// libpq's percent-decoding of a URI part.
fn uri_decode(raw: &str, position: usize) -> Result<String, ParseError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let digits = (b.get(i + 1).copied(), b.get(i + 2).copied());
        let (Some(high), Some(low)) = (
            digits.0.and_then(|d| (d as char).to_digit(16)),
            digits.1.and_then(|d| (d as char).to_digit(16)),
        ) else {
            return Err(ParseError {
                position: position + i,
                problem: "an invalid percent-encoded character",
            });
        };
        let byte = (high * 16 + low) as u8;
        if byte == 0 {
            return Err(ParseError {
                position: position + i,
                problem: "a percent-encoded NUL (%00)",
            });
        }
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| ParseError {
        position,
        problem: "percent-encoded bytes that are not UTF-8",
    })
}

/// Adds the parameter `keyword` whose percent-encoded value stands at `raw` in `text`.
fn push_decoded(
    params: &mut Vec<Param>,
    text: &str,
    keyword: &str,
    raw: Range<usize>,
) -> Result<(), ParseError> {
    let value = uri_decode(&text[raw.clone()], raw.start)?;
    params.push(Param {
        keyword: keyword.to_string(),
        value,
        raw,
    });
    Ok(())
}

fn parse_uri(text: &str) -> Result<ConnInfo, ParseError> {
    let b = text.as_bytes();
    let start = uri_prefix_length(text);
    let mut params = Vec::new();

    let mut p = start;
    while p < b.len() && b[p] != b'@' && b[p] != b'/' {
        p += 1;
    }
    if p < b.len() && b[p] == b'@' {
        let mut q = start;
        while b[q] != b':' && b[q] != b'@' {
            q += 1;
        }
        if q > start {
            push_decoded(&mut params, text, "user", start..q)?;
        }
        if b[q] == b':' {
            let password_start = q + 1;
            while b[q] != b'@' {
                q += 1;
            }
            if q > password_start {
                push_decoded(&mut params, text, "password", password_start..q)?;
            }
        }
        p = q + 1;
    } else {
        p = start;
    }

    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    let mut terminator;
    loop {
        let host;
        if p < b.len() && b[p] == b'[' {
            let host_start = p + 1;
            let Some(close) = text[host_start..].find(']').map(|i| host_start + i) else {
                return Err(ParseError {
                    position: p,
                    problem: "an IPv6 address without its closing \"]\"",
                });
            };
            if close == host_start {
                return Err(ParseError {
                    position: p,
                    problem: "an empty IPv6 address",
                });
            }
            host = &text[host_start..close];
            p = close + 1;
            if p < b.len() && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                return Err(ParseError {
                    position: p,
                    problem: "an unexpected character after an IPv6 address",
                });
            }
        } else {
            let host_start = p;
            while p < b.len() && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            host = &text[host_start..p];
        }
        hosts.push(host);
        terminator = b.get(p).copied();
        let mut port = "";
        if terminator == Some(b':') {
            p += 1;
            let port_start = p;
            while p < b.len() && !matches!(b[p], b'/' | b'?' | b',') {
                p += 1;
            }
            port = &text[port_start..p];
            terminator = b.get(p).copied();
        }
        ports.push(port);
        if terminator != Some(b',') {
            break;
        }
        p += 1;
    }
    let host_list = hosts.join(",");
    if !host_list.is_empty() {
        let value = uri_decode(&host_list, start)?;
        params.push(Param {
            keyword: "host".into(),
            value,
            raw: 0..0,
        });
    }
    let port_list = ports.join(",");
    if !port_list.is_empty() {
        let value = uri_decode(&port_list, start)?;
        params.push(Param {
            keyword: "port".into(),
            value,
            raw: 0..0,
        });
    }

    if terminator.is_some() && terminator != Some(b'?') {
        p += 1;
        let dbname_start = p;
        while p < b.len() && b[p] != b'?' {
            p += 1;
        }
        if p > dbname_start {
            push_decoded(&mut params, text, "dbname", dbname_start..p)?;
        }
        terminator = b.get(p).copied();
    }
    if terminator.is_some() {
        p += 1;
        while p < b.len() {
            let keyword_start = p;
            let mut value_start = None;
            while p < b.len() && b[p] != b'&' {
                if b[p] == b'=' {
                    if value_start.is_some() {
                        return Err(ParseError {
                            position: p,
                            problem: "a second \"=\" in a URI query parameter",
                        });
                    }
                    value_start = Some(p + 1);
                }
                p += 1;
            }
            let Some(value_start) = value_start else {
                return Err(ParseError {
                    position: keyword_start,
                    problem: "a URI query parameter without \"=\"",
                });
            };
            let keyword = uri_decode(&text[keyword_start..value_start - 1], keyword_start)?;
            let value = uri_decode(&text[value_start..p], value_start)?;
            // libpq's JDBC compatibility: ssl=true means sslmode=require.
            let (keyword, value) = if keyword == "ssl" && value == "true" {
                ("sslmode".to_string(), "require".to_string())
            } else {
                (keyword, value)
            };
            params.push(Param {
                keyword,
                value,
                raw: value_start..p,
            });
            if p < b.len() {
                p += 1;
            }
        }
    }
    Ok(ConnInfo {
        form: Form::Uri,
        params,
    })
}

/// The parts of a whole connection string that may be secret, as byte ranges: every value of
/// a password keyword and, erring on the side of hiding, more than libpq would take:
///
/// - in a URI, everything from the userinfo's first `:` to its last `@` (a password holding
///   `@` or `/` ends, for libpq, earlier than its writer meant), and every query parameter
///   that is a password or has no `=`;
/// - in a key/value string that does not parse, everything from the place it fails on.
fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let start = uri_prefix_length(text);
    if start > 0 {
        let rest = &text[start..];
        let libpq_at = rest
            .find(['@', '/'])
            .filter(|&i| rest.as_bytes()[i] == b'@');
        let first_query = rest.find('?').unwrap_or(rest.len());
        // An '@' after a '/' is not userinfo to libpq, but may be to the writer: take it
        // while it comes before the query.
        let anchor = libpq_at.or_else(|| rest.find('@').filter(|&at| at < first_query));
        let mut query_start = rest.find('?');
        if let Some(anchor) = anchor {
            let region_end = rest[anchor..].find('?').map_or(rest.len(), |i| anchor + i);
            let last_at = rest[..region_end].rfind('@').unwrap_or(anchor);
            if let Some(colon) = rest[..last_at].find(':') {
                spans.push(start + colon + 1..start + last_at);
            }
            query_start = rest[last_at..].find('?').map(|i| last_at + i);
        }
        if let Some(query_start) = query_start {
            let mut offset = start + query_start + 1;
            for param in text[offset..].split('&') {
                match param.split_once('=') {
                    Some((keyword, _)) => {
                        let decoded = uri_decode(keyword, 0).unwrap_or_else(|_| keyword.into());
                        if is_secret_keyword(&decoded) {
                            let value_start = offset + keyword.len() + 1;
                            spans.push(value_start..offset + param.len());
                        }
                    }
                    None => spans.push(offset..offset + param.len()),
                }
                offset += param.len() + 1;
            }
        }
        return spans;
    }
    match parse_keyword_value(text) {
        Ok(info) => spans.extend(
            info.params
                .iter()
                .filter(|param| is_secret_keyword(&param.keyword))
                .map(|param| param.raw.clone()),
        ),
        Err(error) => {
            // What parsed before the error, then the rest.
            let head = &text[..error.position];
            if let Ok(info) = parse_keyword_value(head) {
                spans.extend(
                    info.params
                        .iter()
                        .filter(|param| is_secret_keyword(&param.keyword))
                        .map(|param| param.raw.clone()),
                );
            }
            spans.push(error.position..text.len());
        }
    }
    spans
}

/// A whole connection string as it may be shown: its passwords (and whatever may be part of
/// one) replaced by `***`, everything else as written.
pub fn mask(text: &str) -> String {
    replace_spans(text, secret_spans(text))
}

fn replace_spans(text: &str, mut spans: Vec<Range<usize>>) -> String {
    spans.retain(|span| !span.is_empty());
    spans.sort_by_key(|span| span.start);
    let mut out = String::with_capacity(text.len());
    let mut position = 0;
    for span in spans {
        if span.end <= position {
            continue;
        }
        if span.start < position {
            // Overlaps the span just masked: one mask for both.
            position = span.end;
            continue;
        }
        out.push_str(&text[position..span.start]);
        out.push_str(MASK);
        position = span.end;
    }
    out.push_str(&text[position..]);
    out
}

/// The shortest piece of a password cut at an '@' that is registered as a secret on its own
/// (shorter ones would mask every occurrence of common words in messages).
const MIN_PIECE: usize = 3;

/// Every secret a connection string holds, for the process-wide registry: the decoded
/// passwords, each as written, and whatever [`mask`] hides, in pieces too when the string
/// does not parse (libpq's errors quote single words of it).
pub fn secrets_of(text: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(info) = parse(text) {
        for param in &info.params {
            if is_secret_keyword(&param.keyword) {
                secrets.push(param.value.clone());
                secrets.push(text[param.raw.clone()].to_string());
            }
        }
    }
    let parses = parse(text).is_ok();
    for span in secret_spans(text) {
        let written = &text[span];
        if let Ok(decoded) = uri_decode(written, 0) {
            secrets.push(decoded);
        }
        if !parses {
            secrets.extend(
                written
                    .split(|c: char| c.is_ascii() && is_c_space(c as u8))
                    .map(String::from),
            );
        }
        // A password written with an unencoded '@' ends, to libpq, at its first '@': the
        // rest becomes the host, which libpq's errors quote ("could not translate host name
        // \"rest@127.0.0.1\"").
        if written.contains('@') {
            secrets.extend(
                written
                    .split('@')
                    .filter(|piece| piece.len() >= MIN_PIECE)
                    .map(String::from),
            );
        }
        secrets.push(written.to_string());
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Free text (an error message, a program's stderr) with the passwords of any connection
/// string in it masked: the userinfo password of every `postgres://` URI, and the value of
/// every `password = …` keyword.
pub fn mask_in_text(text: &str) -> String {
    let mut spans = Vec::new();
    let b = text.as_bytes();
    for prefix in ["postgresql://", "postgres://"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(prefix) {
            let uri_start = from + found;
            // In a message, a URI ends at whitespace or a quote; the registry of secrets
            // catches a password that continues past them.
            let uri_end = text[uri_start..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                .map_or(text.len(), |i| uri_start + i);
            spans.extend(
                secret_spans(&text[uri_start..uri_end])
                    .into_iter()
                    .map(|span| uri_start + span.start..uri_start + span.end),
            );
            from = uri_end;
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let keyword_start = from + found;
        let mut i = keyword_start + "password".len();
        from = i;
        let word_start = keyword_start == 0
            || !(b[keyword_start - 1].is_ascii_alphanumeric() || b[keyword_start - 1] == b'_')
            || lower[..keyword_start].ends_with("ssl");
        if !word_start {
            continue;
        }
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        let value_start = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !is_c_space(b[i]) && b[i] != b'&' && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(b.len());
        }
        if i > value_start {
            spans.push(value_start..i);
        }
        from = i.max(from);
    }
    // Spans end on ASCII bytes or at the end, but a backslash skip may land inside a
    // multi-byte character: widen to whole characters.
    let spans = spans
        .into_iter()
        .map(|span| {
            let mut end = span.end.min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            span.start..end
        })
        .collect();
    replace_spans(text, spans)
}

/// Whether `text` is itself a connection string (rather than a message that may hold one).
pub fn is_connection_string(text: &str) -> bool {
    uri_prefix_length(text) > 0
        || parse_keyword_value(text).is_ok_and(|info| !info.params.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .params
            .into_iter()
            .map(|p| (p.keyword, p.value))
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn uris_split_as_libpq_splits_them() {
        assert_eq!(
            pairs("postgres://alice:s3cret@db:5432/golden"),
            owned(&[
                ("user", "alice"),
                ("password", "s3cret"),
                ("host", "db"),
                ("port", "5432"),
                ("dbname", "golden")
            ])
        );
        // The password runs from the first ':' to the first '@': '#', '?', quotes, spaces and
        // ':' belong to it.
        assert_eq!(
            parse("postgresql://u:a#b?c d'e\":f@h/d")
                .unwrap()
                .password(),
            Some("a#b?c d'e\":f")
        );
        assert_eq!(
            parse("postgres://u:p%40ss%2F@h/d").unwrap().password(),
            Some("p@ss/")
        );
        assert_eq!(
            pairs("postgres://[::1]:5433,h2/x?sslmode=disable&pass%77ord=q%20w&ssl=true"),
            owned(&[
                ("host", "::1,h2"),
                ("port", "5433,"),
                ("dbname", "x"),
                ("sslmode", "disable"),
                ("password", "q w"),
                ("sslmode", "require")
            ])
        );
        // A '/' before the '@': no userinfo for libpq.
        assert_eq!(
            parse("postgres://h/d@x").unwrap().get("dbname"),
            Some("d@x")
        );
        assert_eq!(pairs("postgresql://"), owned(&[]));
        let info = parse("postgres://u:first@h/d?password=second").unwrap();
        assert_eq!(info.password(), Some("second"), "the last one wins");
        assert!(parse("postgres://u:a%zzb@h/d").is_err());
        assert!(parse("postgres://h/d?password").is_err());
        assert!(parse("postgres://[::1/d").is_err());
        assert!(parse("postgres://u:a%00@h").is_err());
    }

    #[test]
    fn keyword_values_split_as_libpq_splits_them() {
        assert_eq!(
            pairs(r"host=db  password = 'a b\'c\\d' user=x\ y dbname=''"),
            owned(&[
                ("host", "db"),
                ("password", r"a b'c\d"),
                ("user", "x y"),
                ("dbname", "")
            ])
        );
        assert_eq!(
            parse("password=a host=h password=b").unwrap().password(),
            Some("b")
        );
        let missing = parse("password=a b c").unwrap_err();
        assert_eq!(missing.position, 11);
        assert!(!missing.to_string().contains('b'));
        assert!(parse("password='abc").is_err());
        assert!(parse("golden").is_err());
        assert_eq!(pairs("  "), owned(&[]));
    }

    #[test]
    fn masks_every_password_and_what_may_be_one() {
        for (text, masked) in [
            (
                "postgres://alice:s3cret@db:5432/golden",
                "postgres://alice:***@db:5432/golden",
            ),
            ("postgres://alice@db/golden", "postgres://alice@db/golden"),
            (
                "postgres://alice:a#b?c d'e\"@db/golden",
                "postgres://alice:***@db/golden",
            ),
            // A password with an '@' or a '/' in it, unencoded: all of it is hidden.
            (
                "postgres://alice:p@ss@db/golden",
                "postgres://alice:***@db/golden",
            ),
            (
                "postgres://alice:a/b@db/golden",
                "postgres://alice:***@db/golden",
            ),
            (
                "postgres://db/g?sslmode=disable&pass%77ord=x&user=u",
                "postgres://db/g?sslmode=disable&pass%77ord=***&user=u",
            ),
            ("postgres://db/g?secretword", "postgres://db/g?***"),
            (
                "postgres://db:5432/g?application_name=me@x",
                "postgres://db:5432/g?application_name=me@x",
            ),
            (
                "host=db password = 'a b' user=u password=c",
                "host=db password = *** user=u password=***",
            ),
            ("host=db password=a b c", "host=db password=*** ***"),
            ("host=db password='a b", "host=db password=***"),
            ("host=db user=u", "host=db user=u"),
        ] {
            assert_eq!(mask(text), masked, "{text}");
        }
    }

    #[test]
    fn secrets_include_decoded_written_and_doubtful_forms() {
        let secrets = secrets_of("postgres://u:p%40ss@h/d");
        assert!(secrets.contains(&"p@ss".to_string()));
        assert!(secrets.contains(&"p%40ss".to_string()));
        let secrets = secrets_of("host=h password=zebra quokka walrus");
        for piece in ["zebra", "quokka", "walrus"] {
            assert!(secrets.contains(&piece.to_string()), "{secrets:?}");
        }
        assert!(secrets_of("host=h user=u").is_empty());
    }

    #[test]
    fn masks_connection_strings_inside_messages() {
        assert_eq!(
            mask_in_text("failed: postgres://u:p@h/d and postgresql://v:q@i/e"),
            "failed: postgres://u:***@h/d and postgresql://v:***@i/e"
        );
        assert_eq!(
            mask_in_text("pg_dump: error: host=h password = 'a b' dbname=x"),
            "pg_dump: error: host=h password = *** dbname=x"
        );
        assert_eq!(
            mask_in_text("at postgres://h/d?sslpassword=zz&x=1 failed"),
            "at postgres://h/d?sslpassword=***&x=1 failed"
        );
        assert_eq!(
            mask_in_text("password authentication failed for user \"alice\""),
            "password authentication failed for user \"alice\""
        );
        assert_eq!(mask_in_text("Password=abc"), "Password=***");
    }

    #[test]
    fn a_rebuilt_string_without_the_password_parses_to_the_rest() {
        for text in [
            "postgres://u:p%40ss@h:1/d?sslmode=disable&application_name=a%20'b",
            r"host=h password='x y' user='o\'neil' dbname=d\\e",
        ] {
            let info = parse(text).unwrap();
            let rebuilt = info.to_keyword_value_without_password();
            assert!(!rebuilt.contains("password"), "{rebuilt}");
            let again = parse(&rebuilt).unwrap();
            let expected: Vec<_> = info
                .params
                .iter()
                .filter(|p| p.keyword != "password")
                .map(|p| (p.keyword.clone(), p.value.clone()))
                .collect();
            let got: Vec<_> = again
                .params
                .iter()
                .map(|p| (p.keyword.clone(), p.value.clone()))
                .collect();
            assert_eq!(got, expected, "{text} → {rebuilt}");
        }
    }
}
