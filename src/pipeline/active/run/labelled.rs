//! The labels an active run collected, with their step features, and `--retrain-steps`, which
//! trains fresh heads on all of them at the end. One part per commit
//! (`labelled/labelled-K.arrow`, K the commit's part number), so `--retrain-steps` can train on
//! all of them at the end, however often the run was stopped and resumed. Parts past the last
//! commit are removed on resume like the other parts.

use std::path::Path;

use super::super::parts::part_index;
use super::super::ActiveJob;
use super::LoopCtx;
use crate::formats::features::{read_features, FeatureRow, FeatureWriter};
use crate::pipeline::PipelineError;
use crate::sink::commit::Promised;
use crate::train::algorithm::retrain;
use crate::train::TrainConfig;

pub const DIR: &str = "labelled";

/// Writes commit `k`'s labelled rows (nothing when there are none); returns what the commit
/// record promises of it.
pub fn write_part(out: &Path, k: usize, rows: &[FeatureRow]) -> Result<Promised, PipelineError> {
    let Some(first) = rows.first() else {
        return Ok(Promised::default());
    };
    let dim = first.features.len() / first.steps.max(1);
    let name = format!("{DIR}/{DIR}-{k:05}.arrow");
    let mut writer = FeatureWriter::create(&out.join(&name), dim)?;
    writer.write(rows)?;
    writer.finish()?;
    Ok([(name, rows.len() as u64)].into_iter().collect())
}

/// Every committed part's rows, in commit order.
pub fn read_all(out: &Path) -> Result<Vec<FeatureRow>, PipelineError> {
    let dir = out.join(DIR);
    let mut parts: Vec<(usize, std::path::PathBuf)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let ours = name.starts_with(&format!("{DIR}-")) && name.ends_with(".arrow");
                Some((ours.then(|| part_index(&name))??, e.path()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    parts.sort();
    let mut rows = Vec::new();
    for (_, path) in parts {
        rows.extend(read_features(&path)?.1);
    }
    Ok(rows)
}

/// `--retrain-steps`: the pass's heads go to model-one-pass/, and fresh heads from the run's
/// starting heads, trained on every label the run collected, become the trainer `model/` gets.
pub(super) fn retrain_at_the_end(ctx: &mut LoopCtx, job: &ActiveJob) -> Result<(), PipelineError> {
    let out = &job.output;
    let rows = read_all(out)?;
    if rows.is_empty() {
        job.score
            .log
            .line("active: no labels collected, nothing to retrain on");
        return Ok(());
    }
    ctx.trainer
        .export(&ctx.base, &out.join("model-one-pass"), None)?;
    let start = ctx.trainer.heads.anchor_weights()?;
    let train = TrainConfig {
        lr: job.retrain_lr,
        ..job.train
    };
    ctx.trainer = retrain(&rows, &start, train, job.retrain_steps)?;
    ctx.retrained = true;
    ctx.summary.one_pass_dev_f1 = ctx.summary.final_dev_f1;
    ctx.summary.retrained_on = Some(rows.len() as u64);
    ctx.evaluate(job)
}
