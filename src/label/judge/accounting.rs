//! What the judge cost and what it gave: counters shared by every in-flight request, read once
//! at the end into [`Accounting`] (printed and written to `summary.json`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::JudgeStatus;

/// The final tally. Requests are HTTP attempts actually sent (retries included); samples are the
/// answers needed (rows x votes); rows are trajectories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    pub requests: u64,
    pub retries: u64,
    pub cache_hits: u64,
    /// Answers received from the endpoint and used (each one paid for exactly once).
    pub answers: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Completion tokens counted against the budget: `usage` when the response has it, else the
    /// whole `max_tokens` (a timed-out or broken response may still have been generated and billed).
    pub budget_tokens: u64,
    pub responses_without_usage: u64,
    pub http_5xx: u64,
    pub http_429: u64,
    pub http_other: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    pub bad_bodies: u64,
    pub cache_write_errors: u64,
    pub samples_over_budget: u64,
    pub samples_failed: u64,
    pub rows_labelled: u64,
    pub rows_unparseable: u64,
    pub rows_over_budget: u64,
    pub rows_failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub cache_hits: AtomicU64,
    pub answers: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub budget_tokens: AtomicU64,
    pub responses_without_usage: AtomicU64,
    pub http_5xx: AtomicU64,
    pub http_429: AtomicU64,
    pub http_other: AtomicU64,
    pub timeouts: AtomicU64,
    pub connection_errors: AtomicU64,
    pub bad_bodies: AtomicU64,
    pub cache_write_errors: AtomicU64,
    pub samples_over_budget: AtomicU64,
    pub samples_failed: AtomicU64,
    pub rows_labelled: AtomicU64,
    pub rows_unparseable: AtomicU64,
    pub rows_over_budget: AtomicU64,
    pub rows_failed: AtomicU64,
}

/// Adds `n`, saturating: a server may report any usage (even u64::MAX tokens) and a counter must
/// never wrap or panic on it. Returns the new value.
pub(crate) fn add(counter: &AtomicU64, n: u64) -> u64 {
    let previous = counter
        .fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_add(n)))
        .unwrap_or_else(|c| c);
    previous.saturating_add(n)
}

impl Counters {
    pub fn row(&self, status: JudgeStatus) {
        let c = match status {
            JudgeStatus::Labelled => &self.rows_labelled,
            JudgeStatus::Unparseable => &self.rows_unparseable,
            JudgeStatus::OverBudget => &self.rows_over_budget,
            JudgeStatus::Failed => &self.rows_failed,
            JudgeStatus::NotSelected => return,
        };
        add(c, 1);
    }

    pub fn snapshot(&self) -> Accounting {
        let g = |c: &AtomicU64| c.load(Relaxed);
        Accounting {
            requests: g(&self.requests),
            retries: g(&self.retries),
            cache_hits: g(&self.cache_hits),
            answers: g(&self.answers),
            prompt_tokens: g(&self.prompt_tokens),
            completion_tokens: g(&self.completion_tokens),
            budget_tokens: g(&self.budget_tokens),
            responses_without_usage: g(&self.responses_without_usage),
            http_5xx: g(&self.http_5xx),
            http_429: g(&self.http_429),
            http_other: g(&self.http_other),
            timeouts: g(&self.timeouts),
            connection_errors: g(&self.connection_errors),
            bad_bodies: g(&self.bad_bodies),
            cache_write_errors: g(&self.cache_write_errors),
            samples_over_budget: g(&self.samples_over_budget),
            samples_failed: g(&self.samples_failed),
            rows_labelled: g(&self.rows_labelled),
            rows_unparseable: g(&self.rows_unparseable),
            rows_over_budget: g(&self.rows_over_budget),
            rows_failed: g(&self.rows_failed),
        }
    }
}

impl Accounting {
    pub fn rows(&self) -> u64 {
        self.rows_labelled + self.rows_unparseable + self.rows_over_budget + self.rows_failed
    }

    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "judge rows     {:>10}  (labelled {}, unparseable {}, over budget {}, failed {})",
            self.rows(),
            self.rows_labelled,
            self.rows_unparseable,
            self.rows_over_budget,
            self.rows_failed
        );
        let _ = writeln!(
            out,
            "requests       {:>10}  (retries {}, answers {}, cache hits {})",
            self.requests, self.retries, self.answers, self.cache_hits
        );
        let _ = writeln!(
            out,
            "tokens         {:>10}  prompt, {} completion ({} counted against the budget)",
            self.prompt_tokens, self.completion_tokens, self.budget_tokens
        );
        let errors = [
            ("5xx", self.http_5xx),
            ("429", self.http_429),
            ("other HTTP", self.http_other),
            ("timeouts", self.timeouts),
            ("connection", self.connection_errors),
            ("bad bodies", self.bad_bodies),
        ];
        let errors: Vec<String> = errors
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "errors         {}", errors.join(", "));
        }
        out
    }
}

impl crate::report::Report for Accounting {
    fn table(&self) -> String {
        Accounting::table(self)
    }
}
