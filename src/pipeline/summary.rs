//! The machine-readable end-of-run summary (`DIR/summary.json`).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rows_in: u64,
    pub rows_scored: u64,
    pub rows_rejected: u64,
    pub rows_selected: u64,
    pub files: u64,
    pub files_unreadable: u64,
    pub steps: u64,
    pub tokens: u64,
    /// Backbone positions computed: `tokens` less the prefixes rows shared (issue 32).
    pub tokens_computed: u64,
    pub windowed_rows: u64,
    pub truncated_rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub tokens_per_second: f64,
    /// The version that scored the last batch; `rows_by_model_version` has all of them.
    pub model_version: String,
    pub rows_by_model_version: BTreeMap<String, u64>,
    pub reject_reasons: BTreeMap<String, u64>,
    pub ensemble_size: usize,
    pub tau: f32,
    /// The arithmetic-check rule `first_error` was computed under (the model's, or `--check`).
    pub check: crate::score::check::CheckRule,
    /// Rows in which the check found a false equality (0 when it is off).
    pub rows_check_flagged: u64,
    pub delta_pred: f32,
    pub delta_std: f32,
    pub parts: Vec<String>,
    /// Rows the data sinks got through a pipeline's `sql` transform after score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
}

impl Summary {
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "rows in        {:>10}", self.rows_in);
        let _ = writeln!(out, "rows scored    {:>10}", self.rows_scored);
        let _ = writeln!(out, "rows rejected  {:>10}", self.rows_rejected);
        if self.rows_scored > 0 {
            let _ = writeln!(
                out,
                "rows selected  {:>10}  ({:.1} % uncertain, delta_pred {} / delta_std {})",
                self.rows_selected,
                100.0 * self.rows_selected as f64 / self.rows_scored as f64,
                self.delta_pred,
                self.delta_std
            );
        }
        if let Some(written) = self.rows_written {
            let _ = writeln!(
                out,
                "rows written   {written:>10}  (through the sql transform)"
            );
        }
        let _ = writeln!(out, "steps scored   {:>10}", self.steps);
        let _ = writeln!(
            out,
            "tokens         {:>10}  ({:.0} tokens/s, {:.1} rows/s)",
            self.tokens, self.tokens_per_second, self.rows_per_second
        );
        if self.tokens_computed != self.tokens {
            let _ = writeln!(
                out,
                "  computed     {:>10}  ({:.1} % of the tokens: shared prefixes once)",
                self.tokens_computed,
                100.0 * self.tokens_computed as f64 / self.tokens.max(1) as f64
            );
        }
        let _ = writeln!(
            out,
            "windowed rows  {:>10}  (truncated {})",
            self.windowed_rows, self.truncated_rows
        );
        let _ = writeln!(out, "seconds        {:>10.1}", self.seconds);
        let check = if self.check.is_off() {
            "heads alone".to_string()
        } else {
            format!(
                "with the arithmetic check: {} rows state a false equality",
                self.rows_check_flagged
            )
        };
        let _ = writeln!(
            out,
            "model          {}  (E = {}, tau = {}; first error {check})",
            self.model_version, self.ensemble_size, self.tau
        );
        for (reason, n) in &self.reject_reasons {
            let _ = writeln!(out, "rejected       {n:>10}  {reason}");
        }
        out
    }
}

impl crate::report::Report for Summary {
    fn table(&self) -> String {
        Summary::table(self)
    }
}
