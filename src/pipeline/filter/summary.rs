//! What a filter run reports: per-unit statistics from the commit records, summed into the
//! summary (`summary.json`, the table).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper edges of the uncertainty histogram bins (the last bin is open).
pub const UNCERTAINTY_BINS: [f32; 8] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0];

/// What one unit contributed; also the unit's commit record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UnitStats {
    pub unit: String,
    pub file: String,
    pub row_group: Option<usize>,
    pub rows_in: u64,
    pub rows_scored: u64,
    pub rows_kept: u64,
    pub rows_rejected: u64,
    pub tokens: u64,
    /// Backbone positions computed (`tokens` less the prefixes shared, issue 32); absent in
    /// records written before it: then `tokens`.
    #[serde(default)]
    pub tokens_computed: Option<u64>,
    /// Value of the group-by column -> (rows scored, rows kept).
    pub groups: BTreeMap<String, (u64, u64)>,
    /// Counts per `UNCERTAINTY_BINS` bin (one more for the open last bin).
    pub histogram: Vec<u64>,
    /// Every file the unit wrote (relative to the output folder) and its row count: what resume
    /// and `filter-verify` check.
    #[serde(default)]
    pub outputs: crate::sink::commit::Promised,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterSummary {
    pub units: u64,
    pub units_this_run: u64,
    pub rows_in: u64,
    pub rows_scored: u64,
    pub rows_kept: u64,
    pub rows_rejected: u64,
    pub keep_rate: f64,
    pub tokens: u64,
    pub tokens_computed: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub tokens_per_second: f64,
    pub model_version: String,
    pub keep_rate_by_group: BTreeMap<String, f64>,
    pub uncertainty_histogram: Vec<(String, u64)>,
    pub peak_rss_mb: f64,
    /// How a `--ray` run spread over the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ray: Option<RaySummary>,
}

/// What a Ray run adds to the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RaySummary {
    pub address: String,
    /// Nodes that committed at least one unit of this run.
    pub nodes_used: usize,
    /// Task attempts (a retried unit counts each attempt).
    pub attempts: u64,
    /// Units that needed more than one attempt.
    pub units_retried: u64,
    /// Which node did which unit (relative to the output folder).
    pub manifest: String,
}

impl FilterSummary {
    /// The end-of-run report on the terminal.
    /// The report as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let s = self;
        let _ = writeln!(
            out,
            "units          {:>10}  ({} this run)",
            s.units, s.units_this_run
        );
        let _ = writeln!(out, "rows in        {:>10}", s.rows_in);
        let _ = writeln!(out, "rows scored    {:>10}", s.rows_scored);
        let _ = writeln!(
            out,
            "rows kept      {:>10}  ({:.1} %)",
            s.rows_kept,
            100.0 * s.keep_rate
        );
        let _ = writeln!(out, "rows rejected  {:>10}", s.rows_rejected);
        if s.tokens_computed != s.tokens {
            let _ = writeln!(
                out,
                "tokens         {:>10}  ({} computed: shared prefixes once)",
                s.tokens, s.tokens_computed
            );
        }
        let _ = writeln!(
            out,
            "throughput     {:>10.1} rows/s, {:.0} tokens/s (this run, {:.1} s)",
            s.rows_per_second, s.tokens_per_second, s.seconds
        );
        let _ = writeln!(out, "model          {}", s.model_version);
        if let Some(r) = &s.ray {
            let _ = writeln!(
                out,
                "ray            {} node(s) of {}, {} attempts, {} unit(s) retried ({})",
                r.nodes_used, r.address, r.attempts, r.units_retried, r.manifest
            );
        }
        let _ = writeln!(out, "peak RSS       {:>10.1} MiB", s.peak_rss_mb);
        for (g, r) in &s.keep_rate_by_group {
            let _ = writeln!(out, "keep rate      {:>9.1} %  {g}", 100.0 * r);
        }
        let _ = writeln!(out, "uncertainty (1 = ActPRM threshold):");
        let max = s
            .uncertainty_histogram
            .iter()
            .map(|h| h.1)
            .max()
            .unwrap_or(1)
            .max(1);
        for (bin, count) in &s.uncertainty_histogram {
            let _ = writeln!(
                out,
                "  {bin:<14} {count:>9} {}",
                "#".repeat((40 * count / max) as usize)
            );
        }
        out
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Adds up commit records.
pub fn summarise(units: &[UnitStats]) -> FilterSummary {
    let mut s = FilterSummary {
        units: units.len() as u64,
        ..FilterSummary::default()
    };
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut hist = vec![0u64; UNCERTAINTY_BINS.len() + 1];
    for u in units {
        s.rows_in += u.rows_in;
        s.rows_scored += u.rows_scored;
        s.rows_kept += u.rows_kept;
        s.rows_rejected += u.rows_rejected;
        s.tokens += u.tokens;
        s.tokens_computed += u.tokens_computed.unwrap_or(u.tokens);
        for (k, v) in &u.groups {
            let e = groups.entry(k.clone()).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
        for (h, c) in hist.iter_mut().zip(&u.histogram) {
            *h += c;
        }
    }
    s.keep_rate = s.rows_kept as f64 / s.rows_scored.max(1) as f64;
    s.keep_rate_by_group = groups
        .into_iter()
        .map(|(k, (n, kept))| (k, kept as f64 / n.max(1) as f64))
        .collect();
    let mut lower = 0.0f32;
    s.uncertainty_histogram = hist
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let label = match UNCERTAINTY_BINS.get(i) {
                Some(&edge) => format!("[{lower}, {edge})"),
                None => format!("[{lower}, inf)"),
            };
            lower = UNCERTAINTY_BINS.get(i).copied().unwrap_or(lower);
            (label, c)
        })
        .collect();
    s
}

impl crate::report::Report for FilterSummary {
    fn table(&self) -> String {
        FilterSummary::table(self)
    }
}
