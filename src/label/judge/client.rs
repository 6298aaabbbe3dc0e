//! The HTTP side of the judge: one OpenAI-compatible `/v1/chat/completions` endpoint, a bounded
//! number of requests in flight, retries with backoff for everything transient, and a hard budget
//! on requests and generated tokens. Every sample ends as an answer, over budget, or failed with
//! a reason; nothing is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::accounting::{add, Accounting, Counters};
use super::budget::{Budget, BudgetState};
use super::cache::{cache_key, AnswerCache, CacheOpenReport, CachedAnswer};
use super::parse::{majority, parse_answer};
use super::prompt::Prompt;
use super::wire::{ChatMessage, ChatRequest, ChatResponse};
use super::{without_credentials, JudgeConfig, JudgeError, JudgeOutcome, JudgeStatus};
use crate::label::LabelRequest;
use crate::report::Log;

/// The API key. Its `Debug` never shows the value, and every message leaving the client passes
/// through [`ApiKey::redact`] in case a server echoes it back.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    fn redact(key: &Option<ApiKey>, text: String) -> String {
        match key {
            Some(k) if !k.0.is_empty() && text.contains(&k.0) => text.replace(&k.0, "<redacted>"),
            _ => text,
        }
    }
}

/// The most bytes of a response body the client reads. An answer of the largest `max_tokens`
/// in use is far smaller; a body past this is a broken or hostile server, and reading it whole
/// would hold all of it in memory.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The first `max` characters of `text`, trimmed (cut on a character boundary).
fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// How one sample (one answer of one row) ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleResult {
    Answer { answer: CachedAnswer, cached: bool },
    OverBudget(String),
    Failed(String),
}

/// How one HTTP attempt ended.
enum Attempt {
    Answer {
        answer: CachedAnswer,
        charge: u64,
    },
    /// Transient: try again after `after` (429's Retry-After) or the backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
        charge: u64,
    },
    /// This request will never succeed (e.g. 400: prompt too long); `charge`: tokens the
    /// server may have billed for it.
    Reject {
        reason: String,
        charge: u64,
    },
    /// No request will succeed (401/403/404: wrong key, URL or model); stop sending.
    Fatal(String),
}

pub struct JudgeClient {
    http: reqwest::Client,
    endpoint: String,
    config: JudgeConfig,
    key: Option<ApiKey>,
    prompt: Prompt,
    cache: Option<AnswerCache>,
    permits: Semaphore,
    budget: Budget,
    counters: Counters,
    /// One lock per key being fetched, so two rows with the same prompt pay once.
    fetching: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    fatal: OnceLock<String>,
    log: Log,
}

impl std::fmt::Debug for JudgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeClient")
            .field("endpoint", &without_credentials(&self.endpoint))
            .field("model", &self.config.model)
            .field("key", &self.key)
            .finish()
    }
}

impl JudgeClient {
    /// Reads the key from the environment variable the config names (absent = no Authorization
    /// header, as a local vLLM server expects) and opens the cache.
    pub fn new(
        config: &JudgeConfig,
        log: Log,
    ) -> Result<(Self, Option<CacheOpenReport>), JudgeError> {
        config.validate()?;
        let key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| ApiKey(k.trim().to_string()));
        if key.is_none() {
            log.line(&format!(
                "judge: no API key in ${}; sending requests without an Authorization header",
                config.api_key_env
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(k) = &key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", k.0))
                .map_err(|_| {
                    JudgeError::Config(format!(
                        "${} holds characters not allowed in an HTTP header",
                        config.api_key_env
                    ))
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        // in range after `validate`; checked again, as a panic here would take the run down
        let timeout = Duration::try_from_secs_f64(config.timeout_secs)
            .map_err(|e| JudgeError::Config(format!("timeout {}: {e}", config.timeout_secs)))?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .pool_max_idle_per_host(config.concurrency)
            .user_agent(concat!("actprm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                JudgeError::Config(format!("building the HTTP client: {}", e.without_url()))
            })?;
        let prompt = Prompt::load(config.format, config.template.as_deref())?;
        let (cache, report) = match &config.cache {
            Some(dir) => {
                let (c, r) = AnswerCache::open(dir)?;
                if r.corrupt_lines > 0 || r.torn_bytes > 0 {
                    log.line(&format!(
                        "judge: cache {}: skipped {} corrupt lines, cut a torn tail of {} bytes",
                        dir.display(),
                        r.corrupt_lines,
                        r.torn_bytes
                    ));
                }
                (Some(c), Some(r))
            }
            None => (None, None),
        };
        let client = Self {
            http,
            endpoint: config.endpoint(),
            config: config.clone(),
            key,
            prompt,
            cache,
            permits: Semaphore::new(config.concurrency),
            budget: Budget {
                max_requests: config.max_requests,
                max_tokens: config.max_completion_tokens,
                state: Mutex::new(BudgetState::default()),
                settled: Notify::new(),
            },
            counters: Counters::default(),
            fetching: Mutex::new(HashMap::new()),
            fatal: OnceLock::new(),
            log,
        };
        Ok((client, report))
    }

    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    pub fn accounting(&self) -> Accounting {
        self.counters.snapshot()
    }

    /// Labels one trajectory: `votes` samples (cached ones free), parsed, majority-voted.
    pub async fn judge(&self, request: &LabelRequest) -> JudgeOutcome {
        let outcome = if request.steps.is_empty() {
            JudgeOutcome::unlabelled(
                JudgeStatus::Failed,
                "the trajectory has no steps".into(),
                None,
                Vec::new(),
            )
        } else {
            let prompt = self.prompt.render(&request.problem, &request.steps);
            let samples =
                futures::future::join_all((0..self.config.votes).map(|s| self.sample(&prompt, s)))
                    .await;
            self.decide(samples, request.steps.len())
        };
        self.counters.row(outcome.status);
        outcome
    }

    fn decide(&self, samples: Vec<SampleResult>, steps: usize) -> JudgeOutcome {
        let mut votes = Vec::with_capacity(samples.len());
        let (mut unparseable, mut over, mut failed) = (None, None, None);
        for s in samples {
            match s {
                SampleResult::Answer { answer, .. } => {
                    match parse_answer(self.prompt.format, &answer.content, steps) {
                        Ok(k) => votes.push(Some(k)),
                        Err(e) => {
                            votes.push(None);
                            let mut reason = e.0;
                            if answer.finish_reason.as_deref() == Some("length") {
                                reason.push_str(&format!(
                                    " (the answer was cut off at max_tokens {})",
                                    self.config.max_tokens
                                ));
                            }
                            unparseable.get_or_insert((reason, answer.content));
                        }
                    }
                }
                SampleResult::OverBudget(r) => {
                    votes.push(None);
                    over.get_or_insert(r);
                }
                SampleResult::Failed(r) => {
                    votes.push(None);
                    failed.get_or_insert(r);
                }
            }
        }
        if let Some(k) = majority(&votes) {
            return JudgeOutcome {
                status: JudgeStatus::Labelled,
                label: Some(k),
                reason: None,
                raw: None,
                votes,
            };
        }
        match (unparseable, over, failed) {
            (Some((reason, raw)), _, _) => {
                JudgeOutcome::unlabelled(JudgeStatus::Unparseable, reason, Some(raw), votes)
            }
            (None, Some(reason), _) => {
                JudgeOutcome::unlabelled(JudgeStatus::OverBudget, reason, None, votes)
            }
            (None, None, reason) => JudgeOutcome::unlabelled(
                JudgeStatus::Failed,
                reason.unwrap_or_else(|| "no answer".into()),
                None,
                votes,
            ),
        }
    }

    fn cached(&self, key: &str) -> Option<SampleResult> {
        let answer = self.cache.as_ref()?.get(key)?;
        add(&self.counters.cache_hits, 1);
        Some(SampleResult::Answer {
            answer,
            cached: true,
        })
    }

    /// One answer for `prompt`: from the cache, or fetched (once, even if several rows ask at once).
    pub async fn sample(&self, prompt: &str, sample: u32) -> SampleResult {
        let c = &self.config;
        let key = cache_key(
            &c.model,
            prompt,
            c.temperature,
            c.top_p,
            c.max_tokens,
            sample,
        );
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let lock = {
            let Ok(mut map) = self.fetching.lock() else {
                return SampleResult::Failed("internal lock poisoned".into());
            };
            match map.get(&key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.clone(), Arc::downgrade(&l));
                    l
                }
            }
        };
        let result = {
            let _guard = lock.lock().await;
            match self.cached(&key) {
                Some(hit) => hit,
                None => self.fetch(prompt, sample, &key).await,
            }
        };
        if let Ok(mut map) = self.fetching.lock() {
            if Arc::strong_count(&lock) == 1 {
                map.remove(&key);
            }
        }
        result
    }

    async fn fetch(&self, prompt: &str, sample: u32, key: &str) -> SampleResult {
        let reserve = u64::from(self.config.max_tokens);
        let mut failures = 0u32;
        let mut last_error: Option<String> = None;
        loop {
            let Ok(permit) = self.permits.acquire().await else {
                return SampleResult::Failed("the client is shutting down".into());
            };
            // checked after the wait for a slot: requests queued behind the refused one stop too
            if let Some(reason) = self.fatal.get() {
                add(&self.counters.samples_failed, 1);
                return SampleResult::Failed(reason.clone());
            }
            if let Err(why) = self.budget.reserve(reserve).await {
                add(&self.counters.samples_over_budget, 1);
                let why = match last_error {
                    Some(e) => format!("{why} (after {failures} failed attempts; last: {e})"),
                    None => why,
                };
                return SampleResult::OverBudget(why);
            }
            add(&self.counters.requests, 1);
            let attempt = self.attempt(prompt).await;
            drop(permit);
            match attempt {
                Attempt::Answer { answer, charge } => {
                    self.budget.settle(reserve, charge);
                    add(&self.counters.budget_tokens, charge);
                    add(&self.counters.answers, 1);
                    add(&self.counters.prompt_tokens, answer.prompt_tokens);
                    add(&self.counters.completion_tokens, answer.completion_tokens);
                    if let Some(cache) = &self.cache {
                        if let Err(e) = cache.put(key, &self.config.model, sample, &answer) {
                            // the answer is still used; only a rerun would pay for it again
                            if add(&self.counters.cache_write_errors, 1) <= 5 {
                                self.log(format!("{e}"));
                            }
                        }
                    }
                    return SampleResult::Answer {
                        answer,
                        cached: false,
                    };
                }
                Attempt::Retry {
                    reason,
                    after,
                    charge,
                } => {
                    self.budget.settle(reserve, charge);
                    add(&self.counters.budget_tokens, charge);
                    failures += 1;
                    if failures > self.config.max_retries {
                        add(&self.counters.samples_failed, 1);
                        return SampleResult::Failed(format!(
                            "gave up after {failures} attempts: {reason}"
                        ));
                    }
                    let retries = add(&self.counters.retries, 1);
                    let delay = after.unwrap_or_else(|| self.backoff(failures));
                    if retries <= 10 || retries.is_multiple_of(100) {
                        self.log(format!(
                            "retry {retries} (attempt {} of this request) in {:.1}s: {reason}",
                            failures + 1,
                            delay.as_secs_f64()
                        ));
                    }
                    last_error = Some(reason);
                    tokio::time::sleep(delay).await;
                }
                Attempt::Reject { reason, charge } => {
                    self.budget.settle(reserve, charge);
                    add(&self.counters.budget_tokens, charge);
                    add(&self.counters.samples_failed, 1);
                    return SampleResult::Failed(reason);
                }
                Attempt::Fatal(reason) => {
                    self.budget.settle(reserve, 0);
                    add(&self.counters.samples_failed, 1);
                    if self.fatal.set(reason.clone()).is_ok() {
                        self.log(format!("stopping: {reason}"));
                    }
                    return SampleResult::Failed(reason);
                }
            }
        }
    }

    /// Exponential backoff with jitter: half the step fixed, half random, so retries from many
    /// rows that failed together do not come back together.
    fn backoff(&self, failures: u32) -> Duration {
        let step = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(self.config.backoff_max_ms);
        Duration::from_millis(step / 2 + rand::random_range(0..=step - step / 2))
    }

    fn log(&self, line: String) {
        // every line passes the redaction: tests collect them to prove the key never shows
        self.log
            .line(&format!("judge: {}", ApiKey::redact(&self.key, line)));
    }

    fn redact(&self, text: String) -> String {
        ApiKey::redact(&self.key, text)
    }

    async fn attempt(&self, prompt: &str) -> Attempt {
        let c = &self.config;
        let body = ChatRequest {
            model: &c.model,
            messages: [ChatMessage {
                role: "user",
                content: prompt,
            }],
            temperature: c.temperature,
            top_p: c.top_p,
            max_tokens: c.max_tokens,
            stream: false,
        };
        let full = u64::from(c.max_tokens);
        let response = match self.http.post(&self.endpoint).json(&body).send().await {
            Ok(r) => r,
            Err(e) => return self.transport_error(e, full),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s.min(c.max_retry_after_secs)).ok());
        let (bytes, cut) = match read_body(response, MAX_BODY_BYTES).await {
            Ok(Body::Whole(b)) => (b, false),
            Ok(Body::OverLimit { announced, .. }) if status.is_success() => {
                add(&self.counters.bad_bodies, 1);
                let limit = MAX_BODY_BYTES >> 20;
                let why = match announced {
                    Some(n) => format!(
                        "its Content-Length of {n} bytes is over the {limit} MiB limit of a judge response; not read"
                    ),
                    None => format!(
                        "its body passed the {limit} MiB limit of a judge response; stopped reading"
                    ),
                };
                // not retried: a server that answers this way once will again
                return Attempt::Reject {
                    reason: format!("HTTP {}: {why}", status.as_u16()),
                    charge: full,
                };
            }
            // an error status is read for its excerpt only: its start is enough
            Ok(Body::OverLimit { start, .. }) => (start, true),
            Err(e) if status.is_success() && !e.is_timeout() => {
                add(&self.counters.bad_bodies, 1);
                return Attempt::Retry {
                    reason: format!(
                        "HTTP {status}: body cut off: {}",
                        self.redact(e.without_url().to_string())
                    ),
                    after: None,
                    charge: full,
                };
            }
            Err(e) => return self.transport_error(e, full),
        };
        if status.is_success() {
            return self.read_answer(&bytes, full);
        }
        // redact the whole body first, then cut: a key straddling the cut would leak its prefix
        let excerpt = excerpt(
            &self.redact(String::from_utf8_lossy(&bytes).to_string()),
            300,
        );
        let mut reason = format!("HTTP {}: {excerpt}", status.as_u16());
        if cut {
            reason.push_str(&format!(
                " (a body over {} MiB, not read further)",
                MAX_BODY_BYTES >> 20
            ));
        }
        match status.as_u16() {
            429 => {
                add(&self.counters.http_429, 1);
                Attempt::Retry {
                    reason,
                    after: retry_after,
                    charge: 0,
                }
            }
            408 | 500..=599 => {
                add(&self.counters.http_5xx, u64::from(status.is_server_error()));
                add(
                    &self.counters.http_other,
                    u64::from(!status.is_server_error()),
                );
                Attempt::Retry {
                    reason,
                    after: None,
                    charge: 0,
                }
            }
            401 | 403 | 404 => {
                add(&self.counters.http_other, 1);
                Attempt::Fatal(format!(
                    "{reason} (check --judge-url, which should end in /v1, --judge-model and ${})",
                    c.api_key_env
                ))
            }
            _ => {
                add(&self.counters.http_other, 1);
                Attempt::Reject { reason, charge: 0 }
            }
        }
    }

    fn transport_error(&self, e: reqwest::Error, full: u64) -> Attempt {
        let timeout = e.is_timeout();
        let detail = self.redact(error_chain(&e.without_url()));
        if timeout {
            add(&self.counters.timeouts, 1);
            // the server may have generated (and billed) the whole answer
            Attempt::Retry {
                reason: format!("timed out after {}s: {detail}", self.config.timeout_secs),
                after: None,
                charge: full,
            }
        } else {
            add(&self.counters.connection_errors, 1);
            Attempt::Retry {
                reason: format!("connection failed: {detail}"),
                after: None,
                charge: 0,
            }
        }
    }

    fn read_answer(&self, bytes: &[u8], full: u64) -> Attempt {
        let bad = |why: String| {
            add(&self.counters.bad_bodies, 1);
            Attempt::Retry {
                reason: why,
                after: None,
                charge: full,
            }
        };
        let parsed: ChatResponse = match serde_json::from_slice(bytes) {
            Ok(p) => p,
            Err(e) => {
                let start = excerpt(&self.redact(String::from_utf8_lossy(bytes).to_string()), 80);
                return bad(format!(
                    "HTTP 200 with a body that is not a chat completion ({e}): {start:?}"
                ));
            }
        };
        let Some(choice) = parsed.choices.into_iter().next() else {
            return bad("HTTP 200 without choices".into());
        };
        let usage = parsed
            .usage
            .and_then(|u| Some((u.prompt_tokens.unwrap_or(0), u.completion_tokens?)));
        let charge = match usage {
            Some((_, completion)) => completion,
            None => {
                add(&self.counters.responses_without_usage, 1);
                full
            }
        };
        let (prompt_tokens, completion_tokens) = usage.unwrap_or((0, 0));
        // a server that echoes the key must not get it into the cache or the outputs
        let content = self.redact(choice.message.and_then(|m| m.content).unwrap_or_default());
        Attempt::Answer {
            answer: CachedAnswer {
                content,
                finish_reason: choice.finish_reason,
                prompt_tokens,
                completion_tokens,
            },
            charge,
        }
    }
}

/// A response body, read up to a limit.
enum Body {
    Whole(Vec<u8>),
    /// Longer than the limit: its Content-Length said so (`announced`; then nothing is read), or
    /// reading passed it (`start`: the bytes up to the limit). The rest is not read.
    OverLimit {
        start: Vec<u8>,
        announced: Option<u64>,
    },
}

/// Reads `response`'s body chunk by chunk, stopping as soon as it is known to exceed `limit`
/// bytes, so a broken or hostile server cannot make the client hold more than that.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Body, reqwest::Error> {
    if let Some(n) = response.content_length().filter(|&n| n > limit as u64) {
        return Ok(Body::OverLimit {
            start: Vec::new(),
            announced: Some(n),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Body::OverLimit {
                start: body,
                announced: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(body))
}

/// The error and its causes on one line (reqwest's own message is often just "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
