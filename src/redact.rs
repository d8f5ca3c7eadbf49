//! Removing secrets from text that is about to be printed, in whatever form they come back.
//!
//! A server that repeats an API key in an error body rarely repeats it verbatim: it may
//! JSON-escape it, percent-encode it, base64 it (as part of a `Bearer …` or `user:key` string,
//! so at any of the three alignments), hex it, or cut it. Replacing the exact key misses all
//! of those. A [`Redactor`] instead knows every 8-byte window of every encoded form of each
//! secret, marks every window of the text found among them and replaces each marked run by
//! `***`: any substring of 8 bytes or more of any form is gone, and the cost is one hash
//! lookup per byte of text. The forms also cover a key upper-cased, every character escaped
//! (JSON's `\uXXXX`, HTML's `&#NN;`), base32 and reversed; and a second, folded comparison
//! sees through separators, invisible characters, full-width forms and Cyrillic or Greek
//! look-alikes put between or for a key's characters.

use std::borrow::Cow;
use std::collections::HashSet;

/// The shortest fragment of an encoded secret that is removed wherever it appears.
const WINDOW: usize = 8;
/// Secrets shorter than this are only masked where they stand (a URL's password field):
/// replacing every "ab" in every message would garble them and protect nothing.
pub const MIN_SECRET_CHARS: usize = 4;

/// The replacement of a removed secret.
pub const MASK: &str = "***";

/// A set of secrets, and the removal of any trace of them from text.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Every 8-byte window of every encoded form of every secret, in ASCII lower case (a
    /// server may upper-case what it repeats).
    windows: HashSet<[u8; WINDOW]>,
    /// The same folded by [`fold`] (separators, invisible characters and look-alikes taken
    /// out or mapped), for text that disguises a secret's characters.
    squeezed_windows: HashSet<[u8; WINDOW]>,
    /// Encoded forms shorter than a window (secrets of 4 to 7 characters), removed whole.
    short_forms: Vec<Vec<u8>>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// A redactor for one secret.
    pub fn of(secret: &str) -> Redactor {
        let mut redactor = Redactor::new();
        redactor.add(secret);
        redactor
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.short_forms.is_empty()
    }

    /// Adds a secret; one shorter than [`MIN_SECRET_CHARS`] is ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_CHARS {
            return;
        }
        for form in encoded_forms(secret) {
            let form = form.to_ascii_lowercase();
            if form.len() >= WINDOW {
                insert_windows(&mut self.windows, &form);
                let squeezed: Vec<u8> = String::from_utf8_lossy(&form)
                    .chars()
                    .filter_map(fold)
                    .collect();
                insert_windows(&mut self.squeezed_windows, &squeezed);
            } else if form.len() >= MIN_SECRET_CHARS && !self.short_forms.contains(&form) {
                self.short_forms.push(form);
            }
        }
    }

    /// `text` with every trace of the secrets replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_empty() || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes().to_ascii_lowercase();
        let bytes = bytes.as_slice();
        let mut marked = vec![false; bytes.len()];
        let mut any = false;
        if bytes.len() >= WINDOW {
            for start in 0..=bytes.len() - WINDOW {
                let mut key = [0u8; WINDOW];
                key.copy_from_slice(&bytes[start..start + WINDOW]);
                if self.windows.contains(&key) {
                    marked[start..start + WINDOW].fill(true);
                    any = true;
                }
            }
        }
        // Again folded (see [`fold`]), each character remembering where it stood: a secret
        // spelled out with separators, invisible characters or look-alikes between or for its
        // characters goes too, with what was put between them.
        let mut squeezed = Vec::with_capacity(bytes.len());
        let mut origin: Vec<(usize, usize)> = Vec::with_capacity(bytes.len());
        for (at, c) in text.char_indices() {
            if let Some(folded) = fold(c) {
                squeezed.push(folded);
                origin.push((at, at + c.len_utf8()));
            }
        }
        if squeezed.len() >= WINDOW {
            for start in 0..=squeezed.len() - WINDOW {
                let mut key = [0u8; WINDOW];
                key.copy_from_slice(&squeezed[start..start + WINDOW]);
                if self.squeezed_windows.contains(&key) {
                    marked[origin[start].0..origin[start + WINDOW - 1].1].fill(true);
                    any = true;
                }
            }
        }
        for form in &self.short_forms {
            let mut from = 0;
            while let Some(found) = find_bytes(&bytes[from..], form) {
                let start = from + found;
                marked[start..start + form.len()].fill(true);
                any = true;
                from = start + 1;
            }
        }
        if !any {
            return Cow::Borrowed(text);
        }
        // A window may start or end inside a multi-byte character: a character with any
        // byte marked goes whole, and each run of marked characters becomes one mask.
        let mut out = String::with_capacity(text.len());
        let mut in_run = false;
        for (start, c) in text.char_indices() {
            if marked[start..start + c.len_utf8()].contains(&true) {
                if !in_run {
                    out.push_str(MASK);
                }
                in_run = true;
            } else {
                out.push(c);
                in_run = false;
            }
        }
        Cow::Owned(out)
    }
}

/// A character as the folded comparison sees it: ASCII letters and digits in lower case;
/// full-width forms and the Cyrillic and Greek letters that look like Latin ones mapped to
/// those; separators (whitespace, ASCII punctuation) and invisible characters (soft hyphen,
/// zero-width spaces and joiners, bidirectional marks, variation selectors) dropped; any other
/// character a byte that matches nothing.
fn fold(c: char) -> Option<u8> {
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    if c.is_ascii_alphanumeric() {
        return Some(c.to_ascii_lowercase() as u8);
    }
    if c.is_ascii_whitespace() || c.is_ascii_punctuation() || c.is_whitespace() {
        return None;
    }
    if matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180B}'..='\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}')
    {
        return None;
    }
    let latin = match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'в' | 'В' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'һ' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'ո' | 'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' | 'Ѕ' => 's',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'Υ' => 'y',
        'Ζ' => 'z',
        _ => return Some(0xFF),
    };
    Some(latin as u8)
}

fn insert_windows(windows: &mut HashSet<[u8; WINDOW]>, form: &[u8]) {
    for window in form.windows(WINDOW) {
        let mut key = [0u8; WINDOW];
        key.copy_from_slice(window);
        windows.insert(key);
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The forms in which a secret may come back: as it is, JSON-escaped (as serde, Python and Go
/// write it), percent-encoded (RFC 3986 and form style, either case of hex digits), base64 in
/// the standard and URL-safe alphabets at each of the three alignments, and hex.
pub fn encoded_forms(secret: &str) -> Vec<Vec<u8>> {
    let bytes = secret.as_bytes();
    let mut forms: Vec<Vec<u8>> = vec![bytes.to_vec()];
    let mut add = |form: Vec<u8>| {
        if !form.is_empty() && !forms.contains(&form) {
            forms.push(form);
        }
    };
    for json in json_escapes(secret) {
        add(json.into_bytes());
    }
    for upper in [false, true] {
        add(percent_encode(bytes, upper, false, false).into_bytes());
        add(percent_encode(bytes, upper, true, false).into_bytes());
        add(percent_encode(bytes, upper, false, true).into_bytes());
        add(hex(bytes, upper).into_bytes());
    }
    for alphabet in [BASE64_STANDARD, BASE64_URL_SAFE] {
        for offset in 0..3 {
            add(base64_fragment(bytes, offset, alphabet).into_bytes());
        }
    }
    for offset in 0..5 {
        add(base32_fragment(bytes, offset).into_bytes());
    }
    // Every character escaped: JSON's \uXXXX, HTML's numeric entities.
    add(secret
        .encode_utf16()
        .map(|unit| format!("\\u{unit:04x}"))
        .collect::<String>()
        .into_bytes());
    add(secret
        .chars()
        .map(|c| format!("&#{};", c as u32))
        .collect::<String>()
        .into_bytes());
    add(secret
        .chars()
        .map(|c| format!("&#x{:x};", c as u32))
        .collect::<String>()
        .into_bytes());
    add(secret.chars().rev().collect::<String>().into_bytes());
    forms
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// As [`base64_fragment`], for RFC 4648 base32 (groups of five bytes, five alignments).
fn base32_fragment(secret: &[u8], offset: usize) -> String {
    let mut bytes = vec![0u8; offset];
    bytes.extend_from_slice(secret);
    let first_bit = offset * 8;
    let end_bit = first_bit + secret.len() * 8;
    let mut out = String::new();
    for (group_index, group) in bytes.chunks(5).enumerate() {
        let mut n = 0u64;
        for (i, &b) in group.iter().enumerate() {
            n |= u64::from(b) << (32 - 8 * i);
        }
        for i in 0..8 {
            let bit = group_index * 40 + i * 5;
            if bit >= first_bit && bit + 5 <= end_bit {
                out.push(BASE32[((n >> (35 - 5 * i)) & 31) as usize] as char);
            }
        }
    }
    out
}

/// The JSON string bodies (without quotes) serde, Python's `ensure_ascii` and Go write.
fn json_escapes(secret: &str) -> Vec<String> {
    let serde_form = serde_json::to_string(secret)
        .map(|quoted| quoted[1..quoted.len() - 1].to_string())
        .unwrap_or_default();
    let mut ascii_form = String::new();
    let mut go_form = String::new();
    for c in secret.chars() {
        match c {
            '"' => {
                ascii_form.push_str("\\\"");
                go_form.push_str("\\\"");
            }
            '\\' => {
                ascii_form.push_str("\\\\");
                go_form.push_str("\\\\");
            }
            '<' | '>' | '&' => {
                ascii_form.push(c);
                go_form.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_ascii() && !c.is_ascii_control() => {
                ascii_form.push(c);
                go_form.push(c);
            }
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    ascii_form.push_str(&format!("\\u{unit:04x}"));
                }
                if c.is_ascii_control() {
                    go_form.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    go_form.push(c);
                }
            }
        }
    }
    let slash_form = serde_form.replace('/', "\\/");
    vec![serde_form, ascii_form, go_form, slash_form]
}

/// Percent-encoding of every byte outside RFC 3986's unreserved set (`form`: space as `+`;
/// `every_byte`: all bytes, as some encoders do).
fn percent_encode(bytes: &[u8], upper: bool, form: bool, every_byte: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if form && b == b' ' {
            out.push('+');
        } else if !every_byte && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

const BASE64_STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL_SAFE: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that the secret alone determines when it follows `offset` other
/// bytes (0, 1 or 2: every alignment in a group of three), wherever it sits in the encoded
/// text: the characters that mix in bits of the bytes before or after are left out.
fn base64_fragment(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let mut bytes = vec![0u8; offset];
    bytes.extend_from_slice(secret);
    let first_bit = offset * 8;
    let end_bit = first_bit + secret.len() * 8;
    let mut out = String::new();
    for (group_index, group) in bytes.chunks(3).enumerate() {
        let mut n = 0u32;
        for (i, &b) in group.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            let bit = group_index * 24 + i * 6;
            if bit >= first_bit && bit + 6 <= end_bit {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard_base64(bytes: &[u8]) -> String {
        let mut out = String::new();
        for group in bytes.chunks(3) {
            let mut n = 0u32;
            for (i, &b) in group.iter().enumerate() {
                n |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=group.len() {
                out.push(BASE64_STANDARD[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn removes_the_secret_and_any_long_piece_of_it() {
        let key = "sk-live-0123456789abcdef";
        let r = Redactor::of(key);
        assert_eq!(r.redact(&format!("key {key} refused")), "key *** refused");
        assert_eq!(r.redact("prefix sk-live-0123 only"), "prefix *** only");
        assert_eq!(r.redact("suffix 89abcdef only"), "suffix *** only");
        assert_eq!(r.redact("short sk-live piece"), "short sk-live piece");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn removes_every_encoding_at_every_alignment() {
        let key = r#"sk-"quo\ted"/é-0123456789"#;
        let r = Redactor::of(key);
        let json = serde_json::to_string(key).unwrap();
        // (encoded text, how many of its characters encode something else than the key)
        let mut texts = vec![
            (json.clone(), 2),
            (json.replace('/', "\\/"), 2),
            (percent_encode(key.as_bytes(), true, false, false), 0),
            (percent_encode(key.as_bytes(), false, false, false), 0),
            (hex(key.as_bytes(), false), 0),
            (hex(key.as_bytes(), true), 0),
        ];
        for prefix in ["", "B", "Be", "Bearer ", "user:"] {
            let encoded = standard_base64(format!("{prefix}{key}").as_bytes());
            // The prefix's characters, one that mixes it with the key, and at the end at
            // most two that mix the key with padding.
            let other = prefix.len() * 4 / 3 + 1 + 3;
            texts.push((encoded.clone(), other));
            texts.push((encoded.replace('+', "-").replace('/', "_"), other));
        }
        for (text, other) in texts {
            let redacted = r.redact(&text);
            assert!(redacted.contains(MASK), "{text} → {redacted}");
            let kept = redacted.replace(MASK, "");
            assert!(kept.len() <= other, "{text} → {redacted}");
        }
    }

    #[test]
    fn short_secrets_are_removed_whole_and_tiny_ones_not_at_all() {
        let r = Redactor::of("pw12");
        assert_eq!(r.redact("the pw12 is"), "the *** is");
        assert_eq!(r.redact("pw1 alone"), "pw1 alone");
        let tiny = Redactor::of("ab");
        assert!(tiny.is_empty());
        assert_eq!(tiny.redact("database"), "database");
    }

    #[test]
    fn multi_byte_characters_stay_whole() {
        let secret = "ééééééééé-secret";
        let r = Redactor::of(secret);
        let text = format!("x{}y", &secret["é".len()..]);
        let redacted = r.redact(&text);
        assert_eq!(redacted, "x***y");
        let r = Redactor::of("abcdefgh-ij");
        assert_eq!(r.redact("é abcdefgh é"), "é *** é");
    }
}
