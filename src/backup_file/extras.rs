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
    /// The extras of a file's header, copied (for a comparison; a restore takes them).
    pub fn of_header(header: &Header) -> FileExtras {
        let metadata = match &header.metadata {
            Some(Value::Object(metadata)) => metadata
                .iter()
                .filter(|(key, _)| !METADATA_KEYS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            _ => Extra::new(),
        };
        FileExtras {
            metadata,
            top: header.extras.clone(),
        }
    }

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

    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty() && self.top.is_empty()
    }

    /// The number of artifacts kept because their analysis is not in the file.
    pub fn orphan_artifacts(&self) -> usize {
        self.top
            .get(ORPHAN_ARTIFACTS_KEY)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    }
}
