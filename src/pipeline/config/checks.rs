//! Value checks the types cannot express (ranges, required declarations), with the library's own
//! range rules (`limits`), so a flag and a file key are refused with one message.

use super::*;
use crate::limits::SettingError;

/// Value checks the types cannot express (ranges, formats); each names the field it is about.
pub trait CheckValues {
    fn check_values(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// The library's range check of a setting (the one CLI flags get), as a located problem.
fn limit(
    out: &mut Vec<(&'static str, String)>,
    field: &'static str,
    check: Result<(), SettingError>,
) {
    if let Err(e) = check {
        out.push((field, e.message));
    }
}

fn positive(out: &mut Vec<(&'static str, String)>, field: &'static str, v: f64) {
    limit(out, field, crate::limits::positive(field, v));
}

impl CheckValues for ModelDecl {}

impl CheckValues for JudgeDecl {
    fn check_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.url.is_empty() {
            out.push((
                "url",
                "is required: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1".to_string(),
            ));
        } else if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            out.push((
                "url",
                format!("is `{}`; expected an http:// or https:// URL", self.url),
            ));
        }
        if self.model.is_empty() {
            out.push((
                "model",
                "is required: the model name the endpoint serves".to_string(),
            ));
        }
        positive(&mut out, "timeout", self.timeout_secs);
        for (field, value) in [
            ("max_tokens", self.max_tokens as usize),
            ("concurrency", self.concurrency),
            ("votes", self.votes as usize),
        ] {
            limit(&mut out, field, crate::limits::at_least(field, value, 1));
        }
        out
    }
}

impl CheckValues for ParquetSource {}
impl CheckValues for LabelledSource {}
impl CheckValues for SqlStage {}
impl CheckValues for LabelStage {}
impl CheckValues for PathSink {}
impl CheckValues for TableSink {}

impl CheckValues for ScoreStage {
    fn check_values(&self) -> Vec<(&'static str, String)> {
        use crate::limits::{at_least, fraction};
        let mut out = Vec::new();
        let options = &self.settings.options;
        if let Some(tau) = options.tau {
            limit(&mut out, "tau", fraction("tau", tau, false));
        }
        limit(
            &mut out,
            "delta_pred",
            fraction("delta_pred", options.rule.delta_pred, false),
        );
        limit(
            &mut out,
            "delta_std",
            fraction("delta_std", options.rule.delta_std, false),
        );
        limit(
            &mut out,
            "batch_rows",
            at_least("batch_rows", self.settings.batch_rows, 1),
        );
        limit(
            &mut out,
            "token_budget",
            at_least("token_budget", options.token_budget, 1),
        );
        limit(
            &mut out,
            "max_batch",
            at_least("max_batch", options.max_batch, 1),
        );
        out
    }
}

impl CheckValues for FilterStage {
    fn check_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(rate) = self.settings.keep.keep_rate {
            limit(
                &mut out,
                "keep_rate",
                crate::limits::fraction("keep_rate", rate, false),
            );
        }
        out
    }
}

impl CheckValues for TrainStage {
    fn check_values(&self) -> Vec<(&'static str, String)> {
        use crate::limits::{at_least, non_negative};
        let s = &self.settings;
        let mut out = Vec::new();
        positive(&mut out, "lr", s.lr);
        limit(&mut out, "lambda", non_negative("lambda", s.lambda));
        limit(
            &mut out,
            "export_every",
            at_least("export_every", s.export_every, 1),
        );
        limit(
            &mut out,
            "eval_every",
            at_least("eval_every", s.eval_every, 1),
        );
        if let Some(heads) = s.cold_start {
            limit(&mut out, "cold_start", at_least("cold_start", heads, 1));
        }
        out
    }
}
