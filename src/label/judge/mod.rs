//! The judge labeller: a strong reasoning model behind an OpenAI-compatible chat completions
//! endpoint (vLLM, SGLang, a hosted API) names the first wrong step of each selected trajectory.
//! The judge is the dominant cost of the whole system, so answers are cached on disk and never
//! paid for twice, a hard budget caps requests and generated tokens, and every row comes back
//! labelled or explicitly unlabelled with its reason.

pub mod accounting;
pub mod cache;
pub mod client;
pub mod eval;
pub mod parse;
pub mod prompt;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use accounting::Accounting;
pub use cache::{AnswerCache, CacheOpenReport};
pub use client::{stderr_logger, JudgeClient, Logger};
pub use prompt::{Prompt, PromptFormat};

use super::{LabelOutcome, LabelRequest, Labeller};

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("judge configuration: {0}")]
    Config(String),
    #[error("judge cache: {0}")]
    Cache(String),
}

/// Everything about the judge; the CLI flags and pipeline files fill the same struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://localhost:8000/v1` (a full
    /// `.../chat/completions` URL is used as is).
    pub url: String,
    /// Model name as the server knows it (`--served-model-name` in vLLM).
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself is never stored).
    pub api_key_env: String,
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: u32,
    /// Per request, connection to last byte.
    pub timeout_secs: f64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Further attempts after a transient failure (5xx, 429, timeout, dropped connection, bad body).
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Upper bound on a 429's `Retry-After`.
    pub max_retry_after_secs: f64,
    /// Samples per trajectory; the label is their majority.
    pub votes: u32,
    pub format: PromptFormat,
    /// A user prompt template (`{problem}`, `{paragraphs}`) in place of the format's built-in one.
    pub template: Option<PathBuf>,
    /// Hard cap on HTTP requests sent (retries included).
    pub max_requests: Option<u64>,
    /// Hard cap on generated (completion) tokens.
    pub max_completion_tokens: Option<u64>,
    /// Answer cache directory; `None` = no cache.
    pub cache: Option<PathBuf>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            temperature: 0.5,
            top_p: 1.0,
            max_tokens: 8192,
            timeout_secs: 600.0,
            concurrency: 16,
            max_retries: 6,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            max_retry_after_secs: 300.0,
            votes: 1,
            format: PromptFormat::Critique,
            template: None,
            max_requests: None,
            max_completion_tokens: None,
            cache: None,
        }
    }
}

impl JudgeConfig {
    pub fn validate(&self) -> Result<(), JudgeError> {
        let bad = |m: String| Err(JudgeError::Config(m));
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.model.trim().is_empty() {
            return bad("no model name".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if self.max_tokens == 0 || self.concurrency == 0 || self.votes == 0 {
            return bad("max_tokens, concurrency and votes must be at least 1".into());
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0)
            || self.max_retry_after_secs.is_nan()
            || self.max_retry_after_secs < 0.0
        {
            return bad("timeout_secs must be > 0 and max_retry_after_secs >= 0".into());
        }
        Ok(())
    }

    /// The chat completions URL.
    pub fn endpoint(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        }
    }
}

/// The state of a row after the label stage (the `judge_status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeStatus {
    Labelled,
    Unparseable,
    OverBudget,
    Failed,
    NotSelected,
}

impl JudgeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Labelled => "labelled",
            Self::Unparseable => "unparseable",
            Self::OverBudget => "over_budget",
            Self::Failed => "failed",
            Self::NotSelected => "not_selected",
        }
    }
}

/// One row's result in full: label or reason, the raw answer when it could not be parsed, and
/// every sample's vote (`None` = that sample gave no label).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeOutcome {
    pub status: JudgeStatus,
    pub label: Option<i32>,
    pub reason: Option<String>,
    pub raw: Option<String>,
    pub votes: Vec<Option<i32>>,
}

impl JudgeOutcome {
    pub fn unlabelled(
        status: JudgeStatus,
        reason: String,
        raw: Option<String>,
        votes: Vec<Option<i32>>,
    ) -> Self {
        Self {
            status,
            label: None,
            reason: Some(reason),
            raw,
            votes,
        }
    }
}

impl From<JudgeOutcome> for LabelOutcome {
    fn from(o: JudgeOutcome) -> Self {
        match (o.status, o.label) {
            (JudgeStatus::Labelled, Some(first_error)) => LabelOutcome::Labelled { first_error },
            (status, _) => LabelOutcome::Unlabelled {
                reason: format!("{}: {}", status.as_str(), o.reason.unwrap_or_default()),
                raw: o.raw,
            },
        }
    }
}

/// The judge behind the [`Labeller`] trait, for synchronous callers (the active loop). It owns a
/// small runtime (async code can use [`JudgeClient::judge`] directly).
pub struct JudgeLabeller {
    client: Arc<JudgeClient>,
    runtime: tokio::runtime::Runtime,
}

impl JudgeLabeller {
    pub fn new(config: &JudgeConfig, log: Logger) -> Result<Self, JudgeError> {
        let (client, _) = JudgeClient::new(config, log)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("actprm-judge")
            .enable_all()
            .build()
            .map_err(|e| JudgeError::Config(format!("starting the judge runtime: {e}")))?;
        Ok(Self {
            client: Arc::new(client),
            runtime,
        })
    }

    pub fn client(&self) -> &Arc<JudgeClient> {
        &self.client
    }

    pub fn accounting(&self) -> Accounting {
        self.client.accounting()
    }

    /// Every request labelled concurrently (up to the client's limit); one outcome each, in order.
    /// Runs on its own thread, so callers inside another runtime (the scorer's batch hooks) may
    /// block on it too.
    pub fn label_detailed(&mut self, requests: &[LabelRequest]) -> Vec<JudgeOutcome> {
        let (client, runtime) = (&self.client, &self.runtime);
        let work = || {
            runtime.block_on(futures::future::join_all(
                requests.iter().map(|r| client.judge(r)),
            ))
        };
        std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(outcomes) => outcomes,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }
}

impl Labeller for JudgeLabeller {
    fn label(&mut self, requests: &[LabelRequest]) -> Vec<LabelOutcome> {
        self.label_detailed(requests)
            .into_iter()
            .map(LabelOutcome::from)
            .collect()
    }

    fn name(&self) -> String {
        format!("judge:{}", self.client.config().model)
    }
}
