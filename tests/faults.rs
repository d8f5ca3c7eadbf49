//! Provider faults at random: a server that fails a fifth of the requests (429, 500, dropped
//! connections, answers past the timeout) gives the same vectors as one that never fails.

mod common;

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, sample_path, stderr_of, workdir, TestDb};

fn run(db: &TestDb, server: &EmbedServer, args: &[&str]) -> std::process::Output {
    let dir = workdir();
    golden(Some(db), dir.path())
        .args(args)
        .args([
            "--embed-provider",
            "openai",
            "--embed-url",
            &server.url,
            "--embed-no-cache",
        ])
        .args([
            "--embed-batch-size",
            "16",
            "--embed-timeout",
            "1",
            "--embed-max-retries",
            "10",
        ])
        .output()
        .unwrap()
}

#[test]
fn restore_and_regenerate_through_random_faults_give_the_vectors_of_a_clean_run() {
    let sample = sample_path();
    let sample = sample.to_str().unwrap();
    let clean_server = EmbedServer::start(Protocol::OpenAi);
    let clean = TestDb::migrated();
    let ok = run(&clean, &clean_server, &["restore", sample]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr_of(&ok));

    let faulty_server = EmbedServer::start(Protocol::OpenAi);
    faulty_server.random_faults(20, 7);
    let faulty = TestDb::migrated();
    let output = run(
        &faulty,
        &faulty_server,
        &["restore", "--replace", "--yes", sample],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("retry"),
        "faults happened: {}",
        stderr_of(&output)
    );
    assert_eq!(faulty.digest(), clean.digest(), "same rows, same vectors");

    // regenerate to another model through the same faults, and without.
    let clean_regen = run(
        &clean,
        &clean_server,
        &["regenerate-embeddings", "--embed-model", "other"],
    );
    assert_eq!(
        clean_regen.status.code(),
        Some(0),
        "{}",
        stderr_of(&clean_regen)
    );
    let faulty_regen = run(
        &faulty,
        &faulty_server,
        &["regenerate-embeddings", "--embed-model", "other"],
    );
    assert_eq!(
        faulty_regen.status.code(),
        Some(0),
        "{}",
        stderr_of(&faulty_regen)
    );
    assert_eq!(faulty.digest(), clean.digest());
}

#[test]
fn a_provider_down_for_good_fails_the_replace_quickly_and_keeps_the_data() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let before = db.digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(0, Fault::Status(503, "down", Some("0")));
    let started = std::time::Instant::now();
    let output = golden(Some(&db), dir.path())
        .args([
            "restore",
            "--replace",
            "--yes",
            sample_path().to_str().unwrap(),
        ])
        .args([
            "--embed-provider",
            "openai",
            "--embed-url",
            &server.url,
            "--embed-no-cache",
            "--embed-max-retries",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        stderr_of(&output).contains("HTTP 503")
            && stderr_of(&output).contains("gave up after 2 retries")
    );
    assert_eq!(db.digest(), before);
}
