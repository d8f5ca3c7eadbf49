//! Property tests of the backup reader and validator over generated and mutated files: any
//! bytes give a verdict (a valid record, problems, or a read error), never a panic or a hang.
//! `PROPTEST_CASES=100000 cargo test --test fuzz_reader` runs it longer.

use std::fs;
use std::io::Write;

use proptest::prelude::*;

fn sample_bytes() -> Vec<u8> {
    fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/checksum-mismatch.json"
    ))
    .unwrap()
}

fn check(bytes: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    // Either outcome is fine; what matters is that it returns.
    let _ = golden::validate::validate_file(file.path());
}

// 256 cases each by default; PROPTEST_CASES sets more (`make fuzz`).
proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn mutated_backups_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample_bytes();
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        if truncate {
            let at = cut.index(bytes.len());
            bytes.truncate(at);
        }
        check(&bytes);
    }

    #[test]
    fn json_values_in_place_of_fields_never_panic(
        field in prop::sample::select(vec!["id", "url", "title", "chunks", "artifact", "chunk_index", "content", "created_at"]),
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([1, "a", null])),
            Just(serde_json::json!({"nested": {"deeper": []}})),
        ],
    ) {
        let mut data: serde_json::Value = serde_json::from_slice(&sample_bytes()).unwrap();
        // The chunk first: replacing the analysis's "chunks" would leave no chunk to index.
        data["analyses"][0]["chunks"][0][field] = value.clone();
        data["analyses"][0][field] = value;
        check(&serde_json::to_vec(&data).unwrap());
    }
}
