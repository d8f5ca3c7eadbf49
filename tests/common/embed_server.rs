//! A real HTTP embedding server on 127.0.0.1 for the tests, speaking the OpenAI, Voyage or
//! Ollama protocol, with faults to inject: statuses (429 with Retry-After, 5xx, 401, …),
//! slow answers, dropped connections, and wrong answers (too few vectors, wrong size,
//! shuffled or duplicate indexes, numbers that are not finite). Its vectors are those of
//! golden's `hash` embedder for the same text, so runs with and without faults compare.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Response, Server, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Voyage,
    Ollama,
}

/// What the server does to one request instead of answering it well.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with this body and, if given, a Retry-After header.
    Status(u16, &'static str, Option<&'static str>),
    /// Wait this long, then answer well.
    Delay(Duration),
    /// Start a 200 answer and close the connection in the middle of the body.
    Drop,
    /// One vector fewer than inputs.
    MissingVector,
    /// Vectors of this size instead of the asked one.
    Dims(usize),
    /// The right vectors, listed in reverse order with their indexes.
    Reversed,
    /// Two vectors claim index 0.
    DuplicateIndex,
    /// A number too large for an f32.
    Infinite,
    /// Answer this status with this plain-text body (a server that repeats what it was sent).
    Body(u16, String),
    /// Answer this status with a plain-text body that repeats the request's API key (the
    /// Authorization header's Bearer token) in this form.
    EchoKey(u16, KeyEcho),
}

/// The forms in which a careless server may repeat an API key in an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEcho {
    /// As a JSON string, escapes and all.
    Json,
    /// Percent-encoded, every byte outside the unreserved set.
    Percent,
    /// Base64 of the key after `offset` (0, 1 or 2) other bytes, standard or URL-safe alphabet.
    Base64 { url_safe: bool, offset: usize },
    /// Lowercase or uppercase hex of its bytes.
    Hex { upper: bool },
    /// Its first 12 characters.
    Prefix,
    /// Its last 12 characters.
    Suffix,
    /// Upper-cased.
    Upper,
    /// Every character as a JSON `\uXXXX` escape (the same string to a JSON reader).
    UnicodeEscapes,
    /// Every character as an HTML entity, decimal or hexadecimal.
    HtmlEntities { hex: bool },
    /// RFC 4648 base32 after `offset` (0 to 4) other bytes.
    Base32 { offset: usize },
    /// A space between every two characters.
    Spaced,
    /// Reversed.
    Reversed,
    /// Pieces of seven characters joined by `-`.
    Dashed,
    /// A zero-width space between every two characters (a terminal shows the key).
    ZeroWidth,
    /// In full-width characters.
    FullWidth,
    /// With its e, a, o, c and p written in Cyrillic look-alikes.
    Cyrillic,
}

impl KeyEcho {
    pub const ALL: [KeyEcho; 25] = [
        KeyEcho::Json,
        KeyEcho::Percent,
        KeyEcho::Base64 {
            url_safe: false,
            offset: 0,
        },
        KeyEcho::Base64 {
            url_safe: false,
            offset: 1,
        },
        KeyEcho::Base64 {
            url_safe: false,
            offset: 2,
        },
        KeyEcho::Base64 {
            url_safe: true,
            offset: 0,
        },
        KeyEcho::Base64 {
            url_safe: true,
            offset: 1,
        },
        KeyEcho::Base64 {
            url_safe: true,
            offset: 2,
        },
        KeyEcho::Hex { upper: false },
        KeyEcho::Hex { upper: true },
        KeyEcho::Prefix,
        KeyEcho::Suffix,
        KeyEcho::Upper,
        KeyEcho::UnicodeEscapes,
        KeyEcho::HtmlEntities { hex: false },
        KeyEcho::HtmlEntities { hex: true },
        KeyEcho::Base32 { offset: 0 },
        KeyEcho::Base32 { offset: 2 },
        KeyEcho::Base32 { offset: 3 },
        KeyEcho::Spaced,
        KeyEcho::Reversed,
        KeyEcho::Dashed,
        KeyEcho::ZeroWidth,
        KeyEcho::FullWidth,
        KeyEcho::Cyrillic,
    ];

    /// The text the server puts in its body for `key`.
    pub fn encode(self, key: &str) -> String {
        match self {
            KeyEcho::Json => serde_json::to_string(key).unwrap(),
            KeyEcho::Percent => key
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
            KeyEcho::Base64 { url_safe, offset } => {
                let mut bytes = b"xyz"[..offset].to_vec();
                bytes.extend_from_slice(key.as_bytes());
                base64(&bytes, url_safe)
            }
            KeyEcho::Hex { upper: false } => key.bytes().map(|b| format!("{b:02x}")).collect(),
            KeyEcho::Hex { upper: true } => key.bytes().map(|b| format!("{b:02X}")).collect(),
            KeyEcho::Prefix => key.chars().take(12).collect(),
            KeyEcho::Suffix => {
                let chars: Vec<char> = key.chars().collect();
                chars[chars.len().saturating_sub(12)..].iter().collect()
            }
            KeyEcho::Upper => key.to_uppercase(),
            KeyEcho::UnicodeEscapes => key.encode_utf16().map(|u| format!("\\u{u:04X}")).collect(),
            KeyEcho::HtmlEntities { hex: false } => {
                key.chars().map(|c| format!("&#{};", c as u32)).collect()
            }
            KeyEcho::HtmlEntities { hex: true } => {
                key.chars().map(|c| format!("&#x{:X};", c as u32)).collect()
            }
            KeyEcho::Base32 { offset } => {
                let mut bytes = b"wxyzv"[..offset].to_vec();
                bytes.extend_from_slice(key.as_bytes());
                base32(&bytes)
            }
            KeyEcho::Spaced => key
                .chars()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            KeyEcho::Reversed => key.chars().rev().collect(),
            KeyEcho::Dashed => key
                .chars()
                .collect::<Vec<_>>()
                .chunks(7)
                .map(|piece| piece.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-"),
            KeyEcho::ZeroWidth => key
                .chars()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("\u{200B}"),
            KeyEcho::FullWidth => key
                .chars()
                .map(|c| match c {
                    '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
                    c => c,
                })
                .collect(),
            KeyEcho::Cyrillic => key
                .chars()
                .map(|c| match c {
                    'e' => 'е',
                    'a' => 'а',
                    'o' => 'о',
                    'c' => 'с',
                    'p' => 'р',
                    c => c,
                })
                .collect(),
        }
    }
}

/// RFC 4648 base32 with padding.
fn base32(bytes: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for group in bytes.chunks(5) {
        let mut n = 0u64;
        for (i, &b) in group.iter().enumerate() {
            n |= u64::from(b) << (32 - 8 * i);
        }
        let chars = (group.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(alphabet[((n >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 with padding, in the standard or the URL-safe alphabet.
fn base64(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    /// A fault for every request after the first `n` (a provider that goes down).
    fail_after: Option<(usize, Fault)>,
    /// Requests with more inputs than this get 413.
    max_batch: Option<usize>,
    /// Seeded random faults: (percent of requests, generator state).
    random_faults: Option<(u64, u64)>,
    delay: Duration,
    dims: Option<usize>,
    requests: Vec<Recorded>,
}

pub struct EmbedServer {
    pub url: String,
    protocol: Protocol,
    state: Arc<Mutex<State>>,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EmbedServer {
    pub fn start(protocol: Protocol) -> EmbedServer {
        EmbedServer::start_on("127.0.0.1:0", protocol)
    }

    /// A server on a given address (the benchmarks use a fixed port).
    pub fn start_on(address: &str, protocol: Protocol) -> EmbedServer {
        let listener =
            std::net::TcpListener::bind(address).unwrap_or_else(|e| panic!("bind {address}: {e}"));
        disable_nagle(&listener);
        let server = Arc::new(
            Server::from_listener(listener, None)
                .unwrap_or_else(|e| panic!("serve on {address}: {e}")),
        );
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(20)) {
                        let state = state.clone();
                        std::thread::spawn(move || handle(protocol, &state, request));
                    }
                }
            })
        };
        EmbedServer {
            url: format!("http://127.0.0.1:{port}"),
            protocol,
            state,
            server,
            stop,
            thread: Some(thread),
        }
    }

    /// Faults for the next requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) -> &Self {
        self.state.lock().unwrap().faults.extend(faults);
        self
    }

    /// After `n` requests, every request gets `fault`.
    pub fn fail_after(&self, n: usize, fault: Fault) -> &Self {
        self.state.lock().unwrap().fail_after = Some((n, fault));
        self
    }

    pub fn heal(&self) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.fail_after = None;
        state.faults.clear();
        self
    }

    /// `percent` of the requests, chosen by a seeded generator, get one of: 429, 500, a
    /// dropped connection, or an answer slower than `slow`.
    pub fn random_faults(&self, percent: u64, seed: u64) -> &Self {
        self.state.lock().unwrap().random_faults = Some((percent, seed));
        self
    }

    pub fn max_batch(&self, n: usize) -> &Self {
        self.state.lock().unwrap().max_batch = Some(n);
        self
    }

    pub fn delay(&self, delay: Duration) -> &Self {
        self.state.lock().unwrap().delay = delay;
        self
    }

    /// Answer vectors of this size whatever is asked (a model with a fixed size).
    pub fn dims(&self, dims: usize) -> &Self {
        self.state.lock().unwrap().dims = Some(dims);
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}

impl Drop for EmbedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(protocol: Protocol, state: &Mutex<State>, mut request: tiny_http::Request) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.to_string());
    let path = request.url().to_string();
    if path == "/stats" {
        let requests = state.lock().unwrap().requests.len();
        let _ = request.respond(json_response(200, json!({ "requests": requests })));
        return;
    }
    let key = authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let (fault, max_batch, delay, fixed_dims) = {
        let mut state = state.lock().unwrap();
        state.requests.push(Recorded {
            path: path.clone(),
            authorization,
            body: body.clone(),
        });
        let seen = state.requests.len();
        let mut fault = match &state.fail_after {
            Some((n, fault)) if seen > *n => Some(fault.clone()),
            _ => state.faults.pop_front(),
        };
        if let Some((percent, seed)) = state.random_faults.as_mut() {
            *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = *seed;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            if fault.is_none() && x % 100 < *percent {
                fault = Some(match (x >> 8) % 4 {
                    0 => Fault::Status(429, "rate limited", Some("0")),
                    1 => Fault::Status(500, "internal error", None),
                    2 => Fault::Drop,
                    _ => Fault::Delay(Duration::from_millis(1_500)),
                });
            }
        }
        (fault, state.max_batch, state.delay, state.dims)
    };
    std::thread::sleep(delay);

    let expected_path = match protocol {
        Protocol::OpenAi | Protocol::Voyage => "/v1/embeddings",
        Protocol::Ollama => "/api/embed",
    };
    if path != expected_path {
        let _ = request.respond(json_response(
            404,
            json!({"error": format!("no route {path}")}),
        ));
        return;
    }
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let dims = fixed_dims
        .or_else(|| body["output_dimension"].as_u64().map(|d| d as usize))
        .or_else(|| body["dimensions"].as_u64().map(|d| d as usize))
        .unwrap_or(1024);
    if max_batch.is_some_and(|max| inputs.len() > max) {
        let _ = request.respond(json_response(413, json!({"error": "payload too large"})));
        return;
    }
    let mut vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|text| golden::embed::hash::embed_text(text, dims))
        .collect();
    let mut order: Vec<usize> = (0..vectors.len()).collect();
    match fault {
        None => {}
        Some(Fault::Status(status, message, retry_after)) => {
            let mut response = json_response(status, json!({"error": message}));
            if let Some(seconds) = retry_after {
                response.add_header(Header::from_bytes("Retry-After", seconds).unwrap());
            }
            let _ = request.respond(response);
            return;
        }
        Some(Fault::Body(status, text)) => {
            let _ = request.respond(Response::from_string(text).with_status_code(status));
            return;
        }
        Some(Fault::EchoKey(status, echo)) => {
            let text = format!("invalid key {}", echo.encode(&key));
            let _ = request.respond(Response::from_string(text).with_status_code(status));
            return;
        }
        Some(Fault::Delay(extra)) => std::thread::sleep(extra),
        Some(Fault::Drop) => {
            let headers = vec![
                Header::from_bytes("Content-Type", "application/json").unwrap(),
                Header::from_bytes("Connection", "close").unwrap(),
            ];
            let partial = Cursor::new(b"{\"data\": [{\"embedding\": [0.1, ".to_vec());
            let _ = request.respond(Response::new(
                StatusCode(200),
                headers,
                partial,
                Some(100_000),
                None,
            ));
            return;
        }
        Some(Fault::MissingVector) => {
            vectors.pop();
            order.pop();
        }
        Some(Fault::Dims(wrong)) => vectors.iter_mut().for_each(|v| v.resize(wrong, 0.0)),
        Some(Fault::Reversed) => order.reverse(),
        Some(Fault::DuplicateIndex) if order.len() > 1 => order[1] = 0,
        Some(Fault::DuplicateIndex) => {}
        Some(Fault::Infinite) => {
            // A marker value, replaced in the JSON text by a number no f32 can hold.
            if let Some(first) = vectors.first_mut().and_then(|v| v.first_mut()) {
                *first = 12345.5;
            }
        }
    }
    let answer = match protocol {
        Protocol::Ollama => {
            json!({ "model": body["model"], "embeddings": order.iter().map(|&i| &vectors[i]).collect::<Vec<_>>() })
        }
        Protocol::OpenAi | Protocol::Voyage => json!({
            "object": "list",
            "model": body["model"],
            "data": order.iter().map(|&i| json!({"object": "embedding", "index": i, "embedding": vectors[i]})).collect::<Vec<_>>(),
            "usage": {"total_tokens": inputs.len()},
        }),
    };
    let text = serde_json::to_string(&answer)
        .unwrap()
        .replacen("12345.5", "1e39", 1);
    let response = Response::from_string(text)
        .with_header(Header::from_bytes("Content-Type", "application/json").unwrap());
    let _ = request.respond(response);
}

fn json_response(status: u16, body: Value) -> Response<Cursor<Vec<u8>>> {
    Response::from_data(serde_json::to_vec(&body).unwrap())
        .with_status_code(StatusCode(status))
        .with_header(Header::from_bytes("Content-Type", "application/json").unwrap())
}

/// Sets TCP_NODELAY on the listener; Linux passes it on to every accepted connection.
/// tiny_http writes a response's headers and body separately: with Nagle's algorithm on, the
/// body waits for the client's delayed ACK of the headers, about 40 ms a request, which real
/// provider servers do not add and which would swamp the delays the benchmarks set.
fn disable_nagle(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size passed.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        result,
        0,
        "setting TCP_NODELAY: {}",
        std::io::Error::last_os_error()
    );
}
