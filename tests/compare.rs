//! `golden evaluate` comparing two models, or a run with a saved baseline: paired tests, the
//! gate, saved runs, and the TREC and BEIR exports checked by a reference implementation of
//! the metrics written here, from the exported files alone.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;

use common::embed_server::{EmbedServer, Protocol};
use common::{golden, json_of, stderr_of, workdir, TestDb};
use serde_json::Value;

fn run(db: &TestDb, dir: &Path, args: &[&str]) -> std::process::Output {
    golden(Some(db), dir).args(args).output().unwrap()
}

/// `golden evaluate --json --embed-provider hash …`: exit code and summary.
fn evaluate(db: &TestDb, dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["evaluate", "--json", "--embed-provider", "hash"];
    args.extend_from_slice(extra);
    let output = run(db, dir, &args);
    let code = output.status.code().unwrap();
    assert!(
        code == 0 || code == 3,
        "evaluate {extra:?} exited {code}: {}",
        stderr_of(&output)
    );
    (code, json_of(&output))
}

/// The overall figures of one metric in a comparison.
fn overall<'a>(report: &'a Value, metric: &str) -> &'a Value {
    report["comparison"]["overall"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} in {}", report["comparison"]))
}

const METRICS: [&str; 10] = [
    "recall",
    "precision",
    "mrr",
    "ndcg",
    "hit_rate",
    "doc_recall",
    "doc_precision",
    "doc_mrr",
    "doc_ndcg",
    "doc_hit_rate",
];

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|flip| flip["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_candidate_identical_to_the_current_model_differs_by_nothing() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let (code, report) = evaluate(&db, dir.path(), &["--candidate-dims", "1024"]);
    assert_eq!(code, 0);
    let comparison = &report["comparison"];
    assert_eq!(comparison["paired"], 44);
    for metric in METRICS {
        let figures = overall(&report, metric);
        assert_eq!(figures["difference"], 0.0, "{metric}: {figures}");
        assert_eq!(figures["p_value"], 1.0, "{metric}: {figures}");
        assert_eq!(
            figures["interval"],
            serde_json::json!([0.0, 0.0]),
            "{metric}"
        );
        assert_eq!(figures["reference"], figures["subject"], "{metric}");
        assert_eq!(
            (figures["wins"].as_u64(), figures["losses"].as_u64()),
            (Some(0), Some(0))
        );
    }
    assert_eq!(comparison["hit_to_miss"], serde_json::json!([]));
    assert_eq!(comparison["miss_to_hit"], serde_json::json!([]));
    // The candidate was searched exactly, so the current model was too.
    assert_eq!(report["search"], "exact");
}

#[test]
fn a_worse_candidate_is_reported_worse_with_its_flipped_queries() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let before = db.digest();
    // Feature hashing into 32 buckets: words collide, so retrieval is worse by construction.
    let (code, report) = evaluate(&db, dir.path(), &["--candidate-dims", "32", "--k", "5"]);
    assert_eq!(code, 0, "no gate was asked for");
    assert_eq!(db.digest(), before, "chunks.embedding must not be touched");
    assert_eq!(report["candidate"]["dims"], 32);
    let recall = overall(&report, "recall");
    assert!(recall["difference"].as_f64().unwrap() < -0.1, "{recall}");
    assert!(recall["p_value"].as_f64().unwrap() < 0.01, "{recall}");
    let (low, high) = (
        recall["interval"][0].as_f64().unwrap(),
        recall["interval"][1].as_f64().unwrap(),
    );
    assert!(
        low < recall["difference"].as_f64().unwrap() && high < 0.0,
        "{recall}"
    );
    assert!(recall["losses"].as_u64().unwrap() > recall["wins"].as_u64().unwrap());

    // The flips, checked against the per-query hits of two plain evaluations.
    let current_hits = hits(&evaluate(&db, dir.path(), &["--exact"]).1);
    hash_into_32_buckets(&db, dir.path());
    let candidate_hits = hits(&evaluate(&db, dir.path(), &["--exact", "--embed-dims", "32"]).1);
    let expected_flips: Vec<String> = current_hits
        .iter()
        .filter(|(id, hit)| **hit && candidate_hits.get(*id) == Some(&false))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!expected_flips.is_empty());
    assert_eq!(ids(&report["comparison"]["hit_to_miss"]), expected_flips);
    let expected_gains: Vec<String> = current_hits
        .iter()
        .filter(|(id, hit)| !**hit && candidate_hits.get(*id) == Some(&true))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids(&report["comparison"]["miss_to_hit"]), expected_gains);

    // The text report names them too.
    let text = run(
        &db,
        dir.path(),
        &[
            "evaluate",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "32",
            "--candidate-dims",
            "1024",
        ],
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("flipped from miss to hit"), "{stdout}");
    for id in &expected_flips {
        assert!(stdout.contains(id.as_str()), "{id} in {stdout}");
    }
}

/// Re-embeds the chunks with `hash` into 32 buckets: words collide, retrieval is worse.
fn hash_into_32_buckets(db: &TestDb, dir: &Path) {
    let regenerate = run(
        db,
        dir,
        &[
            "regenerate-embeddings",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "32",
        ],
    );
    assert_eq!(
        regenerate.status.code(),
        Some(0),
        "{}",
        stderr_of(&regenerate)
    );
}

/// Whether each scored query found an expected chunk, by id (in the report's order).
fn hits(report: &Value) -> BTreeMap<String, bool> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["scores"].is_null())
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["scores"]["hit"].as_f64().unwrap() > 0.0,
            )
        })
        .collect()
}

#[test]
fn the_baseline_gate_exits_3_on_a_drop_and_0_otherwise() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let baseline = dir.path().join("baseline.json");
    let baseline_arg = baseline.to_str().unwrap();
    let (code, saved) = evaluate(&db, dir.path(), &["--exact", "--save-run", baseline_arg]);
    assert_eq!(code, 0);
    // The file is deterministic: the same run writes the same bytes.
    let first = fs::read(&baseline).unwrap();
    evaluate(&db, dir.path(), &["--exact", "--save-run", baseline_arg]);
    assert_eq!(fs::read(&baseline).unwrap(), first);
    let file: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        (file["k"].as_u64(), file["search"].as_str()),
        (Some(5), Some("exact"))
    );
    assert_eq!(file["provider"], "hash");
    assert_eq!(file["queries"].as_array().unwrap().len(), 48);
    // The checksum is the one a backup of the database carries.
    let backup = dir.path().join("backup.json");
    let backed_up = run(
        &db,
        dir.path(),
        &["backup", "--output", backup.to_str().unwrap()],
    );
    assert_eq!(
        backed_up.status.code(),
        Some(0),
        "{}",
        stderr_of(&backed_up)
    );
    let backup: Value = serde_json::from_slice(&fs::read(&backup).unwrap()).unwrap();
    assert_eq!(file["dataset_checksum"], backup["metadata"]["checksum"]);

    // The same model against its own baseline: no drop, the gate passes.
    let (code, same) = evaluate(
        &db,
        dir.path(),
        &[
            "--baseline",
            baseline_arg,
            "--max-drop",
            "recall=0",
            "--max-drop",
            "ndcg=0",
            "--fail-on-flip",
        ],
    );
    assert_eq!(code, 0, "{}", same["failures"]);
    assert_eq!(same["baseline"]["same_dataset"], true);
    assert_eq!(overall(&same, "recall")["difference"], 0.0);
    assert_eq!(same["overall"], saved["overall"]);

    // A model change that loses: the chunks re-embedded into 32 buckets.
    hash_into_32_buckets(&db, dir.path());
    let worse = ["--embed-dims", "32", "--baseline", baseline_arg];
    let (code, dropped) = evaluate(
        &db,
        dir.path(),
        &[&worse[..], &["--max-drop", "recall=0.05"]].concat(),
    );
    assert_eq!(code, 3);
    let drop = -overall(&dropped, "recall")["difference"].as_f64().unwrap();
    assert!(drop > 0.05, "{drop}");
    assert!(
        dropped["failures"][0]
            .as_str()
            .unwrap()
            .contains("recall@5 dropped"),
        "{}",
        dropped["failures"]
    );
    assert_eq!(dropped["passed"], false);
    // A looser gate passes; so does one on a metric that did not drop as much.
    let loose = format!("recall={}", drop + 0.01);
    assert_eq!(
        evaluate(
            &db,
            dir.path(),
            &[&worse[..], &["--max-drop", &loose]].concat()
        )
        .0,
        0
    );
    // Queries went from hit to miss.
    let (code, flipped) = evaluate(&db, dir.path(), &[&worse[..], &["--fail-on-flip"]].concat());
    assert_eq!(code, 3);
    assert!(!flipped["comparison"]["hit_to_miss"]
        .as_array()
        .unwrap()
        .is_empty());
    // The k of the baseline is the default, and a larger one is refused.
    assert_eq!(flipped["k"], 5);
    let too_deep = run(
        &db,
        dir.path(),
        &[
            "evaluate",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "32",
            "--baseline",
            baseline_arg,
            "--k",
            "10",
        ],
    );
    assert_eq!(too_deep.status.code(), Some(2), "{}", stderr_of(&too_deep));
    assert!(
        stderr_of(&too_deep).contains("--k 5"),
        "{}",
        stderr_of(&too_deep)
    );
}

#[test]
fn gates_and_run_files_refuse_what_makes_no_sense() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let code_of = |args: &[&str]| {
        let mut all = vec!["evaluate", "--embed-provider", "hash"];
        all.extend_from_slice(args);
        let output = run(&db, dir.path(), &all);
        (output.status.code(), stderr_of(&output))
    };
    // A gate with nothing to compare with.
    let (code, stderr) = code_of(&["--max-drop", "recall=0.1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--baseline"), "{stderr}");
    assert_eq!(code_of(&["--fail-on-flip"]).0, Some(2));
    assert_eq!(
        code_of(&["--max-drop", "f1=0.1", "--candidate-dims", "64"]).0,
        Some(2)
    );
    // A file that is no run, a FIFO, a folder.
    let not_a_run = dir.path().join("not-a-run.json");
    fs::write(&not_a_run, r#"{"version": "1.0", "analyses": []}"#).unwrap();
    let (code, stderr) = code_of(&["--baseline", not_a_run.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a run file"), "{stderr}");
    let fifo = dir.path().join("fifo");
    common::make_fifo(&fifo);
    assert_eq!(code_of(&["--baseline", fifo.to_str().unwrap()]).0, Some(2));
    assert_eq!(
        code_of(&["--save-run", dir.path().to_str().unwrap()]).0,
        Some(2)
    );
    // Two outputs on one path.
    let same = dir.path().join("run.json");
    let same = same.to_str().unwrap();
    let (code, stderr) = code_of(&["--save-run", same, "--trec-run", same]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!Path::new(same).exists());
    // No output over the baseline, an input.
    let (code, stderr) = code_of(&[
        "--baseline",
        not_a_run.to_str().unwrap(),
        "--save-run",
        not_a_run.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("input"), "{stderr}");
    // A baseline and a candidate at once.
    assert_eq!(
        code_of(&[
            "--baseline",
            not_a_run.to_str().unwrap(),
            "--candidate-dims",
            "64"
        ])
        .0,
        Some(2)
    );
}

#[test]
fn the_same_seed_gives_the_same_p_values() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let compare = |seed: &str| {
        let (_, report) = evaluate(
            &db,
            dir.path(),
            &["--candidate-dims", "256", "--seed", seed],
        );
        report["comparison"].clone()
    };
    let first = compare("7");
    assert_eq!(compare("7"), first);
    let other = compare("8");
    assert_ne!(
        other["overall"], first["overall"],
        "another seed draws other resamples"
    );
    // Only the random figures move with the seed.
    let difference = |c: &Value| c["overall"]["metrics"][0]["difference"].clone();
    assert_eq!(difference(&other), difference(&first));
    let p = first["overall"]["metrics"][0]["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);
}

#[test]
fn a_candidate_behind_a_real_server_is_embedded_once_then_cached() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let server = EmbedServer::start(Protocol::Voyage);
    let before = db.digest();
    let compare = || {
        let output = golden(Some(&db), dir.path())
            .env("VOYAGE_API_KEY", "pa-test-key")
            .args([
                "evaluate",
                "--json",
                "--embed-provider",
                "hash",
                "--candidate-provider",
                "voyage",
                "--candidate-url",
                &server.url,
                "--candidate-model",
                "voyage-test",
                "--candidate-dims",
                "256",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        json_of(&output)
    };
    let first = compare();
    let requests = server.requests();
    assert!(!requests.is_empty());
    let kinds: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r.body["input_type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        HashSet::from(["document", "query"]),
        "chunks as documents, queries as queries"
    );
    let documents: usize = requests
        .iter()
        .filter(|r| r.body["input_type"] == "document")
        .map(|r| r.body["input"].as_array().unwrap().len())
        .sum();
    assert!(
        documents <= 188,
        "each distinct chunk text once: {documents}"
    );
    assert_eq!(
        first["candidate"]["chunk_vectors"]["computed"].as_u64(),
        Some(documents as u64)
    );
    assert_eq!(first["candidate"]["model"], "voyage-test");

    let second = compare();
    assert_eq!(
        server.request_count(),
        requests.len(),
        "the second comparison asks the provider nothing"
    );
    assert_eq!(second["candidate"]["chunk_vectors"]["computed"], 0);
    assert_eq!(second["comparison"], first["comparison"]);
    assert_eq!(db.digest(), before, "chunks.embedding is untouched");
}

/// A query's metrics by the book, from a qrels set and a run list (best first).
fn reference_scores(relevant: &HashSet<String>, ranked: &[String], k: usize) -> [f64; 5] {
    let top = &ranked[..ranked.len().min(k)];
    let found = top.iter().filter(|item| relevant.contains(*item)).count() as f64;
    let first = top.iter().position(|item| relevant.contains(item));
    let dcg: f64 = top
        .iter()
        .enumerate()
        .filter(|(_, item)| relevant.contains(*item))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    [
        found / relevant.len() as f64,
        found / k as f64,
        first.map_or(0.0, |i| 1.0 / (i + 1) as f64),
        dcg / ideal,
        if found > 0.0 { 1.0 } else { 0.0 },
    ]
}

/// `query 0 item relevance` lines.
fn read_qrels(text: &str) -> HashMap<String, HashSet<String>> {
    let mut qrels: HashMap<String, HashSet<String>> = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[1], "0");
        if fields[3].parse::<i32>().unwrap() > 0 {
            qrels
                .entry(fields[0].into())
                .or_default()
                .insert(fields[2].into());
        }
    }
    qrels
}

/// `query Q0 item rank score tag` lines, ordered as trec_eval orders them: by score, highest
/// first, ties by item name descending (never by the rank column).
fn read_run(text: &str) -> HashMap<String, Vec<String>> {
    let mut rows: HashMap<String, Vec<(f64, String)>> = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(fields[1], "Q0");
        rows.entry(fields[0].into())
            .or_default()
            .push((fields[4].parse().unwrap(), fields[2].into()));
    }
    rows.into_iter()
        .map(|(query, mut items)| {
            items.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            (query, items.into_iter().map(|(_, item)| item).collect())
        })
        .collect()
}

#[test]
fn exported_qrels_and_runs_give_golden_s_metrics_under_a_reference_implementation() {
    let db = TestDb::with_sample();
    let dir = workdir();
    for (level, scores_key, summary) in [
        ("chunk", "scores", "overall"),
        ("document", "document_scores", "document_level"),
    ] {
        let qrels_path = dir.path().join(format!("{level}.qrels"));
        let run_path = dir.path().join(format!("{level}.run"));
        let exported = run(
            &db,
            dir.path(),
            &[
                "export",
                "--qrels",
                qrels_path.to_str().unwrap(),
                "--trec-level",
                level,
            ],
        );
        assert_eq!(exported.status.code(), Some(0), "{}", stderr_of(&exported));
        for k in ["3", "5", "10"] {
            let (_, report) = evaluate(
                &db,
                dir.path(),
                &[
                    "--k",
                    k,
                    "--trec-run",
                    run_path.to_str().unwrap(),
                    "--trec-level",
                    level,
                ],
            );
            let k: usize = k.parse().unwrap();
            let qrels = read_qrels(&fs::read_to_string(&qrels_path).unwrap());
            let run_text = fs::read_to_string(&run_path).unwrap();
            let ranked = read_run(&run_text);
            // golden's ranks survive a tool's own ordering: scores strictly fall.
            for (query, items) in &ranked {
                let ranks: Vec<String> = run_text
                    .lines()
                    .filter(|l| l.starts_with(&format!("{query} ")))
                    .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
                    .collect();
                assert_eq!(&ranks, items, "{query}");
            }
            let mut sums = [0.0; 5];
            let scored: Vec<&Value> = report["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| !r[scores_key].is_null())
                .collect();
            assert_eq!(
                scored.len(),
                qrels.len(),
                "the qrels hold exactly the scored queries"
            );
            for result in &scored {
                let id = result["id"].as_str().unwrap();
                let mine =
                    reference_scores(&qrels[id], ranked.get(id).map_or(&[][..], Vec::as_slice), k);
                let theirs = &result[scores_key];
                for (value, key) in
                    mine.iter()
                        .zip(["recall", "precision", "reciprocal_rank", "ndcg", "hit"])
                {
                    assert!(
                        (value - theirs[key].as_f64().unwrap()).abs() < 1e-9,
                        "{level} {id} {key}@{k}: reference {value}, golden {}",
                        theirs[key]
                    );
                }
                for (sum, value) in sums.iter_mut().zip(mine) {
                    *sum += value;
                }
            }
            let n = scored.len() as f64;
            for (sum, key) in sums
                .iter()
                .zip(["recall", "precision", "mrr", "ndcg", "hit_rate"])
            {
                let golden_mean = if summary == "overall" {
                    report["overall"][key].as_f64().unwrap()
                } else {
                    report["document_level"]["overall"][key].as_f64().unwrap()
                };
                assert!(
                    (sum / n - golden_mean).abs() < 1e-9,
                    "{level} mean {key}@{k}"
                );
            }
        }
    }
}

#[test]
fn the_beir_folder_holds_the_corpus_queries_and_the_same_judgments() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let folder = dir.path().join("beir");
    let qrels_path = dir.path().join("golden.qrels");
    let exported = run(
        &db,
        dir.path(),
        &[
            "export",
            "--json",
            "--beir",
            folder.to_str().unwrap(),
            "--qrels",
            qrels_path.to_str().unwrap(),
        ],
    );
    assert_eq!(exported.status.code(), Some(0), "{}", stderr_of(&exported));
    let summary = json_of(&exported);
    assert_eq!(summary["beir"]["corpus"], 188);
    let corpus: Vec<Value> = fs::read_to_string(folder.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(corpus.len() as i64, db.count("SELECT count(*) FROM chunks"));
    let texts: HashMap<&str, &str> = corpus
        .iter()
        .map(|doc| (doc["_id"].as_str().unwrap(), doc["text"].as_str().unwrap()))
        .collect();
    assert!(texts.values().all(|text| !text.is_empty()));
    let queries: Vec<Value> = fs::read_to_string(folder.join("queries.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(queries.len(), 48);
    let tsv = fs::read_to_string(folder.join("qrels").join("test.tsv")).unwrap();
    let mut lines = tsv.lines();
    assert_eq!(lines.next(), Some("query-id\tcorpus-id\tscore"));
    let beir: HashSet<(String, String)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields[2], "1");
            assert!(
                texts.contains_key(fields[1]),
                "a judged chunk is in the corpus"
            );
            (fields[0].to_string(), fields[1].to_string())
        })
        .collect();
    let trec: HashSet<(String, String)> = read_qrels(&fs::read_to_string(&qrels_path).unwrap())
        .into_iter()
        .flat_map(|(query, items)| items.into_iter().map(move |item| (query.clone(), item)))
        .collect();
    assert_eq!(beir, trec);
}

#[test]
fn unjudged_results_are_the_retrieved_chunks_no_query_expects() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let (_, report) = evaluate(&db, dir.path(), &["--k", "5", "--show-unjudged"]);
    let results = report["results"].as_array().unwrap();
    let expected: HashSet<&str> = results
        .iter()
        .flat_map(|r| {
            r["expected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap())
        })
        .collect();
    let mut shares = Vec::new();
    for result in results {
        let retrieved = result["retrieved"].as_array().unwrap();
        let judged = retrieved
            .iter()
            .filter(|got| {
                let is = expected.contains(got["id"].as_str().unwrap());
                assert_eq!(got["judged"], is);
                is
            })
            .count();
        let share = judged as f64 / 5.0;
        assert!((result["judged_at_k"].as_f64().unwrap() - share).abs() < 1e-12);
        shares.push(share);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!((report["judged_at_k"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(
        mean < 1.0,
        "the hash model retrieves chunks nobody labelled"
    );

    let text = run(
        &db,
        dir.path(),
        &["evaluate", "--embed-provider", "hash", "--show-unjudged"],
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains(&format!("judged@5 {mean:.3}")), "{stdout}");
    let unjudged = results
        .iter()
        .flat_map(|r| r["retrieved"].as_array().unwrap())
        .find(|got| got["judged"] == false)
        .unwrap();
    assert!(stdout.contains(unjudged["id"].as_str().unwrap()));
}

#[test]
fn a_smaller_k_cuts_the_baseline_to_it() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let baseline = dir.path().join("baseline.json");
    let baseline = baseline.to_str().unwrap();
    evaluate(&db, dir.path(), &["--k", "10", "--save-run", baseline]);
    for k in ["1", "5", "10"] {
        let (code, report) = evaluate(
            &db,
            dir.path(),
            &[
                "--baseline",
                baseline,
                "--k",
                k,
                "--max-drop",
                "recall=0",
                "--fail-on-flip",
            ],
        );
        assert_eq!(code, 0, "k {k}: {}", report["failures"]);
        for metric in METRICS {
            assert_eq!(
                overall(&report, metric)["difference"],
                0.0,
                "k {k} {metric}"
            );
        }
        let (_, plain) = evaluate(&db, dir.path(), &["--k", k]);
        assert_eq!(
            overall(&report, "recall")["reference"],
            plain["overall"]["recall"],
            "k {k}"
        );
    }
}

#[test]
fn nothing_is_written_when_a_file_cannot_be() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let baseline = path("baseline.json");
    evaluate(&db, dir.path(), &["--save-run", &baseline]);
    let before = fs::read(&baseline).unwrap();
    let code_of = |args: &[&str]| {
        let output = run(&db, dir.path(), args);
        (output.status.code(), stderr_of(&output))
    };
    // No output over the baseline, whichever it is.
    for flag in ["--trec-run", "--save-run"] {
        let (code, stderr) = code_of(&[
            "evaluate",
            "--embed-provider",
            "hash",
            "--baseline",
            &baseline,
            flag,
            &baseline,
        ]);
        assert_eq!(code, Some(2), "{flag}: {stderr}");
    }
    assert_eq!(fs::read(&baseline).unwrap(), before);

    // A query id a TREC file cannot carry stops the run before any file is written.
    db.execute("INSERT INTO queries (id, query, expected_chunk_ids) SELECT 'has space', 'x', ARRAY[id] FROM chunks LIMIT 1");
    let (code, stderr) = code_of(&[
        "evaluate",
        "--embed-provider",
        "hash",
        "--save-run",
        &path("r.json"),
        "--trec-run",
        &path("t.run"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("has space"), "{stderr}");
    let (code, _) = code_of(&[
        "export",
        "--qrels",
        &path("q.qrels"),
        "--beir",
        &path("beir"),
    ]);
    assert_eq!(code, Some(2));
    db.execute("DELETE FROM queries WHERE id = 'has space'");
    db.execute("INSERT INTO queries (id, query, expected_chunk_ids) SELECT '\"quoted', 'x', ARRAY[id] FROM chunks LIMIT 1");
    let (code, stderr) = code_of(&[
        "export",
        "--qrels",
        &path("q.qrels"),
        "--beir",
        &path("beir"),
    ]);
    assert_eq!(
        code,
        Some(2),
        "a quote would swallow BEIR's later lines: {stderr}"
    );
    db.execute("DELETE FROM queries WHERE id = '\"quoted'");
    // The qrels inside the BEIR folder, or a BEIR folder that is a file.
    let beir = path("beir");
    let (code, stderr) = code_of(&[
        "export",
        "--qrels",
        &format!("{beir}/corpus.jsonl"),
        "--beir",
        &beir,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    fs::write(path("a-file"), "").unwrap();
    let (code, _) = code_of(&[
        "export",
        "--qrels",
        &path("q.qrels"),
        "--beir",
        &path("a-file"),
    ]);
    assert_eq!(code, Some(2));
    let leftovers: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "baseline.json" && name != "a-file")
        .collect();
    assert!(leftovers.is_empty(), "written anyway: {leftovers:?}");
}

#[test]
fn baselines_that_make_no_sense_are_refused() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let baseline = dir.path().join("baseline.json");
    evaluate(&db, dir.path(), &["--save-run", baseline.to_str().unwrap()]);
    let file: Value = serde_json::from_slice(&fs::read(&baseline).unwrap()).unwrap();
    let edited = dir.path().join("edited.json");
    let try_edit = |edit: &dyn Fn(&mut Value)| {
        let mut copy = file.clone();
        edit(&mut copy);
        fs::write(&edited, serde_json::to_vec(&copy).unwrap()).unwrap();
        let output = run(
            &db,
            dir.path(),
            &[
                "evaluate",
                "--embed-provider",
                "hash",
                "--baseline",
                edited.to_str().unwrap(),
            ],
        );
        (output.status.code(), stderr_of(&output))
    };
    for k in [0, 5000] {
        let (code, stderr) = try_edit(&|f| f["k"] = k.into());
        assert_eq!(code, Some(2), "k {k}: {stderr}");
    }
    let (code, stderr) = try_edit(&|f| {
        let first = f["queries"][0]["results"][0].clone();
        f["queries"][0]["results"][1] = first;
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("twice"), "{stderr}");
    assert_eq!(try_edit(&|f| f["golden_run"] = 0.into()).0, Some(2));
    let (code, stderr) = try_edit(&|f| {
        f["golden_run"] = 2.into();
        f["queries"] = serde_json::json!([{"id": "q", "hits": []}]);
    });
    assert_eq!(code, Some(2));
    assert!(stderr.contains("upgrade golden"), "{stderr}");

    // A baseline no query pairs with: the gate cannot pass on nothing.
    let (code, _) = try_edit(&|f| f["queries"] = serde_json::json!([]));
    assert_eq!(code, Some(0), "without a gate it is a report");
    let mut copy = file.clone();
    copy["queries"] = serde_json::json!([]);
    fs::write(&edited, serde_json::to_vec(&copy).unwrap()).unwrap();
    let (code, report) = evaluate(
        &db,
        dir.path(),
        &[
            "--baseline",
            edited.to_str().unwrap(),
            "--max-drop",
            "recall=0.5",
        ],
    );
    assert_eq!(code, 3);
    assert!(report["failures"][0]
        .as_str()
        .unwrap()
        .contains("nothing to compare"));

    // A threshold that is not a number would never fail.
    let nan = run(
        &db,
        dir.path(),
        &[
            "evaluate",
            "--embed-provider",
            "hash",
            "--min-recall",
            "nan",
        ],
    );
    assert_eq!(nan.status.code(), Some(2));
}

#[test]
fn an_expected_chunk_listed_twice_is_one_answer() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let (_, before) = evaluate(&db, dir.path(), &["--exact"]);
    db.execute("UPDATE queries SET expected_chunk_ids = expected_chunk_ids || expected_chunk_ids");
    let (_, after) = evaluate(&db, dir.path(), &["--exact"]);
    assert_eq!(after["overall"], before["overall"]);
}

#[test]
fn chunks_without_vectors_are_named_not_fatal() {
    let db = TestDb::with_sample();
    let dir = workdir();
    db.execute("UPDATE chunks SET embedding = NULL");
    let output = run(
        &db,
        dir.path(),
        &["evaluate", "--json", "--embed-provider", "hash", "--exact"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("188 chunks"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(json_of(&output)["overall"]["recall"], 0.0);
}

#[test]
fn ctrl_c_during_a_comparison_writes_no_file() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.delay(std::time::Duration::from_millis(400));
    // A plain std Command, which can be spawned and signalled.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .env_remove("OPENAI_API_KEY")
        .args([
            "evaluate",
            "--embed-provider",
            "hash",
            "--candidate-provider",
            "openai",
            "--candidate-url",
            &server.url,
            "--candidate-batch-size",
            "4",
            "--candidate-dims",
            "64",
            "--save-run",
            "run.json",
            "--save-candidate-run",
            "candidate.json",
            "--trec-run",
            "run.trec",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the candidate's chunks are being embedded.
    let started = std::time::Instant::now();
    while server.request_count() == 0 && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(server.request_count() > 0, "the candidate was never asked");
    let sent = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "files left by an interrupted comparison: {left:?}"
    );
}
