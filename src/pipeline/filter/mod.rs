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
//! unit exactly once with every file present. `--ray` runs the units as Ray tasks (`ray/`), each
//! a `--ray-unit` run of this same code.

mod quality;
pub mod ray;
mod settings;
mod summary;
pub mod unit;
mod verify;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{BooleanArray, RecordBatch};

use super::score::{run_scoring, ScoreHooks, ScoredSink, SinkBatch};
use super::PipelineError;
use crate::formats::features::FeatureRow;
use crate::label::format::{with_trl_columns, TrlRow};
use crate::label::LabelFormat;
use crate::rng::NormalRng;
use crate::score::RowScore;
use crate::select::{Candidates, Decision, RateQuota, Strategy};
use crate::sink::atomic::{self, write_atomic_tagged};
use crate::sink::commit::{self, Promised, Recorded};
use crate::sink::dataset_card::{write_card_or_say, CardConfig};
use crate::sink::output_folder::{self, Entry, Layout};
use crate::sink::{DataFile, DataFormat};
use crate::source::discover::discover_named;
use crate::source::flow::Unreadable;
use crate::source::parquet::{plan, PlannedFile};
pub use unit::{stable_hash, Committed, UnitSource};

pub use settings::{FilterJob, FilterSettings, Keep, RunSettings, Shard, UnitRef};
pub use summary::{peak_rss_mb, summarise, FilterSummary, RaySummary, UnitStats, UNCERTAINTY_BINS};
pub use verify::verify;

/// One output stream of the unit in progress (kept, skipped or rejects), written under a
/// temporary name that carries this run's shard.
struct UnitOutput {
    /// The temporary file's path (the Hub's layout puts kept and skipped in one folder).
    tmp: PathBuf,
    format: DataFormat,
    open: Option<DataFile>,
}

impl UnitOutput {
    /// The unit's `stream` under `out`: its temporary file is made where its files go.
    fn new(format: DataFormat, stream: &str, out: &Path, tag: &str) -> Self {
        let tmp = atomic::temp_path(&out.join(format.unit_file(stream, "unit")), tag);
        Self {
            tmp,
            format,
            open: None,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), PipelineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let file = match &mut self.open {
            Some(file) => file,
            None => self.open.insert(DataFile::create(
                self.format,
                self.tmp.clone(),
                batch.schema(),
            )?),
        };
        Ok(file.write(batch)?)
    }

    /// Completes and renames to `final_path`; returns its rows (`None`: the unit wrote no
    /// row here, and a stale file of a crashed run is removed).
    fn commit(&mut self, final_path: &Path) -> Result<Option<u64>, PipelineError> {
        match self.open.take() {
            Some(file) => Ok(Some(file.commit(final_path)?)),
            None => {
                if std::fs::remove_file(final_path).is_ok() {
                    atomic::sync_parent(final_path)?;
                }
                Ok(None)
            }
        }
    }
}

/// One data sink's streams of the unit in progress: kept (and skipped) rows in its folder and
/// format. The run's own folder is the first; a pipeline file's further sinks (`jsonl`,
/// `hf_dataset`, ...) get the same rows, committed with each unit before the unit's record, which
/// lists their files by absolute path. Rejects, run and unit records are the first folder's.
struct UnitData {
    folder: PathBuf,
    format: DataFormat,
    kept: UnitOutput,
    skipped: UnitOutput,
}

impl UnitData {
    fn new(output: &crate::sink::DataOutput, tag: &str) -> Self {
        Self {
            folder: output.folder.clone(),
            format: output.format,
            kept: UnitOutput::new(output.format, "kept", &output.folder, tag),
            skipped: UnitOutput::new(output.format, "skipped", &output.folder, tag),
        }
    }
}

struct FilterSink {
    out: PathBuf,
    /// The uncertainty rule's choice: ActPRM's rule, or a keep rate and its picks (Algorithm 1's
    /// choice, the active loop's code).
    strategy: Strategy,
    /// `trl`: kept rows get TRL's columns, labelled by the predicted first error.
    label_format: LabelFormat,
    write_skipped: bool,
    group_by: Option<String>,
    /// Temporary-name tag of this shard.
    tag: String,
    /// The unit naming of every planned input file.
    sources: std::collections::HashMap<PathBuf, UnitSource>,
    /// Every data sink's kept (and skipped) rows, the run's own folder first.
    data: Vec<UnitData>,
    rejects: UnitOutput,
    stats: UnitStats,
    /// The keep rate spent over the current unit (a redone unit starts it afresh).
    quota: RateQuota,
    /// `--reward`, `--where`, `--top-k`: the good rows kept instead of the uncertain ones.
    picker: Option<quality::Picker>,
    /// A pipeline's `sql` transform after the filter: maps the kept (and skipped) rows on their
    /// way to the sinks.
    query: Option<crate::sql::row_query::RowQuery>,
    committed: u64,
}

impl FilterSink {
    fn source(&self, path: &Path) -> Result<&UnitSource, PipelineError> {
        self.sources
            .get(path)
            .ok_or_else(|| PipelineError::NotPlanned(path.to_path_buf()))
    }

    fn commit(
        &mut self,
        unit: String,
        file: &Path,
        group: Option<usize>,
    ) -> Result<(), PipelineError> {
        let mut outputs = Promised::default();
        // further sinks first, the run's own folder last, then the record that lists them all
        for (i, data) in self.data.iter_mut().enumerate().rev() {
            let mut streams = vec![("kept", &mut data.kept)];
            if self.write_skipped {
                streams.push(("skipped", &mut data.skipped));
            }
            for (stream, output) in streams {
                let name = data.format.unit_file(stream, &unit);
                let path = data.folder.join(&name);
                if let Some(rows) = output.commit(&path)? {
                    // the run's own files by their name in its folder, the others' by path
                    outputs.add(
                        if i == 0 {
                            name
                        } else {
                            path.display().to_string()
                        },
                        rows,
                    );
                }
            }
        }
        let name = DataFormat::Parquet.unit_file("rejects", &unit);
        if let Some(rows) = self.rejects.commit(&self.out.join(&name))? {
            outputs.add(name, rows);
        }
        self.quota = RateQuota::default();
        let mut stats = std::mem::take(&mut self.stats);
        stats.unit = unit.clone();
        stats.file = file.display().to_string();
        stats.row_group = group;
        stats.histogram.resize(UNCERTAINTY_BINS.len() + 1, 0);
        stats.outputs = outputs;
        crate::failpoint::hit("filter-commit");
        write_atomic_tagged(
            &record_path(&self.out, &unit),
            &serde_json::to_vec(&stats).expect("stats serialise"),
            &self.tag,
        )?;
        self.committed += 1;
        Ok(())
    }

    /// Writes decided rows to kept (and skipped), and counts them.
    fn write_decided(&mut self, output: &RecordBatch, mask: &[bool]) -> Result<(), PipelineError> {
        let keep = BooleanArray::from(mask.to_vec());
        let mapped = |rows: RecordBatch| match &self.query {
            Some(query) => query.apply(&rows).map_err(PipelineError::from),
            None => Ok(rows),
        };
        let kept = mapped(
            arrow::compute::filter_record_batch(output, &keep).map_err(PipelineError::from)?,
        )?;
        let skipped = if self.write_skipped {
            let skip = arrow::compute::not(&keep).map_err(PipelineError::from)?;
            Some(mapped(
                arrow::compute::filter_record_batch(output, &skip).map_err(PipelineError::from)?,
            )?)
        } else {
            None
        };
        for data in &mut self.data {
            data.kept.write(&kept)?;
            if let Some(skipped) = &skipped {
                data.skipped.write(skipped)?;
            }
        }
        let st = &mut self.stats;
        st.rows_kept += mask.iter().filter(|&&k| k).count() as u64;
        if let Some(col) = self
            .group_by
            .as_ref()
            .and_then(|c| output.column_by_name(c))
        {
            let keys = quality::as_keys(col.as_ref()).map_err(PipelineError::from)?;
            for (key, k) in keys.into_iter().zip(mask) {
                let e = st.groups.entry(key).or_default();
                e.0 += 1;
                e.1 += u64::from(*k);
            }
        }
        Ok(())
    }
}

/// Seeds the diverse picks of each batch, with the rows the unit offered before it: a redone
/// unit picks as it did.
pub const PICKS_SEED: u64 = 0xF117_E4ED;

impl FilterSink {
    /// The uncertainty rule's choice of a batch's rows (a keep rate spends the unit's quota).
    fn keep_mask(&mut self, scores: &[RowScore], features: &[FeatureRow]) -> Vec<bool> {
        let decisions: Vec<Decision> = scores.iter().map(|s| s.decision).collect();
        let embeddings = self
            .strategy
            .embeddings(features.iter().map(|f| (f.features.as_slice(), f.steps)));
        let mut rng = NormalRng::new(PICKS_SEED ^ self.quota.offered);
        let candidates = Candidates {
            decisions: &decisions,
            embeddings: &embeddings,
            warm_start: false,
            quota: self.strategy.quota(&mut self.quota, scores.len()),
        };
        self.strategy.choose_mask(&candidates, &mut rng)
    }
}

impl ScoredSink for FilterSink {
    fn scored(&mut self, batch: &SinkBatch<'_>) -> Result<(), PipelineError> {
        let SinkBatch {
            path,
            input,
            output,
            rejected,
            scores,
            trajectories,
            features,
        } = *batch;
        let with_trl;
        let output = if self.label_format == LabelFormat::Trl {
            let rows: Vec<Option<TrlRow<'_>>> = trajectories
                .iter()
                .zip(scores)
                .map(|(t, s)| {
                    Some(TrlRow {
                        problem: &t.problem,
                        steps: &t.steps,
                        label: Some(s.first_error),
                    })
                })
                .collect();
            with_trl = with_trl_columns(output, &rows)?;
            &with_trl
        } else {
            output
        };
        let decided = match self.picker.as_mut() {
            Some(picker) if picker.selects() => {
                let rows = picker.with_reward(output)?;
                picker.decide(path, rows)?
            }
            Some(picker) => vec![(
                picker.with_reward(output)?,
                self.keep_mask(scores, features),
            )],
            None => vec![(output.clone(), self.keep_mask(scores, features))],
        };
        for (rows, mask) in decided {
            self.write_decided(&rows, &mask)?;
        }
        if !rejected.is_empty() {
            let batch = crate::sink::rejects::rejected_rows(path, input, rejected)?;
            self.rejects.write(&batch)?;
        }
        let st = &mut self.stats;
        st.rows_in += input.num_rows() as u64;
        st.rows_scored += scores.len() as u64;
        st.rows_rejected += rejected.len() as u64;
        st.tokens += scores.iter().map(|s| s.tokens as u64).sum::<u64>();
        *st.tokens_computed.get_or_insert(0) +=
            scores.iter().map(|s| s.tokens_computed as u64).sum::<u64>();
        st.histogram.resize(UNCERTAINTY_BINS.len() + 1, 0);
        for s in scores {
            let bin = UNCERTAINTY_BINS
                .iter()
                .position(|&edge| s.decision.uncertainty < edge)
                .unwrap_or(UNCERTAINTY_BINS.len());
            st.histogram[bin] += 1;
        }
        Ok(())
    }

    fn unreadable(&mut self, unreadable: &Unreadable) -> Result<(), PipelineError> {
        let Unreadable {
            path,
            first_row,
            rows,
            ..
        } = unreadable;
        self.stats.rows_in += rows;
        self.stats.rows_rejected += rows;
        let line = unreadable.record();
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
        // a best-of-n group ends with its unit
        let open = self
            .picker
            .as_mut()
            .map(|p| p.unit_end(path))
            .unwrap_or_default();
        for (rows, mask) in open {
            self.write_decided(&rows, &mask)?;
        }
        let unit = self.source(path)?.unit_id(Some(group));
        self.commit(unit, path, Some(group))
    }

    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError> {
        Ok(vec![])
    }
}

/// Where a unit's commit record lives.
fn record_path(out: &Path, unit: &str) -> PathBuf {
    out.join("units").join(format!("{unit}.json"))
}

/// A unit's commit record, if it has one.
fn commit_record(out: &Path, unit: &str) -> Result<Option<UnitStats>, PipelineError> {
    let path = record_path(out, unit);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).map_err(PipelineError::json(&path))?,
        )),
        Err(_) => Ok(None),
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
    let files = discover_named(inputs, "parquet", columns.split.as_deref())?;
    let sources: Vec<UnitSource> = files.iter().map(UnitSource::new).collect();
    // unit ids hash name, size and footer: two copies of one file under two roots would
    // commit to the same unit, the second overwriting the first
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for source in &sources {
        if let Some(first) = seen.insert(&source.key, &source.path) {
            return Err(PipelineError::SameUnits {
                first: first.to_path_buf(),
                second: source.path.clone(),
            });
        }
    }
    let paths: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
    let planned = plan(&paths, columns)?;
    crate::source::parquet::refuse_if_none_readable(&planned)?;
    Ok((planned, sources))
}

/// Plans the units this shard still has to do, of the inputs `start_shard` planned: every unit
/// of the shard without a commit record whose files check out. A record whose files are missing
/// or short is removed (with a warning) and its unit redone.
type Planned = (Vec<PlannedFile>, Vec<UnitSource>, u64);

fn plan_units(
    job: &FilterJob,
    planned: Vec<PlannedFile>,
    sources: Vec<UnitSource>,
    committed: &unit::Committed,
) -> Result<Planned, PipelineError> {
    let out = &job.score.output;
    let mut done = std::collections::HashSet::new();
    for u in committed_units(out)? {
        match committed.check(&u) {
            Ok(()) => {
                done.insert(u.unit);
            }
            Err(problem) => {
                job.score.log.line(&format!("{problem}: redoing the unit"));
                let record = record_path(out, &u.unit);
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

/// What a filter run writes in its folder (the output-folder rule of `sink::output_folder`):
/// `--restart` removes exactly this; a new run refuses a folder holding any of it without the
/// `run.json` that says which run wrote it.
const LAYOUT: Layout = Layout {
    kind: "filter run",
    entries: &[
        Entry::File(crate::sink::commit::FINGERPRINT_FILE),
        Entry::File("summary.json"),
        Entry::Folder("units", &[("", ".json")]),
        Entry::Folder("kept", &[("", ".parquet"), ("", ".jsonl"), ("", ".arrow")]),
        Entry::Folder(
            "skipped",
            &[("", ".parquet"), ("", ".jsonl"), ("", ".arrow")],
        ),
        Entry::Folder("data", &[("train-", ".parquet"), ("skipped-", ".parquet")]),
        Entry::Folder("rejects", &[("", ".parquet"), ("", ".jsonl")]),
    ],
};

/// Checks `run.json` against this run's settings (or writes it for a new run); `--restart`
/// clears an earlier run's outputs (only the filter's own files) first.
fn start_run(job: &FilterJob, settings: &RunSettings) -> Result<(), PipelineError> {
    start_run_in(&job.score.output, job, settings)
}

/// [`start_run`] in one folder: the run's own, or a further sink's (which records its format).
fn start_run_in(out: &Path, job: &FilterJob, settings: &RunSettings) -> Result<(), PipelineError> {
    if job.restart {
        LAYOUT.remove_earlier(out)?;
    }
    match commit::recorded(out, settings)? {
        Recorded::Same => Ok(()),
        Recorded::Changed(differences) => Err(PipelineError::SettingsChanged {
            path: out.to_path_buf(),
            run: "a filter run",
            differences: differences.join("; "),
            start_again: "--restart (in a pipeline file, the filter's `restart: true`)",
        }),
        Recorded::Absent if !committed_units(out)?.is_empty() => {
            Err(PipelineError::UnitsWithoutRecord {
                path: out.to_path_buf(),
            })
        }
        Recorded::Absent => {
            if job.units.is_empty() {
                // a Ray task's driver has checked the folder already
                output_folder::prepare(out, &LAYOUT, false)?;
            }
            Ok(commit::record(out, settings, &shard_tag(job.shard))?)
        }
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
    file.try_lock().map_err(|_| PipelineError::ShardBusy {
        path: out.to_path_buf(),
        index: shard.0,
        count: shard.1,
    })?;
    Ok(file)
}

pub fn run_filter(job: &FilterJob) -> Result<FilterSummary, PipelineError> {
    job.validate()?;
    let out = &job.score.output;
    std::fs::create_dir_all(out).map_err(PipelineError::io(out))?;
    if !job.units.is_empty() {
        let done = |id: &str| -> Result<bool, PipelineError> {
            Ok(commit_record(out, id)?.is_some_and(|u| unit::check_committed(out, &u).is_ok()))
        };
        return run_given_units(job, &job.units, &done);
    }
    let (shard, planned, sources) = start_shard(job)?;
    let started = std::time::Instant::now();
    // what the inputs' footers promise (None when a footer cannot be read)
    let promised: Option<u64> = planned
        .iter()
        .map(|f| f.columns.is_ok().then_some(f.rows))
        .sum();
    let (planned, sources, todo) = plan_units(job, planned, sources, &Committed::Folder(out))?;
    let run = score_units(job, planned, sources, &shard.tag)?;
    let mut summary = summarise(&committed_units(out)?);
    if let (Some(promised), (0, 1)) = (promised, job.shard) {
        reconcile(job, summary.rows_in, promised)?;
    }
    summary.units_this_run = todo;
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(r) = &run {
        summary.model_version = r.model_version.clone();
        summary.rows_per_second = r.rows_in as f64 / summary.seconds.max(1e-9);
        summary.tokens_per_second = r.tokens as f64 / summary.seconds.max(1e-9);
    }
    write_summary(job, summary)
}

/// A whole run accounts for every row its inputs' Parquet footers promise (checked when every
/// footer could be read).
fn reconcile(job: &FilterJob, rows_in: u64, promised: u64) -> Result<(), PipelineError> {
    if promised != rows_in {
        return Err(PipelineError::Inconsistent {
            path: job.score.output.clone(),
            detail: format!(
                "the committed units account for {rows_in} rows, the inputs' footers for \
                 {promised}"
            ),
        });
    }
    Ok(())
}

/// A shard's run in its output folder: the lock held while it lives, the tag of its temporary
/// files, and the settings `run.json` was checked against.
struct ShardRun {
    /// This shard's lock in the run's folder and in each further sink's.
    _locks: Vec<File>,
    tag: String,
    settings: RunSettings,
}

/// Locks this shard in the output folder, clears its temporary files, plans the inputs (their
/// footers read once for the whole run) and checks (or records) the run's settings.
fn start_shard(
    job: &FilterJob,
) -> Result<(ShardRun, Vec<PlannedFile>, Vec<UnitSource>), PipelineError> {
    let out = &job.score.output;
    let lock = lock_shard(out, job.shard)?;
    let tag = shard_tag(job.shard);
    // a killed run of this shard leaves temporary files; other shards' are theirs to clean
    clear_temps(out, &tag);
    // inputs no run can read are refused before run.json records them
    let (planned, sources) = plan_sources(&job.score.inputs, &job.score.columns)?;
    let settings = RunSettings::of(job, &sources)?;
    start_run(job, &settings)?;
    let mut locks = vec![lock];
    for more in &job.score.more_outputs {
        std::fs::create_dir_all(&more.folder).map_err(PipelineError::io(&more.folder))?;
        let fresh = !more.folder.join(commit::FINGERPRINT_FILE).exists();
        if fresh && !job.restart && !committed_units(out)?.is_empty() {
            return Err(PipelineError::Inconsistent {
                path: more.folder.clone(),
                detail: "this sink is new to a filter run that has committed units, which it \
                         would miss: restart the run (`restart: true` in the filter stage)"
                    .into(),
            });
        }
        locks.push(lock_shard(&more.folder, job.shard)?);
        clear_temps(&more.folder, &tag);
        let settings = RunSettings {
            data_format: more.format,
            ..settings.clone()
        };
        start_run_in(&more.folder, job, &settings)?;
    }
    let shard = ShardRun {
        _locks: locks,
        tag,
        settings,
    };
    Ok((shard, planned, sources))
}

/// A file a shard writes beside the outputs: `STEM.json`, or `STEM-shard-i-of-n.json` when the
/// job is split, so shards sharing one folder never write the same one.
fn shard_file((i, n): (u64, u64), stem: &str) -> String {
    if n > 1 {
        format!("{stem}-{}.json", shard_tag((i, n)))
    } else {
        format!("{stem}.json")
    }
}

fn clear_temps(out: &Path, tag: &str) {
    for sub in ["", "kept", "skipped", "data", "rejects", "units"] {
        atomic::remove_temps(&out.join(sub), |t| t == tag);
    }
}

/// Scores the planned units into the output folder, committing each (`None`: nothing to do).
fn score_units(
    job: &FilterJob,
    planned: Vec<PlannedFile>,
    sources: Vec<UnitSource>,
    tag: &str,
) -> Result<Option<super::Summary>, PipelineError> {
    if planned.is_empty() {
        return Ok(None);
    }
    let out = &job.score.output;
    let strategy = Strategy::of_loop(job.keep, job.picks);
    let mut scoring = job.score.clone();
    // diverse picks cluster the rows by their step features
    scoring.features_to_hooks |= strategy.needs_embeddings();
    let sink = FilterSink {
        out: out.clone(),
        strategy,
        label_format: job.label_format,
        picker: quality::Picker::new(&job.quality, &job.score.sql_config()),
        query: match &job.score.query {
            Some(text) => Some(crate::sql::row_query::RowQuery::new(
                text,
                &job.score.sql_config(),
            )?),
            None => None,
        },
        write_skipped: job.write_skipped,
        group_by: job.group_by.clone(),
        data: job
            .score
            .data_outputs()
            .map(|o| UnitData::new(&o, tag))
            .collect(),
        rejects: UnitOutput::new(DataFormat::Parquet, "rejects", out, tag),
        tag: tag.to_string(),
        sources: sources.into_iter().map(|s| (s.path.clone(), s)).collect(),
        stats: UnitStats::default(),
        quota: RateQuota::default(),
        committed: 0,
    };
    run_scoring(&scoring, planned, ScoreHooks::default(), Box::new(sink)).map(Some)
}

/// Finishes a run's summary (peak memory) and writes it beside the outputs, one per shard.
fn write_summary(
    job: &FilterJob,
    mut summary: FilterSummary,
) -> Result<FilterSummary, PipelineError> {
    summary.peak_rss_mb = peak_rss_mb();
    let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
    for out in job.score.data_outputs() {
        let tag = shard_tag(job.shard);
        write_atomic_tagged(
            &out.folder.join(shard_file(job.shard, "summary")),
            &json,
            &tag,
        )?;
        let kept = CardConfig {
            name: "default",
            files: out.format.units_pattern("kept"),
        };
        let skipped = CardConfig {
            name: "skipped",
            files: out.format.units_pattern("skipped"),
        };
        let configs: &[CardConfig] = if job.write_skipped {
            &[kept, skipped]
        } else {
            &[kept]
        };
        write_card_or_say(
            &out.folder,
            "Trajectories kept by actprm filter",
            configs,
            "The rows the filter kept, with their step scores (`default`; parts are named after \
             their input files and row groups); with `--write-skipped`, the others (`skipped`). \
             `units/` of the run's first sink records which input unit each part came from.",
        )?;
    }
    Ok(summary)
}

/// `--ray-unit`: the units of one Ray task, scored in one pass (the model is opened once). Tasks
/// of one job run side by side in one folder, and a retried task may meet a straggler of its
/// earlier attempt: each unit's lock (taken in id order) serialises them, and a unit found
/// committed (`done`: with its files whole) is not done again.
fn run_given_units(
    job: &FilterJob,
    wanted: &[UnitRef],
    done: &dyn Fn(&str) -> Result<bool, PipelineError>,
) -> Result<FilterSummary, PipelineError> {
    ray::exit_with_ray_worker();
    let out = &job.score.output;
    let files = discover_named(
        &job.score.inputs,
        "parquet",
        job.score.columns.split.as_deref(),
    )?;
    let sources: Vec<UnitSource> = files.iter().map(UnitSource::new).collect();
    let mut units = Vec::new();
    for unit in wanted {
        let source = sources
            .iter()
            .find(|s| s.path == unit.path)
            .ok_or_else(|| PipelineError::NotPlanned(unit.path.clone()))?;
        units.push((source.unit_id(unit.group), unit.group, source.clone()));
    }
    units.sort_by(|a, b| a.0.cmp(&b.0));
    let mut locks = Vec::new();
    let lock_dir = out.join("ray/locks");
    std::fs::create_dir_all(&lock_dir).map_err(PipelineError::io(&lock_dir))?;
    for (id, _, _) in &units {
        let path = lock_dir.join(id);
        let lock = File::create(&path).map_err(PipelineError::io(&path))?;
        lock.lock().map_err(PipelineError::io(&path))?;
        locks.push(lock);
    }
    let tag = format!("unit-{}", units[0].0);
    clear_temps(out, &tag);
    start_run(job, &RunSettings::of(job, &sources)?)?;
    let ids: Vec<String> = units.iter().map(|(id, _, _)| id.clone()).collect();
    // the units still to do, grouped by file in the order the input listing gives
    let mut todo: Vec<(UnitSource, Vec<Option<usize>>)> = Vec::new();
    let mut done_now = 0;
    for (id, group, source) in units {
        if done(&id)? {
            continue;
        }
        done_now += 1;
        match todo.iter_mut().find(|(s, _)| s.path == source.path) {
            Some((_, groups)) => groups.push(group),
            None => todo.push((source, vec![group])),
        }
    }
    let paths: Vec<PathBuf> = todo.iter().map(|(s, _)| s.path.clone()).collect();
    let mut planned = plan(&paths, &job.score.columns)?;
    for (f, (_, groups)) in planned.iter_mut().zip(&todo) {
        // a file whose footer is unreadable is one unit, reported whole
        if f.columns.is_ok() {
            let mut groups: Vec<usize> = groups.iter().flatten().copied().collect();
            groups.sort_unstable();
            f.groups = Some(groups);
        }
    }
    score_units(job, planned, todo.into_iter().map(|t| t.0).collect(), &tag)?;
    let mut stats = Vec::new();
    for id in &ids {
        stats.extend(commit_record(out, id)?);
    }
    let mut summary = summarise(&stats);
    summary.units_this_run = done_now;
    Ok(summary)
}
