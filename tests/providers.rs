//! Each embedding provider over real HTTP against a server on 127.0.0.1, with the faults of
//! the real world: rate limits, server errors, timeouts, dropped connections, batches too
//! large, and answers that are wrong in count, size, order or numbers.

mod common;

use std::time::{Duration, Instant};

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, json_of, sample_path, stderr_of, workdir, TestDb};
use serde_json::Value;

const SENTINEL_KEY: &str = "sk-test-SENTINEL-0123456789";

fn provider_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => "openai",
        Protocol::Voyage => "voyage",
        Protocol::Ollama => "ollama",
    }
}

/// `golden restore` of the sample against `server`, with `extra` arguments.
fn restore(db: &TestDb, server: &EmbedServer, extra: &[&str]) -> std::process::Output {
    let dir = workdir();
    let mut cmd = golden(Some(db), dir.path());
    cmd.args(["restore", "--json", sample_path().to_str().unwrap()])
        .args(["--embed-provider", provider_name(server.protocol())]);
    // Defaults for the test, unless the test sets them itself.
    for (flag, value) in [
        ("--embed-url", server.url.as_str()),
        ("--embed-max-retries", "3"),
        ("--embed-timeout", "5"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.env("VOYAGE_API_KEY", SENTINEL_KEY)
        .env("OPENAI_API_KEY", SENTINEL_KEY)
        .args(extra);
    let output = cmd.output().unwrap();
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr_of(&output)
    );
    assert!(
        !everything.contains(SENTINEL_KEY),
        "the API key leaked:\n{everything}"
    );
    output
}

fn first_chunk() -> (String, String) {
    let sample: Value = serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap();
    let chunk = &sample["analyses"][0]["chunks"][0];
    (
        chunk["id"].as_str().unwrap().to_string(),
        chunk["content"].as_str().unwrap().to_string(),
    )
}

/// The stored vector of a chunk is the server's vector for its text.
fn assert_vector_of_first_chunk(db: &TestDb, dims: usize) {
    let (id, content) = first_chunk();
    let stored = db.embedding_of(&id).expect("an embedding");
    let expected = golden::embed::hash::embed_text(&content, dims);
    assert_eq!(stored.len(), dims);
    assert!(
        stored
            .iter()
            .zip(&expected)
            .all(|(a, b)| (a - b).abs() < 1e-6),
        "vector differs"
    );
}

#[test]
fn openai_protocol_with_key_base_url_variants_and_dimensions_only_when_asked() {
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    let output = restore(&db, &server, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let summary = json_of(&output);
    assert_eq!(summary["chunks_inserted"], 188);
    assert_eq!(summary["embeddings_computed"], 188);
    assert_eq!(
        summary["embedding_requests"], 2,
        "188 chunks in requests of 128"
    );
    let requests = server.requests();
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {SENTINEL_KEY}"))));
    assert!(requests
        .iter()
        .all(|r| r.body["model"] == "text-embedding-3-small"));
    assert!(
        requests.iter().all(|r| r.body.get("dimensions").is_none()),
        "not asked, not sent"
    );
    assert_vector_of_first_chunk(&db, 1024);

    // A base URL written with /v1 (as OpenAI SDKs write it) and an explicit dimension.
    let db = TestDb::migrated();
    let with_v1 = format!("{}/v1/", server.url);
    let output = restore(
        &db,
        &server,
        &[
            "--embed-url",
            &with_v1,
            "--embed-dims",
            "1024",
            "--embed-model",
            "bge-m3",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let last = server.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/embeddings");
    assert_eq!(last.body["dimensions"], 1024);
    assert_eq!(last.body["model"], "bge-m3");
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding_model = 'bge-m3'"),
        188
    );
}

#[test]
fn voyage_protocol_sends_document_input_type_and_output_dimension() {
    let server = EmbedServer::start(Protocol::Voyage);
    let db = TestDb::migrated();
    let output = restore(&db, &server, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    for request in server.requests() {
        assert_eq!(request.body["input_type"], "document");
        assert_eq!(request.body["output_dimension"], 1024);
        assert_eq!(request.body["model"], "voyage-3.5");
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {SENTINEL_KEY}"))
        );
    }
    assert_vector_of_first_chunk(&db, 1024);
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding_model = 'voyage-3.5'"),
        188
    );

    // No key: a clear usage error before anything is sent.
    let dir = workdir();
    let no_key = golden(Some(&db), dir.path())
        .args([
            "restore",
            sample_path().to_str().unwrap(),
            "--embed-provider",
            "voyage",
            "--embed-url",
            &server.url,
        ])
        .env_remove("VOYAGE_API_KEY")
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(2));
    assert!(stderr_of(&no_key).contains("VOYAGE_API_KEY"));
}

#[test]
fn ollama_protocol() {
    let server = EmbedServer::start(Protocol::Ollama);
    let db = TestDb::migrated();
    let output = restore(&db, &server, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let requests = server.requests();
    assert!(requests
        .iter()
        .all(|r| r.path == "/api/embed" && r.body["model"] == "mxbai-embed-large"));
    assert!(requests.iter().all(|r| r.authorization.is_none()));
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .collect();
    assert!(
        sizes.iter().all(|&n| n <= 32),
        "requests of at most 32 inputs: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 188);
    assert_eq!(json_of(&output)["embedding_requests"], sizes.len());
    assert_vector_of_first_chunk(&db, 1024);
}

#[test]
fn rate_limits_server_errors_timeouts_and_dropped_connections_are_retried() {
    let server = EmbedServer::start(Protocol::OpenAi);
    server.push_faults([
        Fault::Status(429, "slow down", Some("1")),
        Fault::Status(503, "overloaded", None),
        Fault::Delay(Duration::from_secs(3)),
        Fault::Drop,
    ]);
    let db = TestDb::migrated();
    let started = Instant::now();
    let output = restore(
        &db,
        &server,
        &[
            "--embed-concurrency",
            "1",
            "--embed-timeout",
            "1",
            "--embed-max-retries",
            "5",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let stderr = stderr_of(&output);
    for expected in [
        "rate limiting (HTTP 429)",
        "HTTP 503",
        "did not answer within 1 s",
        "retry 4 of 5",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    // Two good requests and four faulty ones, plus any request ureq itself repeats on a pooled
    // connection the server closed.
    assert!(server.request_count() >= 2 + 4, "{stderr}");
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL"),
        188
    );
    assert_vector_of_first_chunk(&db, 1024);
}

#[test]
fn refused_keys_and_missing_models_fail_at_once_with_a_readable_message() {
    for (status, expected) in [
        (401, "refused the API key (HTTP 401)"),
        (403, "OPENAI_API_KEY"),
        (404, "check --embed-url and --embed-model"),
        (
            400,
            "rejected the request (HTTP 400): {\"error\":\"bad input\"}",
        ),
    ] {
        let server = EmbedServer::start(Protocol::OpenAi);
        let message = if status == 400 { "bad input" } else { "nope" };
        server.fail_after(0, Fault::Status(status, message, None));
        let db = TestDb::migrated();
        let output = restore(&db, &server, &[]);
        assert_eq!(output.status.code(), Some(1), "{status}");
        assert!(
            stderr_of(&output).contains(expected),
            "{status}: {}",
            stderr_of(&output)
        );
        assert!(
            server.request_count() <= 2,
            "{status}: not retried ({} requests)",
            server.request_count()
        );
        assert_eq!(
            db.count("SELECT count(*) FROM analyses"),
            0,
            "{status}: nothing written"
        );
    }
}

#[test]
fn too_large_batches_are_split_and_the_size_remembered() {
    let server = EmbedServer::start(Protocol::OpenAi);
    server.max_batch(50);
    let db = TestDb::migrated();
    let output = restore(&db, &server, &["--embed-concurrency", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL"),
        188
    );
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes[0], 128, "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n > 50).count() <= 2,
        "after learning the limit no request is refused again: {sizes:?}"
    );
    assert!(stderr_of(&output).contains("too large"));
}

#[test]
fn wrong_answers_are_errors_that_name_provider_model_and_problem() {
    for (fault, expected) in [
        (Fault::MissingVector, "127 vectors for 128 inputs"),
        (
            Fault::Dims(768),
            "768 dimensions for input 0, expected 1024",
        ),
        (Fault::DuplicateIndex, "index 0 twice"),
        (Fault::Infinite, "number inf"),
    ] {
        let server = EmbedServer::start(Protocol::OpenAi);
        server.push_faults([fault.clone()]);
        let db = TestDb::migrated();
        let output = restore(&db, &server, &["--embed-concurrency", "1"]);
        assert_eq!(output.status.code(), Some(1), "{fault:?}");
        let stderr = stderr_of(&output);
        assert!(stderr.contains(expected), "{fault:?}: {stderr}");
        assert!(
            stderr.contains("openai model text-embedding-3-small"),
            "{fault:?}: {stderr}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM chunks"),
            0,
            "{fault:?}: nothing written"
        );
    }
}

#[test]
fn answers_in_another_order_are_put_back_by_index() {
    let server = EmbedServer::start(Protocol::Voyage);
    server.push_faults([Fault::Reversed, Fault::Reversed]);
    let db = TestDb::migrated();
    let output = restore(&db, &server, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_vector_of_first_chunk(&db, 1024);
    // Every chunk carries the vector of its own text.
    let sample: Value = serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap();
    for analysis in sample["analyses"].as_array().unwrap().iter().take(5) {
        for chunk in analysis["chunks"].as_array().unwrap() {
            let stored = db.embedding_of(chunk["id"].as_str().unwrap()).unwrap();
            let expected =
                golden::embed::hash::embed_text(chunk["content"].as_str().unwrap(), 1024);
            assert!(stored
                .iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }
}

#[test]
fn a_provider_that_stays_down_fails_after_the_retry_budget() {
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(0, Fault::Status(500, "down", Some("0")));
    let db = TestDb::migrated();
    let output = restore(
        &db,
        &server,
        &["--embed-max-retries", "2", "--embed-concurrency", "1"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("gave up after 2 retries"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(server.request_count(), 3);

    // Nobody listening at all.
    let dir = workdir();
    let refused = golden(Some(&db), dir.path())
        .args([
            "restore",
            sample_path().to_str().unwrap(),
            "--embed-provider",
            "ollama",
        ])
        .args([
            "--embed-url",
            "http://127.0.0.1:9",
            "--embed-max-retries",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains("127.0.0.1:9"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(db.count("SELECT count(*) FROM analyses"), 0);
}

#[test]
fn an_api_key_is_not_sent_over_plain_http_to_another_host() {
    let db = TestDb::migrated();
    let dir = workdir();
    let output = golden(Some(&db), dir.path())
        .args([
            "restore",
            sample_path().to_str().unwrap(),
            "--embed-provider",
            "openai",
        ])
        .args(["--embed-url", "http://embeddings.internal:8080"])
        .env("OPENAI_API_KEY", SENTINEL_KEY)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("--embed-allow-http"));
    assert!(!stderr_of(&output).contains(SENTINEL_KEY));
}
