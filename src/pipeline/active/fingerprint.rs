//! What an active run's decisions depend on, recorded as `run.json` when the run starts: a
//! resume with other inputs or settings would decide and train on rows twice, or never see some,
//! so it is refused with each difference named (the output-folder rule's fingerprint).

use serde_json::json;

use super::ActiveJob;
use crate::model::LoadedModel;
use crate::pipeline::filter::unit::UnitSource;
use crate::pipeline::PipelineError;
use crate::select::Keep;
use crate::source::discover::InputFile;

/// Keys name the flags a user would change (`--keep-rate`), so a refusal reads as they wrote it.
pub(super) fn of(job: &ActiveJob, files: &[InputFile]) -> Result<serde_json::Value, PipelineError> {
    let model = LoadedModel::open(job.score.model.as_deref())?;
    let backbone = model.backbone_file(job.score.runtime.device);
    let score = &job.score.score;
    let judge = job.judge.as_ref().map(|j| {
        json!({
            "model": j.model,
            "format": j.format,
            "template": j.template,
            "temperature": j.temperature,
            "top_p": j.top_p,
            "max_tokens": j.max_tokens,
            "votes": j.votes,
        })
    });
    let mut record = json!({
        "format": 1,
        "inputs (name|bytes|footer)": files.iter().map(|f| UnitSource::new(f).key).collect::<Vec<_>>(),
        "--split": job.score.columns.split,
        "--problem-column": job.score.columns.problem,
        "--steps-column": job.score.columns.steps,
        "--step-separator": job.score.columns.step_separator,
        "model": model.version(),
        "backbone": backbone.sha256.unwrap_or_else(|| backbone.path.display().to_string()),
        "--keep-rate": match job.selection { Keep::Rule => None, Keep::Rate(r) => Some(r) },
        "--picks": job.picks,
        "--batch-rows": job.score.batch_rows,
        "--tau": score.tau.unwrap_or(model.manifest.tau),
        "--delta-pred": score.rule.delta_pred,
        "--delta-std": score.rule.delta_std,
        "--check": score.check_rule(&model.manifest),
        "--label-budget": job.label_budget,
        "--cold-start": job.cold_start.map(|(heads, _)| heads),
        "--seed": job.train.seed,
        "--lr": job.train.lr,
        "--lambda": job.train.lambda,
        "--warmup": job.train.warmup_steps,
        "--export-every": job.export_every,
        "--retrain-steps": job.retrain_steps,
        "--retrain-lr": job.retrain_lr,
        "--label-format": job.label_format,
        "judge": judge,
    });
    // settings that became flags later are recorded only when set, so the runs started before
    // still resume
    let defaults = crate::train::TrainConfig::default();
    for (flag, value, default) in [
        (
            "--weight-decay",
            job.train.weight_decay,
            defaults.weight_decay,
        ),
        (
            "--wrong-weight",
            job.train.pos_weight_wrong,
            defaults.pos_weight_wrong,
        ),
    ] {
        if value != default {
            record[flag] = json!(value);
        }
    }
    if job.format != crate::sink::DataFormat::Parquet {
        record["--format"] = json!(job.format);
    }
    Ok(record)
}
