//! Fine-tuning at run time (libtorch): labelled records in, a tuned model out.
use std::path::{Path, PathBuf};

use super::{checkpoint_dir, FinetuneProgress, FinetuneReport, FinetuneSettings};
use crate::model::LoadedModel;
use crate::pipeline::PipelineError;
use crate::sink::commit::{self, Recorded};
use crate::tokenise::Tokeniser;
use crate::train::trainer::epoch_order;
use crate::train::{torch_device, Finetuner, Recipe, StepReport, TokenisedExample, TrainConfig};

/// Fine-tunes on the labelled `files` (what `actprm eval` reads) and writes the model to `output`.
pub fn run_finetune(
    files: &[PathBuf],
    output: &Path,
    a: &FinetuneSettings,
    mut progress: impl FnMut(&FinetuneProgress),
) -> Result<FinetuneReport, PipelineError> {
    let mut problems = crate::limits::Problems::default();
    a.problems(&mut problems);
    problems.first()?;
    let device = torch_device(a.device)?;
    let base = LoadedModel::open(a.model.as_deref())?;
    let backbone = base.backbone_file(a.device);
    let weights_dir = backbone
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if backbone.build.is_none() || !weights_dir.join("model.safetensors").exists() {
        return Err(PipelineError::BackboneNotTrainable {
            backbone: backbone.path,
        });
    }
    let checkpoint = checkpoint_dir(output);
    let record = run_record(files, a, &base.version());
    crate::model::check_output(output, a.overwrite)?;
    if checkpoint.exists() && !a.resume {
        if !a.overwrite {
            return Err(PipelineError::PreviousRun { path: checkpoint });
        }
        std::fs::remove_dir_all(&checkpoint).map_err(PipelineError::io(&checkpoint))?;
    }
    if a.resume && !checkpoint.exists() {
        return Err(PipelineError::NoCheckpoint { path: checkpoint });
    }
    let resume_from = if a.resume {
        match commit::recorded(&checkpoint, &record)? {
            Recorded::Same => {}
            Recorded::Changed(differences) => {
                return Err(PipelineError::CheckpointOfOtherRun {
                    path: checkpoint,
                    differences: differences.join("; "),
                })
            }
            Recorded::Absent => {
                return Err(PipelineError::Inconsistent {
                    path: checkpoint,
                    detail: "the checkpoint has no run.json, so what it was made from cannot \
                             be checked; start again with --overwrite"
                        .into(),
                })
            }
        }
        Some(checkpoint.clone())
    } else {
        None
    };
    let examples = read_examples(files, &base, a)?;
    let mut held_out = Vec::new();
    let mut train = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        match a.tau_holdout_every.filter(|&n| n >= 2) {
            Some(n) if i % n == 0 => held_out.push(e),
            _ => train.push(e),
        }
    }
    if train.is_empty() {
        return Err(crate::train::TrainError::Labels(
            "no labelled trajectories to fine-tune on (all were held out or the inputs are empty)"
                .into(),
        )
        .into());
    }
    let per_epoch = train.len().div_ceil(a.batch_size.max(1)) as u64;
    let config = TrainConfig {
        total_steps: a.epochs * per_epoch,
        batch_size: a.batch_size,
        seed: a.seed,
        threads: a.threads,
        ..a.trainer.config(Recipe::FINETUNE)
    };
    let mut tuner = Finetuner::new(
        &base,
        &weights_dir,
        a.backbone_layers,
        config,
        a.backbone_lr,
        device,
    )?;
    let done = match &resume_from {
        Some(dir) => tuner.restore(dir)?,
        None => 0,
    };
    let record_bytes = serde_json::to_vec_pretty(&record).expect("the run record serialises");
    let save = |tuner: &Finetuner| {
        tuner.save_checkpoint(
            &checkpoint,
            &[(commit::FINGERPRINT_FILE, record_bytes.as_slice())],
        )
    };
    let started = std::time::Instant::now();
    let mut tokens = 0usize;
    let mut last = None;
    let mut step = 0u64;
    for epoch in 0..a.epochs {
        let visit = epoch_order(a.seed.wrapping_add(epoch + 1) ^ ORDER_SALT, train.len(), 0);
        for chunk in visit.chunks(a.batch_size.max(1)) {
            step += 1;
            if step <= done {
                continue; // done before the interruption
            }
            if a.stop_after.is_some_and(|s| step > s) {
                save(&tuner)?;
                return Ok(FinetuneReport {
                    steps: tuner.step(),
                    stopped: true,
                    checkpoint,
                    trajectories: train.len(),
                    held_out: held_out.len(),
                    tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
                    final_loss: last.map(|r: StepReport| r.loss),
                    tau: None,
                    output: output.to_path_buf(),
                    version: String::new(),
                });
            }
            let batch: Vec<&TokenisedExample> = chunk.iter().map(|&i| train[i]).collect();
            let report = tuner.train_step(&batch)?;
            if a.checkpoint_every > 0 && step.is_multiple_of(a.checkpoint_every) {
                save(&tuner)?;
            }
            tokens += batch.iter().map(|e| e.trajectory.tokens).sum::<usize>();
            progress(&FinetuneProgress {
                report: &report,
                total_steps: config.total_steps,
                tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
            last = Some(report);
        }
    }
    let tokens_per_s = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let tau = held_out_tau(&tuner, &held_out)?;
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let tau_note = tau.map_or(String::new(), |t| {
        format!(
            "; tau {t:.2} chosen on {} held-out trajectories",
            held_out.len()
        )
    });
    let provenance = format!(
        "fine-tuned by `actprm finetune` from {} ({}): the top {} encoder layers at lr {:e} and \
         the heads at lr {:e}, wrong-step weight {}, {} epoch(s), batches of {}, seed {}, on {} \
         labelled trajectories of {}{tau_note}",
        base.version(),
        base.manifest.name,
        tuner.encoder.trainable_layers(),
        a.backbone_lr,
        config.lr,
        config.pos_weight_wrong,
        a.epochs,
        a.batch_size,
        a.seed,
        train.len(),
        inputs.join(", "),
    );
    let version = tuner.export(&base, output, tau, &provenance)?;
    // the model is complete: the checkpoint has done its job
    if checkpoint.exists() {
        std::fs::remove_dir_all(&checkpoint).map_err(PipelineError::io(&checkpoint))?;
    }
    Ok(FinetuneReport {
        steps: tuner.step(),
        stopped: false,
        checkpoint,
        trajectories: train.len(),
        held_out: held_out.len(),
        tokens_per_s,
        final_loss: last.map(|r| r.loss),
        tau,
        output: output.to_path_buf(),
        version,
    })
}

/// The labelled records of `files` (a seeded sample of `max_trajectories` when set), tokenised as
/// the model's scorer does, each with its first-error label; a record that cannot be used is an
/// error naming its file and row.
fn read_examples(
    files: &[PathBuf],
    base: &LoadedModel,
    a: &FinetuneSettings,
) -> Result<Vec<TokenisedExample>, PipelineError> {
    // (file, 1-based row, record) for every labelled record, so errors name where it came from
    let mut records = Vec::new();
    for file in files {
        let read = crate::eval::labelled::read(file)?;
        records.extend(read.into_iter().enumerate().map(|(i, r)| (file, i + 1, r)));
    }
    let mut order = epoch_order(a.seed ^ ORDER_SALT, records.len(), 0);
    if let Some(n) = a.max_trajectories {
        order.truncate(n);
    }
    let tokeniser = Tokeniser::for_model(base)?;
    let mut examples = Vec::with_capacity(order.len());
    for chunk in order.chunks(64) {
        let refs: Vec<(&str, &[String])> = chunk
            .iter()
            .map(|&i| (records[i].2.problem.as_str(), records[i].2.steps.as_slice()))
            .collect();
        let tokenised = match tokeniser.encode(&refs) {
            Ok(t) => t,
            // find the record that fails, to name it
            Err(batch_message) => {
                for &i in chunk {
                    let (path, row, r) = &records[i];
                    if let Err(message) = tokeniser.encode(&[(r.problem.as_str(), &r.steps)]) {
                        return Err(PipelineError::Record {
                            path: path.to_path_buf(),
                            row: *row,
                            message: format!("cannot be tokenised: {message}"),
                        });
                    }
                }
                return Err(PipelineError::Tokenise(batch_message));
            }
        };
        for (trajectory, &i) in tokenised.into_iter().zip(chunk) {
            let (path, row, record) = &records[i];
            let label = crate::eval::labelled::first_error(record);
            if label < -1 || label >= trajectory.steps as i32 {
                return Err(PipelineError::Record {
                    path: path.to_path_buf(),
                    row: *row,
                    message: format!(
                        "first-error label {label} is out of range for {} steps",
                        trajectory.steps
                    ),
                });
            }
            examples.push(TokenisedExample { trajectory, label });
        }
    }
    Ok(examples)
}

/// tau chosen on the held-out trajectories with the tuned encoder and heads (none held out: none).
fn held_out_tau(
    tuner: &Finetuner,
    held_out: &[&TokenisedExample],
) -> Result<Option<f32>, PipelineError> {
    if held_out.is_empty() {
        return Ok(None);
    }
    let mut samples = Vec::with_capacity(held_out.len());
    for chunk in held_out.chunks(16) {
        let probs = tuner.probabilities(chunk)?;
        samples.extend(crate::eval::model::samples_of(
            chunk.iter().map(|e| (e.trajectory.steps, e.label)),
            &probs,
            tuner.heads.heads,
        ));
    }
    Ok(Some(crate::eval::choose_tau(&samples)))
}

/// Mixed into the seed of the sample and of each epoch's order (the measured runs in
/// docs/models.md drew theirs with it).
const ORDER_SALT: u64 = 0x5EED_F1E7;

/// What a checkpoint was made from, keyed as a user changes it (`--lr`, `inputs`, `base
/// model`), so a refused resume names each difference. The settings that only steer the run
/// (resume, overwrite, stop_after, checkpoint_every, threads) are left out: they may change;
/// `--lr` and `--warmup` are the values used, so naming the recipe's value again still resumes.
fn run_record(files: &[PathBuf], a: &FinetuneSettings, base: &str) -> serde_json::Value {
    const STEERING: [&str; 5] = [
        "resume",
        "overwrite",
        "stop_after",
        "checkpoint_every",
        "threads",
    ];
    let mut record = serde_json::Map::new();
    record.insert("inputs".into(), serde_json::json!(files));
    record.insert("base model".into(), serde_json::json!(base));
    if let Ok(serde_json::Value::Object(settings)) = serde_json::to_value(a) {
        for (key, value) in settings {
            if !STEERING.contains(&key.as_str()) {
                record.insert(format!("--{}", key.replace('_', "-")), value);
            }
        }
    }
    // the values the recipe gave where the flags left them, as the run used them
    let used = a.trainer.config(Recipe::FINETUNE);
    record.insert("--lr".into(), serde_json::json!(used.lr));
    record.insert("--warmup".into(), serde_json::json!(used.warmup_steps));
    serde_json::Value::Object(record)
}
