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

/// Whether PostgreSQL stores `at` exactly as it is: within `timestamptz`'s range (4714-11-24
/// BC, 294276 AD), and no finer than its microseconds. A leap second or a nanosecond would be
/// stored as another instant, and `verify --against-db` would then disagree with the file
/// right after a clean restore; golden refuses them rather than alter them silently.
pub fn storable(at: &DateTime<Utc>) -> Result<(), String> {
    use chrono::Timelike;
    // Julian day 0, PostgreSQL's first timestamp: 4714-11-24 BC is the ISO year -4713.
    let first = NaiveDateTime::parse_from_str("-4713-11-24 00:00:00", "%Y-%m-%d %H:%M:%S")
        .map_err(|e| format!("internal error: the first storable timestamp: {e}"))?
        .and_utc();
    if *at < first {
        return Err(format!(
            "{} is before 4714-11-24 BC, the first instant PostgreSQL stores",
            format(at)
        ));
    }
    // chrono's last year (262143) is before PostgreSQL's (294276): no later check needed.
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return Err(format!(
            "{} is a leap second, which PostgreSQL stores as the next second; write it as {}",
            format(at),
            format(
                &(*at
                    + chrono::Duration::nanoseconds(i64::from(
                        1_000_000_000 - (nanos - 1_000_000_000)
                    )))
            )
        ));
    }
    if !nanos.is_multiple_of(1_000) {
        return Err(format!(
            "{} has more than microsecond precision, which PostgreSQL rounds away; round it to microseconds",
            at.format("%Y-%m-%dT%H:%M:%S%.9fZ")
        ));
    }
    Ok(())
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
        for refused in [
            "-4713-11-23T23:59:59.999999Z",
            "2016-12-31T23:59:60Z",
            "2020-01-01T00:00:00.1234567Z",
        ] {
            let parsed = parse(refused).unwrap();
            assert!(storable(&parsed).is_err(), "{refused}");
        }
        for kept in ["-4713-11-24T00:00:00Z", "2020-01-01T00:00:00.123456Z"] {
            assert_eq!(storable(&parse(kept).unwrap()), Ok(()), "{kept}");
        }
        assert!(parse("2025-13-40 10:30:00").is_err());
        assert_eq!(format(&parse(expected).unwrap()).len(), WRITTEN_WIDTH);
    }
}
