//! The judge labeller: a strong reasoning model behind an OpenAI-compatible chat completions
//! endpoint (vLLM, SGLang, a hosted API) names the first wrong step of each selected trajectory.
//! The judge is the dominant cost of the whole system, so answers are cached on disk and never
//! paid for twice, a hard budget caps requests and generated tokens, and every row comes back
//! labelled or explicitly unlabelled with its reason.

pub mod accounting;
mod budget;
pub mod cache;
pub mod client;
pub mod parse;
pub mod prompt;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use accounting::Accounting;
pub use cache::{AnswerCache, CacheOpenReport};
pub use client::JudgeClient;
pub use prompt::{Prompt, PromptFormat};

use super::{LabelOutcome, LabelRequest, Labeller};

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("judge configuration: {0}")]
    Config(String),
    #[error("judge cache: {0}")]
    Cache(String),
}

crate::settings! {
    /// Everything about the judge, defined once: the flags of `label`, `judge eval` and `active`, and
    /// a `judges:` entry of a pipeline file (where `--judge-url` / `--judge-model` are `url` / `model`).
    /// The API key comes from the environment only, never from a flag or file, so it stays out of
    /// shell history, process lists and version control.
    #[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(default)]
    pub struct JudgeConfig {
        /// Base URL of the OpenAI-compatible API, e.g. http://localhost:8000/v1 (a full
        /// .../chat/completions URL is used as is). Empty: no judge.
        #[arg(
            id = "judge_url",
            long = "judge-url",
            default_value = "",
            hide_default_value = true
        )]
        #[serde(rename = "url")]
        pub url: String,
        /// Model name as served (vLLM: --served-model-name).
        #[arg(
            id = "judge_model",
            long = "judge-model",
            default_value = "",
            hide_default_value = true
        )]
        #[serde(rename = "model")]
        pub model: String,
        /// Environment variable holding the API key (unset: no Authorization header).
        #[arg(long)]
        pub api_key_env: String = "OPENAI_API_KEY".into(),
        #[arg(long)]
        pub temperature: f32 = 0.5,
        #[arg(long)]
        pub top_p: f32 = 1.0,
        /// Most tokens the judge may generate per answer.
        #[arg(long)]
        pub max_tokens: u32 = 8192,
        /// Per-request timeout in seconds, connection to last byte.
        #[arg(id = "timeout", long = "timeout")]
        #[serde(rename = "timeout")]
        pub timeout_secs: f64 = 600.0,
        /// Requests in flight at once.
        #[arg(long)]
        pub concurrency: usize = 16,
        /// Retries per request after 5xx, 429, timeouts, dropped connections, broken bodies.
        #[arg(id = "retries", long = "retries")]
        #[serde(rename = "retries")]
        pub max_retries: u32 = 6,
        /// First retry delay in ms (doubled per retry, with jitter).
        #[arg(long)]
        pub backoff_base_ms: u64 = 1000,
        /// Longest retry delay in ms.
        #[arg(long)]
        pub backoff_max_ms: u64 = 60_000,
        /// Upper bound in seconds on a 429's Retry-After.
        #[arg(id = "max_retry_after", long = "max-retry-after")]
        #[serde(rename = "max_retry_after")]
        pub max_retry_after_secs: f64 = 300.0,
        /// Samples per trajectory (majority vote).
        #[arg(long)]
        pub votes: u32 = 1,
        /// Answer format: critique (paragraph analyses + conclusion) or processbench (index in \boxed{}).
        #[arg(id = "prompt", long = "prompt", value_enum)]
        #[serde(rename = "prompt")]
        pub format: PromptFormat = PromptFormat::Critique,
        /// Own prompt template with {problem} and {paragraphs} placeholders (parsed as --prompt says).
        #[arg(long)]
        pub template: Option<PathBuf>,
        /// Hard cap on HTTP requests (retries included); the rest pass through as over_budget.
        #[arg(long)]
        pub max_requests: Option<u64>,
        /// Hard cap on generated tokens; a request is sent only if its max_tokens still fit.
        #[arg(long)]
        pub max_completion_tokens: Option<u64>,
        /// Answer cache directory; `None` = no cache. Where it goes is the command's choice.
        #[arg(skip)]
        #[serde(skip)]
        #[schemars(skip)]
        pub cache: Option<PathBuf>,
    }
}

impl JudgeConfig {
    /// Whether a judge endpoint was named (the active loop labels by the judge only then).
    pub fn is_given(&self) -> bool {
        !self.url.is_empty() || !self.model.is_empty()
    }

    /// This judge with its answers cached in `dir`.
    pub fn with_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.cache = dir;
        self
    }

    /// The first of [`JudgeConfig::problems`], as a command reports it.
    pub fn validate(&self) -> Result<(), JudgeError> {
        let mut problems = crate::limits::Problems::default();
        self.problems(&mut problems);
        problems
            .first()
            .map_err(|e| JudgeError::Config(e.to_string()))
    }

    /// Range and format problems, for the judge flags and a pipeline file's `judges` alike
    /// (each named by its file key and its flag). Every value is also bounded above, so what
    /// passes here can be used as it is: a `Duration`, a semaphore's permits, a product of
    /// `concurrency` and `votes`.
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::{at_least, fraction, non_negative, positive, refuse_flag};
        if self.url.is_empty() {
            problems.0.push(refuse_flag(
                "url",
                "judge-url",
                "is required: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1".into(),
            ));
        } else if !is_http_url(&self.url) {
            problems.0.push(refuse_flag(
                "url",
                "judge-url",
                format!(
                    "is `{}`; expected an http:// or https:// URL",
                    without_credentials(&self.url)
                ),
            ));
        }
        if self.model.trim().is_empty() {
            problems.0.push(refuse_flag(
                "model",
                "judge-model",
                "is required: the model name the endpoint serves".into(),
            ));
        }
        problems.check(non_negative("temperature", f64::from(self.temperature)));
        problems.check(fraction("top_p", self.top_p, true));
        let (timeout, retry_after) = (self.timeout_secs, self.max_retry_after_secs);
        problems.check(
            positive("timeout", timeout).and_then(|()| at_most("timeout", timeout, MAX_SECONDS)),
        );
        problems.check(
            non_negative("max_retry_after", retry_after)
                .and_then(|()| at_most("max_retry_after", retry_after, MAX_SECONDS)),
        );
        for (key, value) in [
            ("backoff_base_ms", self.backoff_base_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            problems.check(at_most(key, value, MAX_SECONDS as u64 * 1000));
        }
        problems.check(at_least("max_tokens", self.max_tokens, 1));
        for (key, value, max) in [
            ("concurrency", self.concurrency, MAX_CONCURRENCY),
            ("votes", self.votes as usize, MAX_VOTES),
        ] {
            problems.check(at_least(key, value, 1).and_then(|()| at_most(key, value, max)));
        }
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

/// The longest timeout, Retry-After bound and backoff: one day.
pub const MAX_SECONDS: f64 = 86_400.0;
/// The most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 1024;
/// The most samples per trajectory.
pub const MAX_VOTES: usize = 64;

/// `value` no larger than `max`. NaN is left to the other checks of the same setting.
fn at_most<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    max: T,
) -> Result<(), crate::limits::SettingError> {
    if value > max {
        Err(crate::limits::refuse(
            name,
            format!("must be at most {max}, got {value}"),
        ))
    } else {
        Ok(())
    }
}

/// Whether `url` names the http or https scheme, in any case (`HTTPS://` is https).
fn is_http_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

/// `url` safe to print: the `user:token@` of its authority becomes `***@` (with or without a
/// scheme in front, valid URL or not).
pub fn without_credentials(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_string(),
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
    pub fn new(config: &JudgeConfig, log: crate::report::Log) -> Result<Self, JudgeError> {
        let (client, _) = JudgeClient::new(config, log)?;
        let runtime = crate::runtime::start("actprm-judge", Some(2))
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
