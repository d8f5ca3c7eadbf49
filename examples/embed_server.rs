//! A local embedding server for benchmarks and manual runs: the test server of
//! `tests/common/embed_server.rs` on a fixed port, with a delay per request and a maximum
//! batch size. `GET /stats` answers the number of requests so far.
//!
//! ```sh
//! cargo run --release --example embed_server -- --port 18300 --delay-ms 200 --max-batch 128 --protocol openai
//! ```

#[path = "../tests/common/embed_server.rs"]
#[allow(dead_code)]
mod embed_server;

use std::time::Duration;

use embed_server::{EmbedServer, Protocol};

fn main() {
    let mut port = 18300u16;
    let mut delay_ms = 0u64;
    let mut max_batch = None;
    let mut protocol = Protocol::OpenAi;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => {
                port = value
                    .parse()
                    .unwrap_or_else(|_| usage("--port takes a number"))
            }
            "--delay-ms" => {
                delay_ms = value
                    .parse()
                    .unwrap_or_else(|_| usage("--delay-ms takes a number"))
            }
            "--max-batch" => {
                max_batch = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage("--max-batch takes a number")),
                )
            }
            "--protocol" => {
                protocol = match value.as_str() {
                    "openai" => Protocol::OpenAi,
                    "voyage" => Protocol::Voyage,
                    "ollama" => Protocol::Ollama,
                    _ => usage("--protocol is openai, voyage or ollama"),
                }
            }
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    let server = EmbedServer::start_on(&format!("127.0.0.1:{port}"), protocol);
    server.delay(Duration::from_millis(delay_ms));
    if let Some(max) = max_batch {
        server.max_batch(max);
    }
    eprintln!(
        "embedding server ({protocol:?}) on {} with {delay_ms} ms per request",
        server.url
    );
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("embed_server: {problem}\nusage: embed_server [--port N] [--delay-ms N] [--max-batch N] [--protocol openai|voyage|ollama]");
    std::process::exit(2);
}
