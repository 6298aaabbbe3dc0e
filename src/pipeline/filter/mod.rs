//! `actprm filter`: score a large corpus, keep the uncertain trajectories, and survive anything.
//!
//! The unit of work is one row group of one input file (`unit.rs` names it). Each unit's output
//! (kept rows, optionally skipped rows, rejected rows) is written under temporary names, fsynced
//! and renamed into place, and only then is the unit's commit record `units/<unit>.json` written
//! (atomically, durably), listing every file with its row count. A rerun after a crash (even
//! `kill -9` or a power loss) checks every committed unit's files, skips the good ones and redoes
//! the rest: no row is lost or duplicated. `run.json` records the settings the outputs depend on
//! (model, rule, thresholds, columns); a rerun with other settings is refused (or `--restart`).
//! `--shard i/n` assigns units by a stable hash, so n machines split one job without talking to
//! each other (even into one shared folder: temporary files carry the shard, and a lock keeps two
//! processes of one shard apart); `filter-verify` checks that a set of shard outputs covers every
//! unit exactly once with every file present.

pub mod unit;

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
use crate::model::LoadedModel;
use crate::score::RowScore;
use crate::sink::atomic::{self, write_atomic_tagged};
use crate::sink::rejects::RejectedRow;
use crate::source::discover::discover_named;
use crate::source::parquet::{plan, PlannedFile};
pub use unit::{stable_hash, UnitSource};

/// Upper edges of the uncertainty histogram bins (the last bin is open).
pub const UNCERTAINTY_BINS: [f32; 8] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0];

pub use crate::select::Keep;

/// `--shard i/n`: this process handles the units whose stable hash is i modulo n (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("is `{s}`; expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl schemars::JsonSchema for Shard {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Shard".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+/[0-9]+$",
            "description": "i/n with 0 <= i < n"
        })
    }
}

/// What `filter` keeps and how it splits and resumes: its flags, and the keys of a pipeline
/// file's filter stage.
#[derive(
    Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct FilterSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub keep: crate::select::KeepRate,
    /// This process's share of the units, as i/n (0-based).
    #[arg(long, default_value_t = Shard::default())]
    pub shard: Shard,
    /// Also write the rows that were not kept.
    #[arg(long)]
    pub write_skipped: bool,
    /// Report keep rates per value of this column.
    #[arg(long)]
    pub group_by: Option<String>,
    /// Discard an earlier run's outputs in the output folder instead of resuming it (a rerun
    /// with other settings is refused without this).
    #[arg(long)]
    pub restart: bool,
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
    /// Throw away an earlier run's outputs in this folder instead of resuming it.
    pub restart: bool,
}

impl FilterJob {
    pub fn new(score: ScoreJob, settings: &FilterSettings) -> Self {
        Self {
            score,
            keep: settings.keep.keep(),
            shard: (settings.shard.index, settings.shard.count),
            write_skipped: settings.write_skipped,
            group_by: settings.group_by.clone(),
            restart: settings.restart,
        }
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        self.score.validate()?;
        if let Keep::Rate(rate) = self.keep {
            crate::limits::fraction("keep_rate", rate, false)?;
        }
        let (i, n) = self.shard;
        if n == 0 || i >= n {
            return Err(crate::limits::refuse("shard", format!("{i}/{n} needs 0 <= i < n")).into());
        }
        Ok(())
    }
}

/// What a filter run's outputs depend on: stored as `run.json` when a run starts and compared on
/// every resume, so a rerun with another model, rule or column mapping never mixes its rows
/// with the earlier ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub format: u32,
    pub model_version: String,
    pub backbone: String,
    pub keep: Keep,
    pub tau: f32,
    pub delta_pred: f32,
    pub delta_std: f32,
    /// Keep rates apply per batch, so the batch size changes which rows are kept.
    pub batch_rows: usize,
    pub problem_column: Option<String>,
    pub steps_column: Option<String>,
    pub write_skipped: bool,
    pub head_probs: bool,
    pub group_by: Option<String>,
}

const RUN_FORMAT: u32 = 2;

impl RunSettings {
    pub fn of(job: &FilterJob) -> Result<Self, PipelineError> {
        let model = LoadedModel::open(job.score.model.as_deref())?;
        Ok(Self {
            format: RUN_FORMAT,
            model_version: model.version(),
            backbone: model
                .manifest
                .backbone_sha256
                .clone()
                .unwrap_or_else(|| model.manifest.backbone.clone()),
            keep: job.keep,
            tau: job.score.score.tau.unwrap_or(model.manifest.tau),
            delta_pred: job.score.score.rule.delta_pred,
            delta_std: job.score.score.rule.delta_std,
            batch_rows: job.score.batch_rows,
            problem_column: job.score.columns.problem.clone(),
            steps_column: job.score.columns.steps.clone(),
            write_skipped: job.write_skipped,
            head_probs: job.score.with_head_probs,
            group_by: job.group_by.clone(),
        })
    }

    /// The settings that differ from the `earlier` run.json text, as `name: earlier -> now`.
    /// Both sides go through the same types, so an f32 reads back equal to itself.
    fn differences(&self, earlier: &str) -> Vec<String> {
        let as_value = |s: &RunSettings| serde_json::to_value(s).expect("settings serialise");
        let earlier = match serde_json::from_str::<RunSettings>(earlier) {
            Ok(e) => as_value(&e),
            Err(_) => serde_json::from_str(earlier).unwrap_or(serde_json::Value::Null),
        };
        let now = as_value(self);
        let now = now.as_object().expect("an object");
        now.iter()
            .filter(|(k, v)| earlier.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                let before = earlier
                    .get(k.as_str())
                    .map_or("(absent)".to_string(), |b| b.to_string());
                format!("{k}: {before} -> {v}")
            })
            .collect()
    }
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
    /// Every file the unit wrote (relative to the output folder) and its row count: what resume
    /// and `filter-verify` check.
    #[serde(default)]
    pub outputs: BTreeMap<String, u64>,
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
        let _ = writeln!(
            out,
            "throughput     {:>10.1} rows/s, {:.0} tokens/s (this run, {:.1} s)",
            s.rows_per_second, s.tokens_per_second, s.seconds
        );
        let _ = writeln!(out, "model          {}", s.model_version);
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

/// One output stream of the unit in progress (kept, skipped or rejects), written under a
/// temporary name that carries this run's shard.
struct UnitOutput {
    dir: PathBuf,
    tag: String,
    open: Option<(ArrowWriter<File>, PathBuf)>,
    rows: u64,
}

impl UnitOutput {
    fn new(dir: PathBuf, tag: &str) -> Self {
        Self {
            dir,
            tag: tag.to_string(),
            open: None,
            rows: 0,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), PipelineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(PipelineError::io(&self.dir))?;
            let tmp = atomic::temp_path(&self.dir.join("unit.parquet"), &self.tag);
            let file = File::create(&tmp).map_err(PipelineError::io(&tmp))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(PipelineError::from)?;
            self.open = Some((writer, tmp));
        }
        let (writer, _) = self.open.as_mut().expect("opened above");
        writer.write(batch).map_err(PipelineError::from)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes, fsyncs and renames to `final_path`; returns its rows (`None`: the unit wrote no
    /// row here, and a stale file of a crashed run is removed).
    fn commit(&mut self, final_path: &Path) -> Result<Option<u64>, PipelineError> {
        let rows = std::mem::take(&mut self.rows);
        match self.open.take() {
            Some((writer, tmp)) => {
                writer.close().map_err(PipelineError::from)?;
                atomic::commit(&tmp, final_path)?;
                Ok(Some(rows))
            }
            None => {
                if std::fs::remove_file(final_path).is_ok() {
                    atomic::sync_parent(final_path)?;
                }
                Ok(None)
            }
        }
    }
}

struct FilterSink {
    out: PathBuf,
    keep: Keep,
    write_skipped: bool,
    group_by: Option<String>,
    /// Temporary-name tag of this shard.
    tag: String,
    /// The unit naming of every planned input file.
    sources: std::collections::HashMap<PathBuf, UnitSource>,
    kept: UnitOutput,
    skipped: UnitOutput,
    rejects: UnitOutput,
    stats: UnitStats,
    committed: u64,
}

impl FilterSink {
    fn source(&self, path: &Path) -> Result<&UnitSource, PipelineError> {
        self.sources.get(path).ok_or_else(|| {
            PipelineError::Stage(format!("{} was not planned as a unit", path.display()))
        })
    }

    fn commit(
        &mut self,
        unit: String,
        file: &Path,
        group: Option<usize>,
    ) -> Result<(), PipelineError> {
        let mut outputs = BTreeMap::new();
        let files = unit::unit_files(&unit);
        let mut streams = vec![("kept", &mut self.kept), ("rejects", &mut self.rejects)];
        if self.write_skipped {
            streams.push(("skipped", &mut self.skipped));
        }
        for (dir, stream) in streams {
            let name = &files[dir];
            if let Some(rows) = stream.commit(&self.out.join(name))? {
                outputs.insert(name.clone(), rows);
            }
        }
        let mut stats = std::mem::take(&mut self.stats);
        stats.unit = unit.clone();
        stats.file = file.display().to_string();
        stats.row_group = group;
        stats.histogram.resize(UNCERTAINTY_BINS.len() + 1, 0);
        stats.outputs = outputs;
        crate::failpoint::hit("filter-commit");
        write_atomic_tagged(
            &self.out.join("units").join(format!("{unit}.json")),
            &serde_json::to_vec(&stats).expect("stats serialise"),
            &self.tag,
        )?;
        self.committed += 1;
        Ok(())
    }

    fn keep_mask(&self, scores: &[RowScore]) -> Vec<bool> {
        match self.keep {
            Keep::Rule => scores.iter().map(|s| s.decision.selected).collect(),
            Keep::Rate(rate) => {
                let uncertainty: Vec<f32> = scores.iter().map(|s| s.decision.uncertainty).collect();
                crate::select::most_uncertain(&uncertainty, rate)
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
        let kept =
            arrow::compute::filter_record_batch(output, &keep).map_err(PipelineError::from)?;
        self.kept.write(&kept)?;
        if self.write_skipped {
            let skip = arrow::compute::not(&keep).map_err(PipelineError::from)?;
            let skipped =
                arrow::compute::filter_record_batch(output, &skip).map_err(PipelineError::from)?;
            self.skipped.write(&skipped)?;
        }
        if !rejected.is_empty() {
            let mut sink = crate::sink::RejectSink::new(&self.out);
            let batch = sink.batch(path, input, rejected)?;
            self.rejects.write(&batch)?;
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
                .map_err(PipelineError::from)?;
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
        let line = crate::sink::rejects::unreadable_record(path, first_row, rows, reason);
        let dir = self.out.join("rejects");
        let whole_file = self.source(path)?.unit_id(None);
        if first_row.is_none() {
            // the whole file is unreadable: it is its own unit
            write_atomic_tagged(
                &dir.join(format!("{whole_file}.unreadable.json")),
                line.to_string().as_bytes(),
                &self.tag,
            )?;
            self.commit(whole_file, path, None)?;
        } else {
            let unit_hint = format!("{whole_file}-{}", first_row.unwrap_or(0));
            write_atomic_tagged(
                &dir.join(format!("{unit_hint}.unreadable.json")),
                line.to_string().as_bytes(),
                &self.tag,
            )?;
        }
        Ok(())
    }

    fn group_end(&mut self, path: &Path, group: usize) -> Result<(), PipelineError> {
        let unit = self.source(path)?.unit_id(Some(group));
        self.commit(unit, path, Some(group))
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
        let text = std::fs::read_to_string(&p).map_err(PipelineError::io(&p))?;
        units.push(serde_json::from_str(&text).map_err(PipelineError::json(&p))?);
    }
    Ok(units)
}

/// The planned input files with their unit naming.
fn plan_sources(
    inputs: &[String],
    columns: &crate::source::ColumnMapping,
) -> Result<(Vec<PlannedFile>, Vec<UnitSource>), PipelineError> {
    let files = discover_named(inputs, "parquet")?;
    let sources: Vec<UnitSource> = files.iter().map(UnitSource::new).collect();
    let paths: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
    Ok((plan(&paths, columns)?, sources))
}

/// Plans the units this shard still has to do: every unit of the shard without a commit record
/// whose files check out. A record whose files are missing or short is removed (with a warning)
/// and its unit redone.
type Planned = (Vec<PlannedFile>, Vec<UnitSource>, u64);

fn plan_units(job: &FilterJob) -> Result<Planned, PipelineError> {
    let out = &job.score.output;
    let (planned, sources) = plan_sources(&job.score.inputs, &job.score.columns)?;
    let mut done = std::collections::HashSet::new();
    for u in committed_units(out)? {
        match unit::check_committed(out, &u) {
            Ok(()) => {
                done.insert(u.unit);
            }
            Err(problem) => {
                eprintln!("actprm: {problem}: redoing the unit");
                let record = out.join("units").join(format!("{}.json", u.unit));
                std::fs::remove_file(&record).map_err(PipelineError::io(&record))?;
                atomic::sync_parent(&record)?;
            }
        }
    }
    let mut todo_units = 0;
    let mut kept = (Vec::new(), Vec::new());
    for (mut f, source) in planned.into_iter().zip(sources) {
        if f.columns.is_err() {
            let todo = !done.contains(&source.unit_id(None)) && source.in_shard(0, job.shard);
            todo_units += u64::from(todo);
            if todo {
                kept.0.push(f);
                kept.1.push(source);
            }
            continue;
        }
        let groups: Vec<usize> = (0..f.row_groups)
            .filter(|&g| source.in_shard(g, job.shard) && !done.contains(&source.unit_id(Some(g))))
            .collect();
        todo_units += groups.len() as u64;
        if !groups.is_empty() {
            f.groups = Some(groups);
            kept.0.push(f);
            kept.1.push(source);
        }
    }
    Ok((kept.0, kept.1, todo_units))
}

/// Checks `run.json` against this run's settings (or writes it for a new run); `--restart`
/// clears an earlier run's outputs first.
fn start_run(job: &FilterJob, settings: &RunSettings) -> Result<(), PipelineError> {
    let out = &job.score.output;
    let record = out.join("run.json");
    if job.restart {
        for sub in ["kept", "skipped", "rejects", "units"] {
            let dir = out.join(sub);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(PipelineError::io(&dir))?;
            }
        }
        let _ = std::fs::remove_file(&record);
        atomic::sync_dir(out)?;
    }
    match std::fs::read_to_string(&record) {
        Ok(text) => {
            let differences = settings.differences(&text);
            if !differences.is_empty() {
                return Err(PipelineError::Stage(format!(
                    "{} holds a filter run with other settings ({}); resuming would mix their \
                     outputs. Rerun with the same settings, choose another output folder, or pass \
                     --restart to discard the earlier outputs",
                    out.display(),
                    differences.join("; ")
                )));
            }
            Ok(())
        }
        Err(_) if !committed_units(out)?.is_empty() => Err(PipelineError::Stage(format!(
            "{} holds committed units but no run.json (an older actprm or a damaged folder): \
             their settings cannot be checked. Pass --restart to discard them",
            out.display()
        ))),
        Err(_) => Ok(write_atomic_tagged(
            &record,
            &serde_json::to_vec_pretty(settings).expect("settings serialise"),
            &shard_tag(job.shard),
        )?),
    }
}

/// The tag of this shard's temporary files.
fn shard_tag((i, n): (u64, u64)) -> String {
    format!("shard-{i}-of-{n}")
}

/// Holds `OUT/.lock-shard-i-of-n` for the run, so two processes never work on one shard.
fn lock_shard(out: &Path, shard: (u64, u64)) -> Result<File, PipelineError> {
    let path = out.join(format!(".lock-{}", shard_tag(shard)));
    let file = File::create(&path).map_err(PipelineError::io(&path))?;
    file.try_lock().map_err(|_| {
        PipelineError::Stage(format!(
            "{}: another actprm filter is running shard {}/{} in this folder",
            out.display(),
            shard.0,
            shard.1
        ))
    })?;
    Ok(file)
}

pub fn run_filter(job: &FilterJob) -> Result<FilterSummary, PipelineError> {
    job.validate()?;
    let out = &job.score.output;
    std::fs::create_dir_all(out).map_err(PipelineError::io(out))?;
    let _lock = lock_shard(out, job.shard)?;
    let tag = shard_tag(job.shard);
    // a killed run of this shard leaves temporary files; other shards' are theirs to clean
    for sub in ["", "kept", "skipped", "rejects", "units"] {
        atomic::remove_temps(&out.join(sub), |t| t == tag);
    }
    let settings = RunSettings::of(job)?;
    start_run(job, &settings)?;
    let started = std::time::Instant::now();
    let (planned, sources, todo) = plan_units(job)?;
    let sink = FilterSink {
        out: out.clone(),
        keep: job.keep,
        write_skipped: job.write_skipped,
        group_by: job.group_by.clone(),
        kept: UnitOutput::new(out.join("kept"), &tag),
        skipped: UnitOutput::new(out.join("skipped"), &tag),
        rejects: UnitOutput::new(out.join("rejects"), &tag),
        tag: tag.clone(),
        sources: sources.into_iter().map(|s| (s.path.clone(), s)).collect(),
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
    write_atomic_tagged(
        &out.join(name),
        &serde_json::to_vec_pretty(&summary).expect("summary serialises"),
        &tag,
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
    let (planned, sources) = plan_sources(inputs, columns)?;
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
    for (f, source) in planned.iter().zip(&sources) {
        let expected: Vec<(String, u64)> = if f.columns.is_err() {
            vec![(source.unit_id(None), 0)]
        } else {
            (0..f.row_groups)
                .map(|g| (source.unit_id(Some(g)), f.group_rows[g]))
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
                Some(v) => {
                    let (out, stats) = &v[0];
                    if let Err(problem) = unit::check_committed(out, stats) {
                        problems.push(problem);
                    }
                }
            }
        }
    }
    for unit in seen.keys() {
        problems.push(format!("{unit} is not a unit of these inputs"));
    }
    Ok((summarise(&all), problems))
}

impl crate::report::Report for FilterSummary {
    fn table(&self) -> String {
        FilterSummary::table(self)
    }
}
