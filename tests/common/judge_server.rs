//! A real HTTP/1.1 server on 127.0.0.1 (ephemeral port, in-process, own thread and runtime) that
//! speaks just enough of `/v1/chat/completions` for the judge client, with scripted behaviour per
//! request: answers, 5xx, 429 with Retry-After, slow replies, truncated or non-JSON bodies,
//! dropped connections. Shared by tests/judge.rs and benches/judge_throughput.rs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it. `nth` counts requests with this exact body (1 = first).
#[derive(Debug, Clone)]
pub struct Seen {
    pub prompt: String,
    pub authorization: Option<String>,
    pub max_tokens: u64,
    pub temperature: f64,
    pub nth: u32,
}

#[derive(Debug, Clone)]
pub enum Reply {
    /// A chat completion with this content and `usage.completion_tokens`.
    Answer {
        content: String,
        completion_tokens: u64,
    },
    /// A completion without a `usage` object.
    AnswerWithoutUsage(String),
    /// Any status with a text body (and optional Retry-After).
    Status {
        code: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// 200 with a body that is not JSON.
    NotJson,
    /// 200 announcing a longer body than is sent, then the connection closes.
    Truncated,
    /// The request is read, then the connection closes without a response.
    Hangup,
    /// Wait, then reply (the client's timeout should fire first).
    Slow(Duration, Box<Reply>),
    /// A well-formed completion with this (huge) content, sent with its Content-Length or, when
    /// `chunked`, in 1 MiB chunks without one, so a client only knows its size by reading it.
    Huge { content: String, chunked: bool },
}

pub type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    /// `usage.completion_tokens` of every completion actually sent.
    pub completion_tokens_sent: AtomicU64,
    pub answers_sent: AtomicU64,
    /// Requests being answered right now, and the most at any moment.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub seen: Mutex<Vec<Seen>>,
    by_body: Mutex<HashMap<String, u32>>,
}

pub struct JudgeServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    _runtime: tokio::runtime::Runtime,
}

impl JudgeServer {
    pub fn start(script: Script) -> Self {
        Self::start_with(script, 1, true)
    }

    /// `record`: keep every request (tests); off for the benchmark.
    pub fn start_with(script: Script, threads: usize, record: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, script.clone(), s.clone(), record));
            }
        });
        Self {
            addr,
            stats,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.stats.seen.lock().unwrap().clone()
    }
}

async fn serve(stream: TcpStream, script: Script, stats: Arc<Stats>, record: bool) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let (mut length, mut authorization) = (0usize, None);
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).to_string();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let nth = {
            let mut map = stats.by_body.lock().unwrap();
            let n = map.entry(text).or_default();
            *n += 1;
            *n
        };
        let seen = Seen {
            prompt: json["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            authorization,
            max_tokens: json["max_tokens"].as_u64().unwrap_or(0),
            temperature: json["temperature"].as_f64().unwrap_or(-1.0),
            nth,
        };
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut reply = script(&seen);
        if record {
            stats.seen.lock().unwrap().push(seen);
        }
        while let Reply::Slow(delay, inner) = reply {
            tokio::time::sleep(delay).await;
            reply = *inner;
        }
        let keep_open = match reply {
            Reply::Answer {
                content,
                completion_tokens,
            } => {
                stats
                    .completion_tokens_sent
                    .fetch_add(completion_tokens, Ordering::SeqCst);
                stats.answers_sent.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "id": "cmpl-test", "object": "chat.completion", "model": json["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": completion_tokens, "total_tokens": 100 + completion_tokens},
                });
                respond(&mut write, 200, &body.to_string(), None).await
            }
            Reply::AnswerWithoutUsage(content) => {
                stats.answers_sent.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
                respond(&mut write, 200, &body.to_string(), None).await
            }
            Reply::Status {
                code,
                body,
                retry_after,
            } => respond(&mut write, code, &body, retry_after.as_deref()).await,
            Reply::NotJson => {
                respond(
                    &mut write,
                    200,
                    "<html><body>502 Bad Gateway</body></html>",
                    None,
                )
                .await
            }
            Reply::Truncated => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"choices\":[{\"message\":{\"content\":\"<analysis_1>";
                let _ = write.write_all(head.as_bytes()).await;
                let _ = write.shutdown().await;
                false
            }
            Reply::Huge { content, chunked } => {
                let body = serde_json::json!({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
                })
                .to_string();
                if chunked {
                    respond_chunked(&mut write, body.as_bytes()).await
                } else {
                    respond(&mut write, 200, &body, None).await
                }
            }
            Reply::Hangup => false,
            Reply::Slow(..) => unreachable!("unwrapped above"),
        };
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep_open {
            return;
        }
    }
}

async fn respond(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    code: u16,
    body: &str,
    retry_after: Option<&str>,
) -> bool {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(r) = retry_after {
        head.push_str(&format!("Retry-After: {r}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    write.write_all(&bytes).await.is_ok()
}

/// 200 with `body` in chunked transfer encoding, 1 MiB a chunk. Stops quietly when the client
/// hangs up (as one that stops reading a body over its limit does).
async fn respond_chunked(write: &mut tokio::net::tcp::OwnedWriteHalf, body: &[u8]) -> bool {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if write.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for chunk in body.chunks(1 << 20) {
        let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
        bytes.extend_from_slice(chunk);
        bytes.extend_from_slice(b"\r\n");
        if write.write_all(&bytes).await.is_err() {
            return false;
        }
    }
    write.write_all(b"0\r\n\r\n").await.is_ok()
}

/// A well-formed critique naming `first_error` (0-based, -1 = all correct) for `steps` paragraphs,
/// with a misleading `<think>` block in front that the parser must ignore.
pub fn critique(first_error: i32, steps: usize) -> String {
    let last = if first_error < 0 {
        steps
    } else {
        first_error as usize + 1
    };
    let mut out = String::from("<think>Paragraph 1 looks wrong? <analysis_9>no</analysis_9><conclusion>Incorrect</conclusion></think>\n");
    for i in 1..=last {
        let verdict = if i as i32 == first_error + 1 {
            "This paragraph is wrong."
        } else {
            "This paragraph is correct."
        };
        out.push_str(&format!("<analysis_{i}>{verdict}</analysis_{i}>\n"));
    }
    out.push_str(if first_error < 0 {
        "<conclusion>Correct</conclusion>"
    } else {
        "<conclusion>Incorrect</conclusion>"
    });
    out
}

/// The ProcessBench-style answer.
pub fn boxed(first_error: i32) -> String {
    format!("Reviewing each paragraph... the earliest error is \\boxed{{{first_error}}}.")
}
