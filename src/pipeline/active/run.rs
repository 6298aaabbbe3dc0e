//! The loop at run time: the sink that holds scored rows until a checkpoint, the per-batch
//! label-and-train step, checkpoints, resume, and the end of the run.

pub(super) mod labelled;

use super::parts::{
    remove_other_checkpoints, remove_uncommitted, trim_eval_log, write_part, LAYOUT,
};

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch, StringArray};

use super::decisions::DecisionBuffer;
use super::{fingerprint, ActiveJob, ActiveSummary, LoopState};
use crate::eval::model::samples_from_probs;
use crate::eval::processbench;
use crate::formats::features::{read_features, FeatureRow};
use crate::label::judge::JudgeLabeller;
use crate::label::{
    first_error_labels, LabelColumn, LabelFormat, LabelRequest, Labeller, PoolLabeller,
};
use crate::model::manifest::model_version;
use crate::model::{HeadsWeights, LoadedModel};
use crate::pipeline::refresh::{channel, HeadsUpdate};
use crate::pipeline::score::{run_scoring, BatchView, ScoreHooks, ScoredSink, SinkBatch};
use crate::pipeline::PipelineError;
use crate::rng::NormalRng;
use crate::score::check::CheckRule;
use crate::select::{Candidates, Decision, Strategy};
use crate::sink::commit::{self, Recorded};
use crate::sink::dataset_card::CardConfig;
use crate::sink::{write_atomic, DataFormat};
use crate::source::columns::{extract, Trajectory};
use crate::source::flow::Unreadable;
use crate::train::algorithm::{export_due, label_and_train};
use crate::train::{TrainConfig, Trainer};

/// The loop's one commit point. Not `state.json` (its name before): Hugging Face `datasets`
/// takes any folder holding a `state.json` for a `save_to_disk` folder and refuses to load it.
pub(super) const STATE_FILE: &str = "loop-state.json";
/// The commit point of runs written before the rename, still resumed.
pub(super) const LEGACY_STATE_FILE: &str = "state.json";

/// The commit record of the run in `out`: today's name, else the legacy one when only it exists.
fn state_path(out: &std::path::Path) -> std::path::PathBuf {
    let legacy = out.join(LEGACY_STATE_FILE);
    if !out.join(STATE_FILE).exists() && legacy.exists() {
        legacy
    } else {
        out.join(STATE_FILE)
    }
}

/// The heads file in a checkpoint that the scorer was running.
const SCORER_HEADS: &str = "scorer-heads.onnx";
/// Checkpoint at least every this many scored batches, even without training steps, so the
/// rows held for the next commit stay few.
const MAX_PENDING_BATCHES: usize = 32;

/// Scored rows, rejects and unreadable-row records since the last checkpoint: the sink fills
/// it, the checkpoint writes it as part K.
#[derive(Default)]
struct Pending {
    scored: Vec<RecordBatch>,
    rejects: Vec<RecordBatch>,
    unreadable: Vec<String>,
    rows: u64,
    batches: usize,
}

/// The scoring sink of the loop: holds everything until the loop's next commit.
struct PendingSink {
    pending: Arc<Mutex<Pending>>,
}

impl ScoredSink for PendingSink {
    fn scored(&mut self, batch: &SinkBatch<'_>) -> Result<(), PipelineError> {
        let rejects = if batch.rejected.is_empty() {
            None
        } else {
            Some(crate::sink::rejects::rejected_rows(
                batch.path,
                batch.input,
                batch.rejected,
            )?)
        };
        let mut p = self.pending.lock().expect("pending lock");
        p.scored.push(batch.output.clone());
        p.rejects.extend(rejects);
        p.rows += batch.input.num_rows() as u64;
        p.batches += 1;
        Ok(())
    }

    fn unreadable(&mut self, unreadable: &Unreadable) -> Result<(), PipelineError> {
        let mut p = self.pending.lock().expect("pending lock");
        p.unreadable.push(unreadable.record().to_string());
        p.rows += unreadable.rows;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<String>, PipelineError> {
        Ok(vec![])
    }
}

struct LoopCtx {
    trainer: Trainer,
    base: LoadedModel,
    pending: Arc<Mutex<Pending>>,
    /// The heads the scorer runs.
    published: HeadsUpdate,
    labeller: Box<dyn Labeller + Send>,
    state: LoopState,
    buffer: DecisionBuffer,
    dev: Vec<(String, Vec<FeatureRow>)>,
    next_eval: u64,
    summary: ActiveSummary,
    tau: f32,
    /// Rows labelled since the last commit (kept only with `retrain_steps`).
    labelled: Vec<FeatureRow>,
    /// The trainer is the end-of-run retraining (marked in eval.jsonl).
    retrained: bool,
    /// (labels, step, retrained) of the last evaluation, so the end of a run whose last batch
    /// crossed `eval_every` does not log the same evaluation twice.
    last_eval: Option<(u64, u64, bool)>,
}

/// The problem and steps of every scored row, for the judge's prompt. Scored rows passed the
/// scorer's own checks, so a row that cannot be read here is an internal error, not bad input.
fn trajectory_texts(job: &ActiveJob, out: &RecordBatch) -> Result<Vec<Trajectory>, PipelineError> {
    let here = Path::new("scored batch");
    let columns = job
        .score
        .columns
        .resolve(&out.schema(), here)
        .map_err(PipelineError::from)?;
    let unreadable = |column: &str, message: String| crate::source::SourceError::Column {
        file: here.to_path_buf(),
        column: column.to_string(),
        message,
    };
    extract(out.columns(), &columns)
        .map_err(|message| unreadable(&columns.steps.1, message))?
        .into_iter()
        .map(|row| row.map_err(|r| unreadable(&r.column, r.reason).into()))
        .collect()
}

impl LoopCtx {
    /// Commits the loop: checkpoint K (trainer + the scorer's heads), parts K, then `loop-state.json`.
    /// With `publish`, the trainer's heads first become the scorer's (sent after the commit).
    fn checkpoint(
        &mut self,
        job: &ActiveJob,
        publish: Option<&crate::pipeline::refresh::HeadsSender>,
    ) -> Result<(), PipelineError> {
        let out = &job.output;
        let k = self.state.decision_parts;
        let rel = format!("checkpoints/ckpt-{k:05}");
        let dir = out.join(&rel);
        let version = self
            .trainer
            .export(&self.base, &dir, None)
            .map_err(PipelineError::from)?;
        if publish.is_some() {
            let exported = LoadedModel::from_dir(&dir)?;
            self.published = HeadsUpdate {
                bytes: Arc::new(exported.heads_bytes),
                version: version.clone(),
            };
        }
        write_atomic(&dir.join(SCORER_HEADS), &self.published.bytes)?;
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        let decisions = self.buffer.batch(job.label_format);
        let parquet = DataFormat::Parquet;
        let mut files = write_part(out, ("decisions", "decisions", parquet), k, &[decisions])?;
        files.extend(write_part(
            out,
            ("scored", "part", job.format),
            k,
            &pending.scored,
        )?);
        files.extend(write_part(
            out,
            ("rejects", "rejects", parquet),
            k,
            &pending.rejects,
        )?);
        if !pending.unreadable.is_empty() {
            let name = format!("rejects/unreadable-{k:05}.jsonl");
            write_atomic(
                &out.join(&name),
                (pending.unreadable.join("\n") + "\n").as_bytes(),
            )?;
            files.add(name, pending.unreadable.len() as u64);
        }
        if job.retrain_steps > 0 {
            files.extend(labelled::write_part(
                out,
                k,
                &std::mem::take(&mut self.labelled),
            )?);
        }
        crate::failpoint::hit("active-commit");
        self.state.committed.extend(files);
        self.state.rows_done += pending.rows;
        self.state.steps = self.trainer.step();
        self.state.decision_parts = k + 1;
        self.state.checkpoint = rel.clone();
        self.state.model_version = version.clone();
        self.state.scorer_version = self.published.version.clone();
        write_atomic(
            &out.join(STATE_FILE),
            &serde_json::to_vec_pretty(&self.state).expect("state serialises"),
        )?;
        // a resumed run of an older actprm now commits under the new name only
        let _ = std::fs::remove_file(out.join(LEGACY_STATE_FILE));
        remove_other_checkpoints(out, &rel);
        if let Some(sender) = publish {
            let _ = sender.send(Some(self.published.clone()));
        }
        self.summary.exports += 1;
        if !self.summary.model_versions.contains(&version) {
            self.summary.model_versions.push(version);
        }
        Ok(())
    }

    fn evaluate(&mut self, job: &ActiveJob) -> Result<(), PipelineError> {
        let key = (self.state.labels_used, self.trainer.step(), self.retrained);
        if self.dev.is_empty() || self.last_eval == Some(key) {
            return Ok(());
        }
        self.last_eval = Some(key);
        let mut f1s = Vec::new();
        let mut line = serde_json::json!({"labels": self.state.labels_used, "steps": self.trainer.step(), "tau": self.tau});
        if self.retrained {
            line["retrained"] = serde_json::json!(true);
        }
        for (name, rows) in &self.dev {
            let x: Vec<f32> = rows
                .iter()
                .flat_map(|r| r.features.iter().copied())
                .collect();
            let probs = self
                .trainer
                .probabilities(&x)
                .map_err(PipelineError::from)?;
            // the heads' own F1: the check's verdicts do not change with the labels bought
            let score = processbench(
                &samples_from_probs(rows, &probs, self.trainer.heads.heads, CheckRule::Off),
                self.tau,
            );
            if let Some(f) = score.f1 {
                f1s.push(f);
            }
            line[name] = serde_json::json!({"f1": score.f1, "acc_error": score.acc_error, "acc_correct": score.acc_correct});
        }
        let mean = (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64);
        line["mean_f1"] = serde_json::json!(mean);
        self.summary.final_dev_f1 = mean;
        job.score.log.line(&format!(
            "active: {} labels, step {}, dev mean F1 {:?}",
            self.state.labels_used,
            self.trainer.step(),
            mean
        ));
        let path = job.output.join("eval.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text += &format!("{line}\n");
        write_atomic(&path, text.as_bytes())?;
        Ok(())
    }

    fn on_batch(
        &mut self,
        job: &ActiveJob,
        view: &BatchView<'_>,
        sender: &crate::pipeline::refresh::HeadsSender,
    ) -> Result<(), PipelineError> {
        let out = view.output;
        let steps: Vec<usize> = view.scores.iter().map(|s| s.mean.len()).collect();
        let n = view.scores.len();
        // the judge reads the text; the pool reveals its label column
        let (texts, pool_labels) = if job.judge.is_some() {
            (trajectory_texts(job, out)?, vec![None; n])
        } else {
            let column =
                LabelColumn::detect(&out.schema()).ok_or(PipelineError::PoolWithoutLabels)?;
            let labels = first_error_labels(out, &column, &steps)?;
            // TRL records carry the text of every row, labelled or not
            let texts = match job.label_format {
                LabelFormat::Trl => trajectory_texts(job, out)?,
                LabelFormat::Actprm => Vec::new(),
            };
            (texts, labels)
        };
        // Algorithm 1's choice, by the same strategy code the pool experiment measures
        let strategy = Strategy::of_loop(job.selection, job.picks);
        let decisions: Vec<Decision> = view.scores.iter().map(|s| s.decision).collect();
        let embeddings = strategy.embeddings(
            view.features
                .iter()
                .map(|f| (f.features.as_slice(), f.steps)),
        );
        // seeded by the rows offered so far: a resumed run picks as an uninterrupted one
        let mut rng = NormalRng::new(job.train.seed ^ self.state.keep_quota.offered);
        let candidates = Candidates {
            decisions: &decisions,
            embeddings: &embeddings,
            warm_start: false,
            quota: strategy.quota(&mut self.state.keep_quota, n),
        };
        let chosen = strategy.choose_mask(&candidates, &mut rng);
        let budget_left = job
            .label_budget
            .map_or(u64::MAX, |b| b.saturating_sub(self.state.labels_used));
        let step_before = self.trainer.step();
        let mut batch = label_and_train(
            &mut self.trainer,
            self.labeller.as_mut(),
            view.features,
            &chosen,
            budget_left,
            |i| LabelRequest {
                key: format!(
                    "{}:{}",
                    view.features[i].source_file, view.features[i].source_row
                ),
                problem: texts.get(i).map(|t| t.problem.clone()).unwrap_or_default(),
                steps: texts
                    .get(i)
                    .map_or_else(|| vec![String::new(); steps[i]], |t| t.steps.clone()),
                pool_label: pool_labels[i],
            },
        )?;
        if job.retrain_steps > 0 {
            self.labelled.append(&mut batch.rows);
        }
        self.summary.over_budget += batch.over_budget;
        self.summary.unlabelled += batch.unlabelled;
        self.state.labels_used += batch.labelled();
        self.summary.labels_used = self.state.labels_used;
        let (labels, notes) = (&batch.labels, &batch.notes);
        let versions = out
            .column_by_name("model_version")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        for i in 0..n {
            let f = &view.features[i];
            let s = &view.scores[i];
            self.buffer.file.push(f.source_file.clone());
            self.buffer.row.push(f.source_row);
            self.buffer.selected.push(chosen[i]);
            self.buffer.reason.push(s.decision.reason().to_string());
            self.buffer.uncertainty.push(s.decision.uncertainty);
            self.buffer.version.push(
                versions
                    .as_ref()
                    .map_or(String::new(), |v| v.value(i).to_string()),
            );
            self.buffer.label.push(labels[i]);
            self.buffer.used.push(labels[i].is_some());
            self.buffer.note.push(notes[i].clone());
            self.buffer.step.push(step_before);
            if job.label_format == LabelFormat::Trl {
                self.buffer
                    .texts
                    .push(texts.get(i).map(|t| (t.problem.clone(), t.steps.clone())));
            }
        }
        self.summary.rows_scored += n as u64;
        self.summary.rows_selected += chosen.iter().filter(|&&c| c).count() as u64;
        let pending_batches = self.pending.lock().expect("pending lock").batches;
        if export_due(step_before, self.trainer.step(), job.export_every) {
            self.checkpoint(job, Some(sender))?;
        } else if pending_batches >= MAX_PENDING_BATCHES {
            self.checkpoint(job, None)?;
        }
        while self.state.labels_used >= self.next_eval {
            self.evaluate(job)?;
            self.next_eval += job.eval_every.max(1);
        }
        let pending_rows = self.pending.lock().expect("pending lock").rows;
        if job
            .stop_after_rows
            .is_some_and(|n| self.state.rows_done + pending_rows >= n)
        {
            if pending_rows > 0 {
                self.checkpoint(job, None)?;
            }
            return Err(PipelineError::Stopped);
        }
        Ok(())
    }
}

/// The output-folder rule for the loop. A resume continues only the run its `run.json`
/// fingerprint describes (each difference named). A fresh run takes a folder holding none of
/// the loop's files; an earlier run's are refused, or removed (only they) with `--overwrite`,
/// or when they are this very run's, killed before its first commit (`--resume`, same
/// fingerprint, no `loop-state.json` yet). Then the fingerprint is recorded.
fn start_run(
    job: &ActiveJob,
    resuming: bool,
    fingerprint: &serde_json::Value,
) -> Result<(), PipelineError> {
    let out = &job.output;
    let recorded = commit::recorded(out, fingerprint)?;
    if resuming {
        return match recorded {
            Recorded::Same => Ok(()),
            Recorded::Absent => Err(PipelineError::Inconsistent {
                path: out.clone(),
                detail: "the loop's state has no run.json beside it (a run of an older actprm, or a damaged folder), so its inputs and settings cannot be checked; start again with --overwrite"
                    .into(),
            }),
            Recorded::Changed(differences) => Err(PipelineError::SettingsChanged {
                path: out.clone(),
                run: "an active run",
                differences: differences.join("; "),
                start_again: "--overwrite",
            }),
        };
    }
    if state_path(out).exists() && !job.overwrite {
        return Err(PipelineError::PreviousRun { path: out.clone() });
    }
    let own_leftovers = job.resume && recorded == Recorded::Same;
    crate::sink::output_folder::prepare(out, &LAYOUT, job.overwrite || own_leftovers)?;
    // what is left of the loop's is a killed run's temporary files
    remove_uncommitted(out, 0);
    crate::model::check_output(&out.join("model"), job.overwrite)?;
    commit::record(out, fingerprint, &crate::sink::atomic::process_tag())?;
    Ok(())
}

/// Runs (or resumes) the loop to the end of the pool.
pub fn run_active(job: &ActiveJob) -> Result<ActiveSummary, PipelineError> {
    job.validate()?;
    let out = &job.output;
    // one process per folder: two resumes of one run would interleave their commits
    let _folder = crate::sink::output_folder::lock(out)?;
    let state_path = state_path(out);
    let device = tch::Device::Cpu;
    let named = crate::source::discover::discover_named(
        &job.score.inputs,
        "parquet",
        job.score.columns.split.as_deref(),
    )?;
    let fingerprint = fingerprint::of(job, &named)?;
    let files: Vec<std::path::PathBuf> = named.into_iter().map(|f| f.path).collect();
    let resuming = job.resume && state_path.exists();
    start_run(job, resuming, &fingerprint)?;
    let (state, trainer, base, published) = if resuming {
        let state: LoopState = serde_json::from_str(
            &std::fs::read_to_string(&state_path).map_err(PipelineError::io(&state_path))?,
        )
        .map_err(PipelineError::json(&state_path))?;
        let ckpt = out.join(&state.checkpoint);
        let trainer = Trainer::resume(&ckpt, device)?;
        if trainer.step() != state.steps {
            return Err(PipelineError::Inconsistent {
                path: out.clone(),
                detail: format!(
                    "loop-state.json says step {}, its checkpoint {} holds step {}",
                    state.steps,
                    ckpt.display(),
                    trainer.step()
                ),
            });
        }
        let base = LoadedModel::from_dir(&ckpt)?;
        let heads = std::fs::read(ckpt.join(SCORER_HEADS)).map_err(PipelineError::io(&ckpt))?;
        let published = HeadsUpdate {
            version: model_version(&base.manifest.name, &heads),
            bytes: Arc::new(heads),
        };
        if published.version != state.scorer_version {
            return Err(PipelineError::Inconsistent {
                path: out.clone(),
                detail: format!(
                    "the scorer's heads in {} are {}, loop-state.json says {}",
                    ckpt.display(),
                    published.version,
                    state.scorer_version
                ),
            });
        }
        remove_uncommitted(out, state.decision_parts);
        state
            .committed
            .check(out)
            .map_err(|problem| PipelineError::Inconsistent {
                path: out.clone(),
                detail: format!(
                    "a file the loop committed is not as it was committed ({problem}): its rows \
                     would be missing from the output; start again with --overwrite"
                ),
            })?;
        remove_other_checkpoints(out, &state.checkpoint);
        trim_eval_log(&out.join("eval.jsonl"), state.labels_used)?;
        (state, trainer, base, published)
    } else {
        let base = LoadedModel::open(job.score.model.as_deref())?;
        let trainer = match job.cold_start {
            Some((e, seed)) => {
                let w = HeadsWeights::init(e, base.manifest.hidden_size, seed);
                Trainer::new(&w, &w, TrainConfig { seed, ..job.train }, device)?
            }
            None => Trainer::from_model(&base, job.train, device)?,
        };
        let published = HeadsUpdate {
            bytes: Arc::new(Vec::new()),
            version: String::new(),
        };
        (LoopState::default(), trainer, base, published)
    };
    let mut dev = Vec::new();
    for path in &job.dev {
        let (_, rows) = read_features(path)?;
        dev.push((crate::source::jsonl::subset_name(path), rows));
    }
    let tau = base.manifest.tau;
    let pending = Arc::new(Mutex::new(Pending::default()));
    let mut ctx = LoopCtx {
        trainer,
        base,
        pending: pending.clone(),
        published,
        labeller: match &job.judge {
            Some(config) => Box::new(JudgeLabeller::new(config, job.score.log.clone())?),
            None => Box::new(PoolLabeller::default()),
        },
        next_eval: (state.labels_used / job.eval_every.max(1) + 1) * job.eval_every.max(1),
        state,
        buffer: DecisionBuffer::default(),
        dev,
        summary: ActiveSummary {
            rows_scored: 0,
            rows_selected: 0,
            labels_used: 0,
            over_budget: 0,
            unlabelled: 0,
            steps: 0,
            exports: 0,
            model_versions: vec![],
            final_model: String::new(),
            final_dev_f1: None,
            one_pass_dev_f1: None,
            retrained_on: None,
            state: LoopState::default(),
        },
        tau,
        labelled: Vec::new(),
        retrained: false,
        last_eval: None,
    };
    ctx.summary.labels_used = ctx.state.labels_used;
    let (sender, receiver) = channel();
    if resuming {
        // the scorer starts from the heads it ran at the commit, the trainer from its own
        let _ = sender.send(Some(ctx.published.clone()));
    } else {
        ctx.checkpoint(job, Some(&sender))?;
    }
    let mut score = job.score.clone();
    score.model = Some(out.join(&ctx.state.checkpoint));
    score.output = out.clone();
    score.features_to_hooks = true;
    score.skip_rows = ctx.state.rows_done;
    let planned = crate::source::parquet::plan(&files, &score.columns)?;
    crate::source::parquet::refuse_if_none_readable(&planned)?;
    let sink = PendingSink { pending };
    let mut failure: Option<PipelineError> = None;
    {
        let ctx_ref = &mut ctx;
        let failure_ref = &mut failure;
        let hooks = ScoreHooks {
            refresh: Some(receiver),
            lockstep: true,
            on_batch: Some(Box::new(move |view| {
                // the run only needs to stop; the error itself is kept, typed, for the caller
                ctx_ref.on_batch(job, view, &sender).map_err(|e| {
                    *failure_ref = Some(e);
                    PipelineError::Stopped
                })
            })),
        };
        let result = run_scoring(&score, planned, hooks, Box::new(sink));
        match failure.take() {
            Some(PipelineError::Stopped) => {}
            Some(e) => return Err(e),
            None => {
                result?;
            }
        }
    }
    let stopped = job
        .stop_after_rows
        .is_some_and(|n| ctx.state.rows_done >= n);
    if !stopped {
        // the rows after the last commit (and any unreadable tail)
        ctx.checkpoint(job, None)?;
        ctx.evaluate(job)?;
    }
    ctx.summary.steps = ctx.trainer.step();
    if !stopped && job.retrain_steps > 0 {
        labelled::retrain_at_the_end(&mut ctx, job)?;
    }
    ctx.summary.final_model = ctx.trainer.export(&ctx.base, &out.join("model"), None)?;
    ctx.summary.state = LoopState {
        // the files are loop-state.json's record; the summary reports the counts
        committed: Default::default(),
        ..ctx.state.clone()
    };
    if !stopped {
        write_atomic(
            &out.join("summary.json"),
            &serde_json::to_vec_pretty(&ctx.summary).expect("summary serialises"),
        )?;
        crate::sink::dataset_card::write_card_or_say(
            out,
            "An active-learning run of actprm",
            &[
                CardConfig {
                    name: "default",
                    files: format!("scored/part-*.{}", job.format.extension()),
                },
                CardConfig {
                    name: "decisions",
                    files: "decisions/decisions-*.parquet".into(),
                },
            ],
            "The stream's rows as the loop scored them (`default`), and each batch's \
             selection decisions (`decisions`), from `actprm active`; the trained model is in \
             `model/`.",
        )?;
    }
    Ok(ctx.summary)
}
