//! `actprm filter`: score a large corpus, keep the uncertain trajectories, and survive anything.
//!
//! The unit of work is one row group of one input file. Each unit's output (kept rows, optionally
//! skipped rows, rejected rows) is written under temporary names and renamed into place, and only
//! then is the unit's commit record `units/<unit>.json` written (atomically). A rerun after a crash
//! (even `kill -9`) skips committed units and redoes the rest, overwriting any half-written files:
//! no row is lost or duplicated. `--shard i/n` assigns units by a stable hash of (file, row
//! group), so n machines split one job without talking to each other; `filter-verify` checks that
//! a set of shard outputs covers every unit exactly once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::score::{run_scoring, ScoreHooks, ScoreJob, ScoredSink};
use super::PipelineError;
use crate::score::RowScore;
use crate::sink::rejects::RejectedRow;
use crate::sink::write_atomic;
use crate::source::discover_inputs;
use crate::source::parquet::{plan, PlannedFile};

/// Upper edges of the uncertainty histogram bins (the last bin is open).
pub const UNCERTAINTY_BINS: [f32; 8] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Keep {
    /// ActPRM's threshold rule.
    Rule,
    /// This fraction of each scored batch, most uncertain first.
    Rate(f64),
}

#[derive(Debug, Clone)]
pub struct FilterJob {
    pub score: ScoreJob,
    pub keep: Keep,
    /// `(i, n)`: this process handles units whose hash is i modulo n.
    pub shard: (u64, u64),
    pub write_skipped: bool,
    /// Report keep rates per value of this column.
    pub group_by: Option<String>,
}

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
    /// Value of the group-by column -> (rows scored, rows kept).
    pub groups: BTreeMap<String, (u64, u64)>,
    /// Counts per `UNCERTAINTY_BINS` bin (one more for the open last bin).
    pub histogram: Vec<u64>,
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
    pub seconds: f64,
    pub rows_per_second: f64,
    pub tokens_per_second: f64,
    pub model_version: String,
    pub keep_rate_by_group: BTreeMap<String, f64>,
    pub uncertainty_histogram: Vec<(String, u64)>,
    pub peak_rss_mb: f64,
}

impl FilterSummary {
    /// The end-of-run report on the terminal.
    pub fn print(&self) {
        let s = self;
        println!(
            "units          {:>10}  ({} this run)",
            s.units, s.units_this_run
        );
        println!("rows in        {:>10}", s.rows_in);
        println!("rows scored    {:>10}", s.rows_scored);
        println!(
            "rows kept      {:>10}  ({:.1} %)",
            s.rows_kept,
            100.0 * s.keep_rate
        );
        println!("rows rejected  {:>10}", s.rows_rejected);
        println!(
            "throughput     {:>10.1} rows/s, {:.0} tokens/s (this run, {:.1} s)",
            s.rows_per_second, s.tokens_per_second, s.seconds
        );
        println!("model          {}", s.model_version);
        println!("peak RSS       {:>10.1} MiB", s.peak_rss_mb);
        for (g, r) in &s.keep_rate_by_group {
            println!("keep rate      {:>9.1} %  {g}", 100.0 * r);
        }
        println!("uncertainty (1 = ActPRM threshold):");
        let max = s
            .uncertainty_histogram
            .iter()
            .map(|h| h.1)
            .max()
            .unwrap_or(1)
            .max(1);
        for (bin, count) in &s.uncertainty_histogram {
            println!(
                "  {bin:<14} {count:>9} {}",
                "#".repeat((40 * count / max) as usize)
            );
        }
    }
}

/// FNV-1a: a hash that never changes between versions or machines (shard assignment relies on it).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn unit_id(file: &Path, group: Option<usize>) -> String {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("input");
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = stable_hash(&file.display().to_string());
    match group {
        Some(g) => format!("{stem}-{hash:016x}-rg{g:05}"),
        None => format!("{stem}-{hash:016x}-file"),
    }
}

pub fn in_shard(file: &Path, group: usize, (i, n): (u64, u64)) -> bool {
    stable_hash(&format!("{}#{group}", file.display())) % n.max(1) == i
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

struct OpenWriter {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
}

fn open_writer(dir: &Path, batch: &RecordBatch) -> Result<OpenWriter, PipelineError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| PipelineError::Stage(format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".unit-{}.parquet.tmp", std::process::id()));
    let file =
        File::create(&tmp).map_err(|e| PipelineError::Stage(format!("{}: {e}", tmp.display())))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
    Ok(OpenWriter { writer, tmp })
}

/// One output stream of the unit in progress (kept, skipped or rejects).
#[derive(Default)]
struct UnitOutput {
    open: Option<OpenWriter>,
}

impl UnitOutput {
    fn write(&mut self, dir: &Path, batch: &RecordBatch) -> Result<(), PipelineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(open_writer(dir, batch)?);
        }
        let w = self.open.as_mut().expect("opened above");
        w.writer
            .write(batch)
            .map_err(|e| PipelineError::Stage(e.to_string()))
    }

    /// Closes and renames to `final_path`; with no rows, removes a stale file of a crashed run.
    fn commit(&mut self, final_path: &Path) -> Result<(), PipelineError> {
        match self.open.take() {
            Some(w) => {
                w.writer
                    .close()
                    .map_err(|e| PipelineError::Stage(e.to_string()))?;
                std::fs::rename(&w.tmp, final_path)
                    .map_err(|e| PipelineError::Stage(format!("{}: {e}", final_path.display())))
            }
            None => {
                let _ = std::fs::remove_file(final_path);
                Ok(())
            }
        }
    }
}

struct FilterSink {
    out: PathBuf,
    keep: Keep,
    write_skipped: bool,
    group_by: Option<String>,
    kept: UnitOutput,
    skipped: UnitOutput,
    rejects: UnitOutput,
    stats: UnitStats,
    committed: u64,
}

impl FilterSink {
    fn commit(
        &mut self,
        unit: String,
        file: &Path,
        group: Option<usize>,
    ) -> Result<(), PipelineError> {
        self.kept
            .commit(&self.out.join("kept").join(format!("{unit}.parquet")))?;
        if self.write_skipped {
            self.skipped
                .commit(&self.out.join("skipped").join(format!("{unit}.parquet")))?;
        }
        self.rejects
            .commit(&self.out.join("rejects").join(format!("{unit}.parquet")))?;
        let mut stats = std::mem::take(&mut self.stats);
        stats.unit = unit.clone();
        stats.file = file.display().to_string();
        stats.row_group = group;
        stats.histogram.resize(UNCERTAINTY_BINS.len() + 1, 0);
        write_atomic(
            &self.out.join("units").join(format!("{unit}.json")),
            &serde_json::to_vec(&stats).expect("stats serialise"),
        )?;
        self.committed += 1;
        Ok(())
    }

    fn keep_mask(&self, scores: &[RowScore]) -> Vec<bool> {
        match self.keep {
            Keep::Rule => scores.iter().map(|s| s.decision.selected).collect(),
            Keep::Rate(rate) => {
                let n = scores.len();
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| {
                    scores[b]
                        .decision
                        .uncertainty
                        .total_cmp(&scores[a].decision.uncertainty)
                        .then(a.cmp(&b))
                });
                let mut mask = vec![false; n];
                order[..((n as f64 * rate).round() as usize).min(n)]
                    .iter()
                    .for_each(|&i| mask[i] = true);
                mask
            }
        }
    }
}

impl ScoredSink for FilterSink {
    fn scored(
        &mut self,
        path: &Path,
        _first_row: u64,
        input: &RecordBatch,
        output: &RecordBatch,
        rejected: &[RejectedRow],
        scores: &[RowScore],
    ) -> Result<(), PipelineError> {
        let mask = self.keep_mask(scores);
        let keep = BooleanArray::from(mask.clone());
        let kept = arrow::compute::filter_record_batch(output, &keep)
            .map_err(|e| PipelineError::Stage(e.to_string()))?;
        self.kept.write(&self.out.join("kept"), &kept)?;
        if self.write_skipped {
            let skip =
                arrow::compute::not(&keep).map_err(|e| PipelineError::Stage(e.to_string()))?;
            let skipped = arrow::compute::filter_record_batch(output, &skip)
                .map_err(|e| PipelineError::Stage(e.to_string()))?;
            self.skipped.write(&self.out.join("skipped"), &skipped)?;
        }
        if !rejected.is_empty() {
            let mut sink = crate::sink::RejectSink::new(&self.out);
            let batch = sink.batch(path, input, rejected)?;
            self.rejects.write(&self.out.join("rejects"), &batch)?;
        }
        let st = &mut self.stats;
        st.rows_in += input.num_rows() as u64;
        st.rows_scored += scores.len() as u64;
        st.rows_rejected += rejected.len() as u64;
        st.rows_kept += mask.iter().filter(|&&k| k).count() as u64;
        st.tokens += scores.iter().map(|s| s.tokens as u64).sum::<u64>();
        st.histogram.resize(UNCERTAINTY_BINS.len() + 1, 0);
        for s in scores {
            let bin = UNCERTAINTY_BINS
                .iter()
                .position(|&edge| s.decision.uncertainty < edge)
                .unwrap_or(UNCERTAINTY_BINS.len());
            st.histogram[bin] += 1;
        }
        if let Some(col) = self
            .group_by
            .as_ref()
            .and_then(|c| output.column_by_name(c))
        {
            let text = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8)
                .map_err(|e| PipelineError::Stage(e.to_string()))?;
            let text = text
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("cast to Utf8");
            for (i, k) in mask.iter().enumerate() {
                let key = if text.is_null(i) {
                    "<null>".to_string()
                } else {
                    text.value(i).to_string()
                };
                let e = st.groups.entry(key).or_default();
                e.0 += 1;
                e.1 += u64::from(*k);
            }
        }
        Ok(())
    }

    fn unreadable(
        &mut self,
        path: &Path,
        first_row: Option<u64>,
        rows: u64,
        reason: &str,
    ) -> Result<(), PipelineError> {
        self.stats.rows_in += rows;
        self.stats.rows_rejected += rows;
        let line = serde_json::json!({"file": path.display().to_string(), "first_row": first_row, "rows": rows, "reason": reason});
        let dir = self.out.join("rejects");
        if first_row.is_none() {
            // the whole file is unreadable: it is its own unit
            write_atomic(
                &dir.join(format!("{}.unreadable.json", unit_id(path, None))),
                line.to_string().as_bytes(),
            )?;
            self.commit(unit_id(path, None), path, None)?;
        } else {
            let unit_hint = format!("{}-{}", unit_id(path, None), first_row.unwrap_or(0));
            write_atomic(
                &dir.join(format!("{unit_hint}.unreadable.json")),
                line.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    fn group_end(&mut self, path: &Path, group: usize) -> Result<(), PipelineError> {
        self.commit(unit_id(path, Some(group)), path, Some(group))
    }

    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError> {
        Ok(vec![])
    }
}

/// Reads every commit record in an output folder.
pub fn committed_units(out: &Path) -> Result<Vec<UnitStats>, PipelineError> {
    let dir = out.join("units");
    let mut units = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(units);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| PipelineError::Stage(format!("{}: {e}", p.display())))?;
        units.push(
            serde_json::from_str(&text)
                .map_err(|e| PipelineError::Stage(format!("{}: {e}", p.display())))?,
        );
    }
    Ok(units)
}

/// Plans the units this shard still has to do.
fn plan_units(job: &FilterJob) -> Result<(Vec<PlannedFile>, u64), PipelineError> {
    let files = discover_inputs(&job.score.inputs, "parquet")?;
    let mut planned = plan(&files, &job.score.columns)?;
    let done: std::collections::HashSet<String> = committed_units(&job.score.output)?
        .into_iter()
        .map(|u| u.unit)
        .collect();
    let mut todo_units = 0;
    planned.retain_mut(|f| {
        if f.columns.is_err() {
            let keep = !done.contains(&unit_id(&f.path, None)) && in_shard(&f.path, 0, job.shard);
            todo_units += u64::from(keep);
            return keep;
        }
        let groups: Vec<usize> = (0..f.row_groups)
            .filter(|&g| {
                in_shard(&f.path, g, job.shard) && !done.contains(&unit_id(&f.path, Some(g)))
            })
            .collect();
        todo_units += groups.len() as u64;
        let any = !groups.is_empty();
        f.groups = Some(groups);
        any
    });
    Ok((planned, todo_units))
}

pub fn run_filter(job: &FilterJob) -> Result<FilterSummary, PipelineError> {
    let out = &job.score.output;
    std::fs::create_dir_all(out)
        .map_err(|e| PipelineError::Stage(format!("{}: {e}", out.display())))?;
    // leftovers of a killed run are never committed; remove them
    for sub in ["kept", "skipped", "rejects", "units"] {
        if let Ok(entries) = std::fs::read_dir(out.join(sub)) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp")
                    || e.file_name().to_string_lossy().contains(".tmp-")
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let started = std::time::Instant::now();
    let (planned, todo) = plan_units(job)?;
    let sink = FilterSink {
        out: out.clone(),
        keep: job.keep,
        write_skipped: job.write_skipped,
        group_by: job.group_by.clone(),
        kept: UnitOutput::default(),
        skipped: UnitOutput::default(),
        rejects: UnitOutput::default(),
        stats: UnitStats::default(),
        committed: 0,
    };
    let run = if planned.is_empty() {
        None
    } else {
        Some(run_scoring(
            &job.score,
            planned,
            ScoreHooks::default(),
            Box::new(sink),
        )?)
    };
    let mut summary = summarise(&committed_units(out)?);
    summary.units_this_run = todo;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(r) = &run {
        summary.model_version = r.model_version.clone();
        summary.rows_per_second = r.rows_in as f64 / summary.seconds.max(1e-9);
        summary.tokens_per_second = r.tokens as f64 / summary.seconds.max(1e-9);
    }
    summary.peak_rss_mb = peak_rss_mb();
    let name = if job.shard.1 > 1 {
        format!("summary-shard-{}-of-{}.json", job.shard.0, job.shard.1)
    } else {
        "summary.json".into()
    };
    write_atomic(
        &out.join(name),
        &serde_json::to_vec_pretty(&summary).expect("summary serialises"),
    )?;
    Ok(summary)
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

/// Checks that shard outputs together cover every unit of the inputs exactly once, with every
/// row accounted for. Returns the problems found (empty = complete).
pub fn verify(
    inputs: &[String],
    columns: &crate::source::ColumnMapping,
    outputs: &[PathBuf],
) -> Result<(FilterSummary, Vec<String>), PipelineError> {
    let files = discover_inputs(inputs, "parquet")?;
    let planned = plan(&files, columns)?;
    let mut seen: BTreeMap<String, Vec<(PathBuf, UnitStats)>> = BTreeMap::new();
    let mut all = Vec::new();
    for out in outputs {
        for u in committed_units(out)? {
            seen.entry(u.unit.clone())
                .or_default()
                .push((out.clone(), u.clone()));
            all.push(u);
        }
    }
    let mut problems = Vec::new();
    for f in &planned {
        let expected: Vec<(String, u64)> = if f.columns.is_err() {
            vec![(unit_id(&f.path, None), 0)]
        } else {
            (0..f.row_groups)
                .map(|g| (unit_id(&f.path, Some(g)), f.group_rows[g]))
                .collect()
        };
        for (unit, rows) in expected {
            match seen.remove(&unit) {
                None => problems.push(format!("missing: {} ({unit})", f.path.display())),
                Some(v) if v.len() > 1 => problems.push(format!(
                    "{unit} committed {} times: {:?}",
                    v.len(),
                    v.iter()
                        .map(|x| x.0.display().to_string())
                        .collect::<Vec<_>>()
                )),
                Some(v) if v[0].1.rows_in != rows => problems.push(format!(
                    "{unit}: {} rows accounted for, the file has {rows}",
                    v[0].1.rows_in
                )),
                Some(_) => {}
            }
        }
    }
    for unit in seen.keys() {
        problems.push(format!("{unit} is not a unit of these inputs"));
    }
    Ok((summarise(&all), problems))
}
