//! Datetimes in backup files. We write one fixed-width form, `2026-01-31T12:00:00.000000Z`
//! (microseconds, as PostgreSQL stores them, so a round trip is exact). We read that, any
//! RFC 3339 form, and Python's `str(datetime)` form of the original tool:
//! `2025-12-19 10:30:00.123456+00:00`, microseconds optional, offset optional (taken as UTC).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The width of every timestamp this tool writes; the writer patches one in place.
pub const WRITTEN_WIDTH: usize = "2026-01-31T12:00:00.000000Z".len();

pub fn format(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    let trimmed = text.trim();
    let normalized = trimmed.replacen('T', " ", 1).replace(['Z', 'z'], "+00:00");
    if let Ok(at) = DateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f%z") {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f") {
        return Ok(naive.and_utc());
    }
    Err(format!(
        "{text:?} is not a datetime (expected e.g. 2026-01-31T12:00:00.000000Z or 2026-01-31 12:00:00+00:00)"
    ))
}

/// `#[serde(with = "timestamp")]` for `DateTime<Utc>` fields.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(at))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_users_have_and_writes_one() {
        let expected = "2025-12-19T10:30:00.123456Z";
        for text in [
            "2025-12-19T10:30:00.123456Z",
            "2025-12-19 10:30:00.123456+00:00",
            "2025-12-19T11:30:00.123456+01:00",
            "2025-12-19 10:30:00.123456",
        ] {
            assert_eq!(format(&parse(text).unwrap()), expected, "{text}");
        }
        assert_eq!(
            format(&parse("2025-12-19 10:30:00+00:00").unwrap()),
            "2025-12-19T10:30:00.000000Z"
        );
        assert!(parse("yesterday").is_err());
        assert!(parse("2025-13-40 10:30:00").is_err());
        assert_eq!(format(&parse(expected).unwrap()).len(), WRITTEN_WIDTH);
    }
}
