//! `--embed-provider local`: all-MiniLM-L6-v2 in this process. Its vectors against reference
//! vectors computed by an independent implementation (`scripts/reference-vectors.py`: float64
//! numpy and its own tokenizer over the same files, committed in
//! `tests/data/minilm-reference.json`), a restore and an evaluation of the sample with it, the
//! cache in front of it, and the errors of a missing or corrupt model folder.
//!
//! The model (90 MB) comes from `make model`, which `make test` runs. Without it these tests
//! skip with a message, unless `CI` is set: CI must run them.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{golden, json_of, sample_path, stderr_of, workdir, TestDb};
use golden::embed::local::{self, LocalProvider};
use golden::embed::{InputKind, ModelInfo, Provider, ProviderKind};
use serde_json::Value;

/// The model folder, or `None` (skip) when it is absent outside CI.
fn model_dir() -> Option<PathBuf> {
    match local::find_dir(None) {
        Ok(dir) => Some(dir),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: the local model is absent ({e}); `make model` fetches it");
            None
        }
        Err(e) => {
            panic!("CI is set, so the local model must be there (make test runs make model): {e}")
        }
    }
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let norm_a: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let norm_b: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (norm_a * norm_b)
}

#[test]
fn vectors_match_an_independent_implementation() {
    let Some(dir) = model_dir() else { return };
    let provider = LocalProvider::load(
        &dir,
        ModelInfo {
            provider: ProviderKind::Local,
            model: local::model_id(),
            dims: local::DIMS,
        },
    )
    .unwrap();
    let references: Value =
        serde_json::from_str(&fs::read_to_string("tests/data/minilm-reference.json").unwrap())
            .unwrap();
    let references = references["references"].as_array().unwrap();
    assert!(
        references.iter().any(|r| r["tokens"] == 256),
        "one text past the model's 256 tokens"
    );
    let texts: Vec<&str> = references
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    // All at once (one micro-batch mixes lengths, so padding is exercised) and one by one.
    let together = provider.embed(&texts, InputKind::Document).unwrap();
    for (i, reference) in references.iter().enumerate() {
        let expected: Vec<f64> = reference["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let alone = provider.embed(&texts[i..=i], InputKind::Query).unwrap();
        for (how, vector) in [("in a batch", &together[i]), ("alone", &alone[0])] {
            assert_eq!(vector.len(), 384);
            let similarity = cosine(vector, &expected);
            assert!(
                similarity >= 0.9999,
                "{:?} {how}: cosine {similarity} with the reference",
                texts[i]
            );
        }
    }
}

#[test]
fn the_sample_restores_with_the_local_model_and_retrieves_by_meaning() {
    if model_dir().is_none() {
        return;
    }
    let db = TestDb::migrated();
    let dir = workdir();
    let sample = sample_path();
    let restore = |args: &[&str]| {
        let mut all = vec!["restore", "--json"];
        all.extend_from_slice(args);
        all.push(sample.to_str().unwrap());
        let output = golden(Some(&db), dir.path()).args(&all).output().unwrap();
        (output.status.code(), json_of_or_stderr(&output))
    };
    // A new database: its vector(1024) column holds nothing yet, so the first restore, by the
    // default path, moves it to the model's 384.
    let (code, first) = restore(&["--embed-provider", "local"]);
    assert_eq!(code, Some(0), "{first}");
    assert_eq!(first["embeddings_computed"], 188 - duplicates_in_sample());
    assert_eq!(
        db.count("SELECT vector_dims(embedding) FROM chunks LIMIT 1"),
        384
    );
    assert!(db.vector_index().is_some(), "the HNSW index is there");

    // Back to a 1024-dimension model: refused on a full column, with the way to do it.
    let (code, refused) = restore(&["--replace", "--yes", "--embed-provider", "hash"]);
    assert_eq!(code, Some(2));
    assert!(
        refused
            .as_str()
            .unwrap_or_default()
            .contains("--resize-column"),
        "{refused}"
    );
    let (code, hashed) = restore(&[
        "--replace",
        "--yes",
        "--resize-column",
        "--embed-provider",
        "hash",
    ]);
    assert_eq!(code, Some(0), "{hashed}");
    assert_eq!(
        db.count("SELECT vector_dims(embedding) FROM chunks LIMIT 1"),
        1024
    );
    // And to the local model again: no model call, every vector from the cache.
    let (code, again) = restore(&[
        "--replace",
        "--yes",
        "--resize-column",
        "--embed-provider",
        "local",
    ]);
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(again["embeddings_computed"], 0);
    assert_eq!(
        db.count("SELECT vector_dims(embedding) FROM chunks LIMIT 1"),
        384
    );

    let output = golden(Some(&db), dir.path())
        .args(["evaluate", "--json", "--exact", "--embed-provider", "local"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report = json_of(&output);
    let recall = report["overall"]["recall"].as_f64().unwrap();
    // FACTS.md: 0.93 for this model, 0.57 for the lexical hash embedder.
    assert!(recall >= 0.85, "recall@5 {recall}");
    assert_eq!(report["dims"], 384);
}

/// Chunks of the sample whose text another chunk repeats: embedded once.
fn duplicates_in_sample() -> u64 {
    let file: Value = serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut repeated = 0;
    for analysis in file["analyses"].as_array().unwrap() {
        for chunk in analysis["chunks"].as_array().unwrap() {
            if !seen.insert(chunk["content"].as_str().unwrap().to_string()) {
                repeated += 1;
            }
        }
    }
    repeated
}

/// The JSON summary, or the error message as a JSON string.
fn json_of_or_stderr(output: &std::process::Output) -> Value {
    if output.status.code() == Some(0) {
        json_of(output)
    } else {
        Value::String(stderr_of(output))
    }
}

#[test]
fn a_missing_or_corrupt_model_folder_says_how_to_get_the_model() {
    let Some(dir) = model_dir() else { return };
    let db = TestDb::with_sample();
    let work = workdir();
    let evaluate = |model_dir: &std::path::Path| {
        golden(Some(&db), work.path())
            .args(["evaluate", "--embed-provider", "local", "--embed-model-dir"])
            .arg(model_dir)
            .output()
            .unwrap()
    };
    let missing = evaluate(&work.path().join("nowhere"));
    assert_eq!(missing.status.code(), Some(2), "{}", stderr_of(&missing));
    assert!(
        stderr_of(&missing).contains("make model"),
        "{}",
        stderr_of(&missing)
    );

    let corrupt = work.path().join("corrupt");
    fs::create_dir_all(corrupt.join("1_Pooling")).unwrap();
    for line in fs::read_to_string(dir.parent().unwrap().join("all-MiniLM-L6-v2.sha256"))
        .unwrap_or_else(|_| include_str!("../models/all-MiniLM-L6-v2.sha256").to_string())
        .lines()
    {
        let name = line.split_once("  ").unwrap().1;
        fs::copy(dir.join(name), corrupt.join(name)).unwrap();
    }
    let mut tokenizer = fs::read(corrupt.join("tokenizer.json")).unwrap();
    tokenizer.truncate(tokenizer.len() - 10);
    fs::write(corrupt.join("tokenizer.json"), tokenizer).unwrap();
    let refused = evaluate(&corrupt);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    let stderr = stderr_of(&refused);
    assert!(
        stderr.contains("tokenizer.json") && stderr.contains("make model"),
        "{stderr}"
    );

    // Another size than the model's is refused before anything runs.
    let other = golden(Some(&db), work.path())
        .args([
            "evaluate",
            "--embed-provider",
            "local",
            "--embed-dims",
            "1024",
        ])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr_of(&other).contains("384"), "{}", stderr_of(&other));
}
