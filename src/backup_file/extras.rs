//! The keys of a backup file's top level and of its `metadata` that golden does not define:
//! kept in `dataset_extras` by `restore` and written back by `backup`, so that a file from
//! another tool (SkillForge's `source` and `fixtures`, say) loses nothing on the way through.

use serde_json::Value;

use super::reader::Header;
use super::record::Extra;

/// The `metadata` keys golden computes itself: a file's own values of them are not kept.
pub const METADATA_KEYS: [&str; 6] = [
    "total_analyses",
    "total_chunks",
    "total_artifacts",
    "total_queries",
    "status_filter",
    "checksum",
];

/// The top-level key of artifacts whose analysis is not in the file: they cannot be restored
/// as rows (an artifact needs its analysis), so they are kept as they are, and named.
pub const ORPHAN_ARTIFACTS_KEY: &str = "orphan_artifacts";

/// The `dataset_extras` key that holds the file's own `metadata` keys.
pub const METADATA_ROW: &str = "metadata";

/// A file's keys beyond golden's, at its top level and in its `metadata`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileExtras {
    pub metadata: Extra,
    pub top: Extra,
}

impl FileExtras {
    /// Takes the extras out of a file's header (they may be large, `fixtures` say: moved,
    /// never copied).
    pub fn take_from(header: &mut Header) -> FileExtras {
        let metadata = match &mut header.metadata {
            Some(Value::Object(metadata)) => {
                let keys: Vec<String> = metadata
                    .keys()
                    .filter(|key| !METADATA_KEYS.contains(&key.as_str()))
                    .cloned()
                    .collect();
                keys.into_iter()
                    .filter_map(|key| metadata.remove(&key).map(|value| (key, value)))
                    .collect()
            }
            _ => Extra::new(),
        };
        FileExtras {
            metadata,
            top: std::mem::take(&mut header.extras),
        }
    }

    /// The extras of the rows of `dataset_extras`.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, Value)>) -> FileExtras {
        let mut extras = FileExtras::default();
        for (key, value) in rows {
            match (key.as_str(), value) {
                (METADATA_ROW, Value::Object(metadata)) => extras.metadata = metadata,
                (_, value) => {
                    extras.top.insert(key, value);
                }
            }
        }
        extras
    }

    /// The rows of `dataset_extras` that hold these extras, by reference.
    pub fn rows(&self) -> Vec<(&str, std::borrow::Cow<'_, Value>)> {
        let mut rows: Vec<(&str, std::borrow::Cow<'_, Value>)> = self
            .top
            .iter()
            .map(|(key, value)| (key.as_str(), std::borrow::Cow::Borrowed(value)))
            .collect();
        if !self.metadata.is_empty() {
            rows.push((
                METADATA_ROW,
                std::borrow::Cow::Owned(Value::Object(self.metadata.clone())),
            ));
        }
        rows
    }
}

/// Adds to `kept` what `file` has and `kept` lacks, as an append does: an object's missing
/// keys, a list's missing elements (an object element is told by its `id` when it has one),
/// recursively. A scalar that differs keeps `kept`'s value and is named in `differing` (by
/// its path from `path`).
pub fn add_missing(kept: &mut Value, file: &Value, path: &str, differing: &mut Vec<String>) {
    match (kept, file) {
        (Value::Object(kept), Value::Object(file)) => {
            for (key, value) in file {
                match kept.get_mut(key) {
                    Some(existing) => {
                        add_missing(existing, value, &format!("{path}.{key}"), differing)
                    }
                    None => {
                        kept.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(kept), Value::Array(file)) => {
            for (position, element) in file.iter().enumerate() {
                // An element kept as it is needs nothing (two elements may share an id).
                if kept.contains(element) {
                    continue;
                }
                let same = |existing: &Value| match (element.get("id"), existing.get("id")) {
                    (Some(id), Some(other)) => id == other,
                    _ => false,
                };
                match kept.iter_mut().find(|existing| same(existing)) {
                    Some(existing) => {
                        add_missing(existing, element, &format!("{path}[{position}]"), differing)
                    }
                    None => kept.push(element.clone()),
                }
            }
        }
        (kept, file) => {
            if kept != file {
                differing.push(path.to_string());
            }
        }
    }
}

/// Orders `orphan_artifacts` by id, as the dialect readers write it.
pub fn sort_orphans(value: &mut Value) {
    if let Value::Array(orphans) = value {
        orphans.sort_by(|a, b| {
            let id = |v: &Value| v.get("id").map(Value::to_string).unwrap_or_default();
            id(a).cmp(&id(b))
        });
    }
}

/// Turns the numbers of `value` into the form jsonb gives back, so that what golden writes
/// from a file (`convert`) is what it writes after a restore (`backup`), and a comparison
/// with the database does not see a difference jsonb made. jsonb keeps a number's decimal
/// value and scale: `1e16` comes back as `10000000000000000`, an integer; `-0.0` as `0.0`;
/// `1.0`, `0.1` or `1e-7` as they were.
pub fn as_jsonb_returns(value: &mut Value) {
    match value {
        Value::Number(number) => {
            let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
                return;
            };
            if float == 0.0 {
                *number = serde_json::Number::from_f64(0.0).unwrap_or_else(|| number.clone());
                return;
            }
            // serde_json writes a float in its shortest form; one with a positive exponent
            // (`1.5e+16`) has no fractional digits, and jsonb prints its decimal value as an
            // integer, which reads back as one when it fits 64 bits.
            if let Some(integer) = integer_of(&number.to_string()) {
                *number = integer;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_jsonb_returns),
        Value::Object(object) => object.values_mut().for_each(as_jsonb_returns),
        _ => {}
    }
}

/// The integer a float written as `1.2345e+19` stands for, decimally (not the float's binary
/// value), when it has no fractional digits and fits 64 bits.
fn integer_of(written: &str) -> Option<serde_json::Number> {
    let (mantissa, exponent) = written.split_once('e')?;
    let exponent: usize = exponent.strip_prefix('+')?.parse().ok()?;
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let zeros = exponent.checked_sub(fraction.len())?;
    let digits = format!("{whole}{fraction}{}", "0".repeat(zeros));
    if negative {
        format!("-{digits}")
            .parse::<i64>()
            .ok()
            .map(serde_json::Number::from)
    } else {
        digits.parse::<u64>().ok().map(serde_json::Number::from)
    }
}

/// Whether a number reads back as JSON once jsonb has written it: jsonb writes a float with a
/// positive exponent as all its digits, and the largest doubles (`1.7976931348623157e+308`)
/// then round past the largest double when read again.
pub fn reads_back_from_jsonb(number: &serde_json::Number) -> bool {
    let written = number.to_string();
    let Some((mantissa, exponent)) = written.split_once('e') else {
        return true;
    };
    let Some(Ok(exponent)) = exponent.strip_prefix('+').map(str::parse::<usize>) else {
        return true;
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let Some(zeros) = exponent.checked_sub(fraction.len()) else {
        return true;
    };
    let digits = format!("{whole}{fraction}{}", "0".repeat(zeros));
    serde_json::from_str::<Value>(&digits).is_ok()
}

/// [`as_jsonb_returns`] of every value of a record's extras.
pub fn extras_as_jsonb_returns(extra: &mut Extra) {
    extra.values_mut().for_each(as_jsonb_returns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_append_adds_what_is_missing_and_names_what_differs() {
        let mut kept = json!({"documents": [{"id": "a", "title": "A"}], "source": "first", "n": 1});
        let file = json!({"documents": [{"id": "b"}, {"id": "a", "title": "A2", "tags": []}],
                          "source": "second", "extra": true});
        let mut differing = Vec::new();
        add_missing(&mut kept, &file, "fixtures", &mut differing);
        assert_eq!(
            kept,
            json!({"documents": [{"id": "a", "title": "A", "tags": []}, {"id": "b"}],
                   "source": "first", "n": 1, "extra": true})
        );
        assert_eq!(
            differing,
            ["fixtures.documents[1].title", "fixtures.source"]
        );
    }

    #[test]
    fn numbers_take_the_form_jsonb_gives_back() {
        let mut value: Value = serde_json::from_str(
            r#"[1e16, 1.2345678901234567e19, -0.0, 1.0, 0.1, 1e-7, 3, -2e3, 1e300]"#,
        )
        .unwrap();
        as_jsonb_returns(&mut value);
        assert_eq!(
            value.to_string(),
            "[10000000000000000,12345678901234567000,0.0,1.0,0.1,1e-7,3,-2000.0,1e+300]"
        );
    }

    #[test]
    fn the_largest_doubles_do_not_read_back_from_jsonb() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert!(!reads_back_from_jsonb(&number("1.7976931348623157e308")));
        assert!(!reads_back_from_jsonb(&number("-1.7976931348623157e308")));
        for fine in ["1.797e308", "1e308", "1.5e300", "0.1", "5e-324", "12"] {
            assert!(reads_back_from_jsonb(&number(fine)), "{fine}");
        }
    }
}
