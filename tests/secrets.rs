//! No command prints an API key or a password (CONTRACT.md), whatever form the secret takes
//! on its way out: a database URL or conninfo string with libpq's quoting, a `.env` line that
//! does not parse, an HTTP dump at `-vv`, a server that echoes the key encoded, or the command
//! line of pg_dump and psql. Each test runs the built binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::embed_server::{EmbedServer, Fault, KeyEcho, Protocol};
use common::{golden, sample_path, stderr_of, stdout_of, workdir, TestDb};

const KEY: &str = "sk-test-SENTINEL-0123456789";

/// Everything a command printed.
fn everything(output: &std::process::Output) -> String {
    format!("{}{}", stdout_of(output), stderr_of(output))
}

/// Fails when `text` holds any 8 consecutive bytes of `secret`.
fn assert_no_window_of(secret: &str, text: &str, context: &str) {
    let bytes = secret.as_bytes();
    for window in bytes.windows(8.min(bytes.len())) {
        let window = String::from_utf8_lossy(window);
        assert!(
            !text.contains(&*window),
            "{context}: {window:?} (part of {secret:?}) was printed:\n{text}"
        );
    }
}

/// `golden restore` of the sample, run in `dir`, with the openai provider against `url`.
fn restore_with_openai(db: &TestDb, dir: &Path, url: &str, key: &str) -> assert_cmd::Command {
    let mut cmd = golden(Some(db), dir);
    cmd.args(["restore", sample_path().to_str().unwrap()])
        .args(["--embed-provider", "openai", "--embed-url", url])
        .args(["--embed-max-retries", "0", "--embed-timeout", "5"])
        .env("OPENAI_API_KEY", key);
    cmd
}

/// A TCP listener on 127.0.0.1 that counts the connections it gets and answers each with
/// 403: set as the HTTP proxy, it receives whatever golden would have sent to another host,
/// so no test traffic leaves this machine and no name is looked up.
struct ProxyTrap {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl ProxyTrap {
    fn start() -> ProxyTrap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = stream.read(&mut [0u8; 4096]);
                        let _ = stream
                            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ProxyTrap { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[test]
fn plain_http_with_a_key_is_refused_for_any_host_that_only_looks_local() {
    let dir = workdir();
    let db = TestDb::migrated();
    let trap = ProxyTrap::start();
    for url in [
        "http://127.0.0.1.attacker.example",
        "http://localhost:x@attacker.example",
        "http://127.0.0.1@attacker.example",
        "http://127.0.0.1:8080@attacker.example/v1",
        "http://localhost.attacker.example:8080",
    ] {
        let output = restore_with_openai(&db, dir.path(), url, KEY)
            .env("HTTP_PROXY", &trap.url)
            .env("ALL_PROXY", &trap.url)
            .env_remove("http_proxy")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(trap.connections(), 0, "{url}: the key was sent:\n{stderr}");
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("--embed-allow-http"), "{url}: {stderr}");
    }
    assert_eq!(db.count("SELECT count(*) FROM analyses"), 0);
}

#[test]
fn connection_errors_show_no_password_in_any_form_libpq_accepts() {
    let dir = workdir();
    // (connection string, pieces of its password that must not be printed)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "postgres://alice:zebra#quokka?yak walrus'\"ibex@127.0.0.1:9/golden".into(),
            vec!["zebra", "quokka", "walrus", "ibex"],
        ),
        (
            "postgresql://alice:zebra%20quokka%23@127.0.0.1:9/golden".into(),
            vec!["zebra", "quokka"],
        ),
        (
            "host=127.0.0.1 port=9 user=alice password = zebra-quokka dbname=golden".into(),
            vec!["zebra", "quokka"],
        ),
        (
            r"host=127.0.0.1 port=9 password='zebra quokka\'s yak\\walrus' dbname=golden".into(),
            vec!["zebra", "quokka", "walrus"],
        ),
        (
            "password=zebra-quokka host=127.0.0.1 port=9 password=walrus-ibex".into(),
            vec!["zebra", "quokka", "walrus", "ibex"],
        ),
        (
            r"host=127.0.0.1 port=9 password=zebra\ quokka".into(),
            vec!["zebra", "quokka"],
        ),
        (
            "postgres://alice@127.0.0.1:9/golden?sslmode=disable&password=zebra-quokka".into(),
            vec!["zebra", "quokka"],
        ),
        (
            "postgres://alice@127.0.0.1:9/golden?pass%77ord=zebra%2Dquokka".into(),
            vec!["zebra", "quokka"],
        ),
        // An unencoded '@' in the password: libpq takes what follows for the host name.
        (
            "postgres://alice:zebra#quokka@walrus@127.0.0.1:9/golden".into(),
            vec!["zebra", "quokka", "walrus"],
        ),
        // libpq itself fails on these, and its messages quote the offending word.
        (
            "host=127.0.0.1 port=9 password=zebra quokka walrus".into(),
            vec!["zebra", "quokka", "walrus"],
        ),
        (
            "postgres://alice:zebra%zzquokka@127.0.0.1:9/golden".into(),
            vec!["zebra", "quokka"],
        ),
        (
            "host=127.0.0.1 port=9 password='zebra quokka".into(),
            vec!["zebra", "quokka"],
        ),
    ];
    for (url, pieces) in cases {
        for args in [vec!["migrate"], vec!["backup"]] {
            let output = golden(None, dir.path())
                .env("DATABASE_URL", &url)
                .args(&args)
                .output()
                .unwrap();
            let printed = everything(&output);
            assert_eq!(output.status.code(), Some(1), "{url}: {printed}");
            assert!(printed.contains("could not connect"), "{url}: {printed}");
            for piece in &pieces {
                assert!(
                    !printed.contains(piece),
                    "{url}: {piece:?} was printed:\n{printed}"
                );
            }
        }
    }
}

#[test]
fn a_short_password_is_masked_where_it_stands_and_nowhere_else() {
    let dir = workdir();
    let output = golden(None, dir.path())
        .env("DATABASE_URL", "postgres://alice:ab@127.0.0.1:9/golden")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("postgres://alice:***@127.0.0.1:9/golden"),
        "{stderr}"
    );
    assert!(
        stderr.contains("database"),
        "a two-letter password is not replaced inside other words: {stderr}"
    );
}

#[test]
fn a_dotenv_line_that_does_not_parse_stops_the_run_and_is_named_never_shown() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("x.json"),
        r#"{"version":"1.0","metadata":{"total_analyses":0,"total_chunks":0,"total_artifacts":0},"analyses":[]}"#,
    )
    .unwrap();
    for (env_file, line, key) in [
        (
            "GOLDEN_EMBED_MODEL=m\nOPENAI_API_KEY=sk-zebra quokka\n",
            2,
            "OPENAI_API_KEY",
        ),
        (
            "# comment\n\nDATABASE_URL='postgres://a:zebra-quokka@h/d\n",
            3,
            "DATABASE_URL",
        ),
        (
            "VOYAGE_API_KEY=\"sk-zebra\\\"quokka\\\n",
            1,
            "VOYAGE_API_KEY",
        ),
        // An unclosed quote swallows the lines after it: running on would use the default
        // database instead of this one.
        (
            "NOTE=\"zebra quokka\nDATABASE_URL=postgres://postgres@127.0.0.1:9/elsewhere\n",
            1,
            "NOTE",
        ),
    ] {
        std::fs::write(dir.path().join(".env"), env_file).unwrap();
        let output = golden(None, dir.path())
            .args(["verify", "x.json"])
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("nothing was done"), "{stderr}");
        assert!(
            stderr.contains(&format!("line {line}")),
            "{env_file:?}: {stderr}"
        );
        assert!(stderr.contains(key), "{env_file:?}: {stderr}");
        assert!(
            !stderr.contains("zebra") && !stderr.contains("quokka"),
            "{env_file:?}: the value was printed: {stderr}"
        );
    }
}

#[test]
fn verbose_logging_never_shows_the_key_nor_an_http_dump() {
    let dir = workdir();
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    for (flag, rust_log, third_party_shown) in [
        (Some("-vv"), None, false),
        (Some("-vvv"), None, false),
        (None, Some("trace"), false),
        (None, Some("debug"), false),
        (None, Some("trace,ureq=trace,ureq_proto=trace"), true),
    ] {
        let mut cmd = restore_with_openai(&db, dir.path(), &server.url, KEY);
        // Every run asks the server, so every run's requests are logged.
        cmd.arg("--embed-no-cache");
        if let Some(flag) = flag {
            cmd.arg(flag);
        }
        if let Some(rust_log) = rust_log {
            cmd.env("RUST_LOG", rust_log);
        }
        let output = cmd.output().unwrap();
        let stderr = stderr_of(&output);
        let context = format!("{flag:?} RUST_LOG={rust_log:?}");
        assert_eq!(output.status.code(), Some(0), "{context}: {stderr}");
        assert_no_window_of(KEY, &everything(&output), &context);
        assert!(
            !stderr.contains("ureq_proto::util"),
            "{context}: the hex dump of the request was logged:\n{stderr}"
        );
        let third_party = stderr
            .lines()
            .any(|line| line.starts_with("debug: ureq") || line.starts_with("trace: ureq"));
        assert_eq!(
            third_party, third_party_shown,
            "{context}: ureq's debug lines only when named:\n{stderr}"
        );
        db.execute("TRUNCATE analyses CASCADE");
    }
}

#[test]
fn a_key_echoed_by_the_server_is_removed_in_every_encoding() {
    let dir = workdir();
    // Quotes, a backslash and a slash: its JSON, percent and base64 forms differ from it.
    let key = r#"sk-"echo\test/KEY"-0123456789abcdef"#;
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    for echo in KeyEcho::ALL {
        server.heal().fail_after(0, Fault::EchoKey(401, echo));
        let output = restore_with_openai(&db, dir.path(), &server.url, key)
            .output()
            .unwrap();
        let printed = everything(&output);
        assert_eq!(output.status.code(), Some(1), "{echo:?}: {printed}");
        assert!(printed.contains("HTTP 401"), "{echo:?}: {printed}");
        assert!(printed.contains("invalid key"), "{echo:?}: {printed}");
        assert_no_window_of(&echo.encode(key), &printed, &format!("{echo:?}"));
        assert_no_window_of(key, &printed, &format!("{echo:?}"));
        // What a reader still makes out: without the separators and invisible characters.
        let squeezed: String = printed
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '\u{200B}')
            .collect();
        let upper_key = key.to_uppercase();
        for form in [key, upper_key.as_str()] {
            assert_no_window_of(form, &squeezed, &format!("{echo:?}, spaces taken out"));
        }
    }
}

/// `url` (a postgres:// URL without a password) with `password` added to its userinfo.
fn with_password(url: &str, password: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_password(Some(password)).unwrap();
    parsed.to_string()
}

#[test]
fn every_secret_of_the_run_is_removed_from_warnings_and_errors_whatever_its_source() {
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    let dir = workdir();
    let voyage_key = "voyage-from-dotenv-0123456789";
    let db_password = "db-password-0123456789";
    let url_password = "url-password-0123456789";
    std::fs::write(
        dir.path().join(".env"),
        format!("VOYAGE_API_KEY={voyage_key}\n"),
    )
    .unwrap();
    // A proxy in front of the provider that repeats, in its errors, secrets the provider's
    // own redaction does not know: another provider's key, the database password, the
    // password of the embedding URL.
    let said = format!("upstream got {voyage_key} and {db_password} and {url_password}");
    server.fail_after(0, Fault::Body(500, said));
    let embed_url = server
        .url
        .replace("http://", &format!("http://user:{url_password}@"));
    let output = golden(Some(&db), dir.path())
        .env("DATABASE_URL", with_password(&db.url, db_password))
        .args(["restore", sample_path().to_str().unwrap()])
        .args(["--embed-provider", "openai", "--embed-url", &embed_url])
        .args(["--embed-max-retries", "1", "--embed-timeout", "5"])
        // The server is this machine; the flag keeps a guard that misread userinfo as the
        // host out of the way of what this test is about.
        .arg("--embed-allow-http")
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    let printed = everything(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("warning:"),
        "a retry was logged: {printed}"
    );
    assert!(printed.contains("upstream got ***"), "{printed}");
    for secret in [voyage_key, db_password, url_password, KEY] {
        assert_no_window_of(secret, &printed, "restore");
    }
}

#[test]
fn an_embed_url_password_is_printed_as_stars() {
    let dir = workdir();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(0, Fault::Status(404, "no such model", None));
    let db = TestDb::migrated();
    let password = "hunter2-embed-url";
    let with_userinfo = server
        .url
        .replace("http://", &format!("http://alice:{password}@"));
    // The server is this machine; the flag keeps a guard that misread userinfo as the host
    // out of the way of what this test is about.
    let output = restore_with_openai(&db, dir.path(), &with_userinfo, KEY)
        .arg("--embed-allow-http")
        .output()
        .unwrap();
    let printed = everything(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    let shown = server.url.replace("http://", "http://alice:***@");
    assert!(printed.contains(&shown), "{printed}");
    assert!(!printed.contains(password), "{printed}");

    // The refusal to send a key over plain http names the URL too.
    let remote = format!("http://alice:{password}@embeddings.internal:8080");
    let output = restore_with_openai(&db, dir.path(), &remote, KEY)
        .output()
        .unwrap();
    let printed = everything(&output);
    assert_eq!(output.status.code(), Some(2), "{printed}");
    assert!(
        printed.contains("http://alice:***@embeddings.internal:8080"),
        "{printed}"
    );
    assert!(!printed.contains(password), "{printed}");
}

/// A folder whose pg_dump and psql record their arguments and PGPASSWORD, then run the real
/// program of the server's version.
fn recording_pg_bin(dir: &Path, db: &TestDb) -> std::path::PathBuf {
    let major = db.count("SELECT current_setting('server_version_num')::int / 10000");
    let real = format!("/usr/lib/postgresql/{major}/bin");
    let bin = dir.join("pg-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["pg_dump", "psql"] {
        let log = dir.join(format!("{program}.log"));
        let script = format!(
            "#!/bin/sh\n\
             {{ printf 'argv'; for arg in \"$@\"; do printf ' [%s]' \"$arg\"; done; printf '\\n';\n\
             printf 'PGPASSWORD=[%s]\\n' \"${{PGPASSWORD-}}\"; }} >> '{}'\n\
             exec '{real}/{program}' \"$@\"\n",
            log.display()
        );
        let path = bin.join(program);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn pg_dump_and_psql_get_every_password_in_the_environment_never_on_their_command_line() {
    let source = TestDb::with_sample();
    let server = url::Url::parse(&source.url).unwrap();
    let host = server.host_str().unwrap().to_string();
    let port = server.port().unwrap_or(5432);
    let user = server.username().to_string();
    let name = source.name.clone();
    // The test server trusts loopback, so any password connects: what matters is where it goes.
    let cases = [
        (
            format!(
                "host={host} port={port} user={user} dbname={name} password='zebra quokka\\'s'"
            ),
            "zebra quokka's",
        ),
        (
            format!("host={host} port={port} password = walrus-ibex user={user} dbname={name}"),
            "walrus-ibex",
        ),
        (
            format!("postgres://{user}@{host}:{port}/{name}?password=zebra%20yak&sslmode=disable"),
            "zebra yak",
        ),
        (
            format!("postgresql://{user}:quokka%23%3F%20walrus@{host}:{port}/{name}"),
            "quokka#? walrus",
        ),
    ];
    for (url, password) in cases {
        let dir = workdir();
        let bin = recording_pg_bin(dir.path(), &source);
        let dumped = golden(None, dir.path())
            .env("DATABASE_URL", &url)
            .args(["dump", "--json", "--pg-bin", bin.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            dumped.status.code(),
            Some(0),
            "{url}: {}",
            everything(&dumped)
        );
        assert!(!everything(&dumped).contains(password), "{url}");
        let log = std::fs::read_to_string(dir.path().join("pg_dump.log")).unwrap();
        let runs: Vec<&str> = log.lines().collect();
        let (argv, env) = (runs[runs.len() - 2], runs[runs.len() - 1]);
        assert!(argv.contains("--data-only"), "{log}");
        for piece in password.split([' ', '\'', '#', '?', '-']) {
            assert!(
                piece.len() < 4 || !argv.contains(piece),
                "{url}: the password is on pg_dump's command line: {argv}"
            );
        }
        assert_eq!(env, format!("PGPASSWORD=[{password}]"), "{url}");
        let sql = std::fs::read_to_string(dir.path().join("data/golden_dataset_dump.sql")).unwrap();
        assert!(sql.contains("COPY"), "the dump holds the rows");

        let target = TestDb::migrated();
        let target_url = url.replace(&name, &target.name);
        let loaded = golden(None, dir.path())
            .env("DATABASE_URL", &target_url)
            .args(["load", "--pg-bin", bin.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            loaded.status.code(),
            Some(0),
            "{url}: {}",
            everything(&loaded)
        );
        let log = std::fs::read_to_string(dir.path().join("psql.log")).unwrap();
        let runs: Vec<&str> = log.lines().collect();
        let (argv, env) = (runs[runs.len() - 2], runs[runs.len() - 1]);
        for piece in password.split([' ', '\'', '#', '?', '-']) {
            assert!(
                piece.len() < 4 || !argv.contains(piece),
                "{url}: the password is on psql's command line: {argv}"
            );
        }
        assert_eq!(env, format!("PGPASSWORD=[{password}]"), "{url}");
        assert_eq!(target.digest(), source.digest(), "{url}");
    }
}

#[test]
fn the_default_database_follows_golden_pgport_and_golden_pgdatabase() {
    let dir = workdir();
    let output = golden(None, dir.path())
        .env("GOLDEN_PGPORT", "9")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("postgres://postgres@127.0.0.1:9/golden"),
        "{stderr}"
    );
    assert!(stderr.contains("GOLDEN_PGPORT"), "{stderr}");
    assert!(
        stderr.contains("port 9"),
        "the hint names the port: {stderr}"
    );

    // The local server of the tests, found through the two variables alone.
    let db = TestDb::migrated();
    let server = url::Url::parse(&db.url).unwrap();
    if server.host_str() == Some("127.0.0.1") && server.username() == "postgres" {
        let port = server.port().unwrap_or(5432).to_string();
        let output = golden(None, dir.path())
            .env("GOLDEN_PGPORT", &port)
            .env("GOLDEN_PGDATABASE", &db.name)
            .args([
                "backup",
                "--json",
                "--output",
                "b.json",
                "--metadata",
                "m.json",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        assert!(
            stdout_of(&output).contains("\"analyses\": 0"),
            "{}",
            stdout_of(&output)
        );
    }
}

#[test]
fn an_empty_database_url_is_a_usage_error_not_the_local_database() {
    let dir = workdir();
    for (env_file, environment) in [
        (Some("DATABASE_URL=\n"), None),
        (Some("DATABASE_URL=\"\"\n"), None),
        (None, Some("")),
    ] {
        if let Some(contents) = env_file {
            std::fs::write(dir.path().join(".env"), contents).unwrap();
        } else {
            let _ = std::fs::remove_file(dir.path().join(".env"));
        }
        let mut command = golden(None, dir.path());
        if let Some(value) = environment {
            command.env("DATABASE_URL", value);
        }
        let output = command.args(["cache", "stats"]).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{env_file:?} {environment:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("set but empty"),
            "{}",
            stderr_of(&output)
        );
    }
}
