//! Runs a stage that takes its whole source at once: `fit` (`actprm train`), `finetune` and
//! `experiment`, each through its command's own function, so a file and the command it spells
//! out train the same.

use std::path::PathBuf;

use super::compile::{stage_error, RunOutcome};
use super::*;
use crate::report::Report;

/// Runs the plan's offline stage `name` on its source.
pub(super) fn run(
    file: &PipelineFile,
    plan: &Plan,
    name: &str,
    progress: bool,
) -> Result<RunOutcome, ConfigError> {
    let failed = |e: &dyn std::fmt::Display| stage_error(name, e);
    let files = source_files(&file.sources[&plan.source]).map_err(|e| failed(&e))?;
    let say = |line: Option<String>| {
        if let (true, Some(line)) = (progress, line) {
            eprintln!("{name}: {line}");
        }
    };
    let (summary, table, output) = match &file.transforms[name] {
        TransformStage::Fit(fit) => {
            let report =
                crate::pipeline::train::run_train(&files, &fit.output, &fit.settings, |r| {
                    say(r.progress_line())
                })
                .map_err(|e| failed(&e))?;
            (json(&report), report.table(), fit.output.clone())
        }
        TransformStage::Finetune(tune) => {
            let report = crate::pipeline::finetune::run_finetune(
                &files,
                &tune.output,
                &tune.settings,
                |p| say(p.line()),
            )
            .map_err(|e| failed(&e))?;
            (json(&report), report.table(), tune.output.clone())
        }
        TransformStage::Experiment(experiment) => {
            let [pool] = files.as_slice() else {
                return Err(failed(&format!(
                    "the experiment's pool is one feature store; its source names {}",
                    files.len()
                )));
            };
            let dev =
                crate::source::remote::localise_paths(&experiment.dev).map_err(|e| failed(&e))?;
            let run = crate::experiment::run_experiment_files(
                pool,
                &dev,
                &experiment.output,
                &experiment.settings,
                |c| say(c.progress_line()),
            )
            .map_err(|e| failed(&e))?;
            (json(&run.report), run.summary(), experiment.output.clone())
        }
        other => return Err(failed(&format!("{} is not an offline stage", other.kind()))),
    };
    Ok(RunOutcome {
        job: plan.job(),
        summary,
        table,
        output: Some(output),
        table_sinks: plan.table_sinks(file),
    })
}

fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// The files a source names, fetched when they are remote: feature stores, or labelled
/// trajectories (JSON Lines, ProcessBench arrays, Parquet with a label column) for `finetune`.
fn source_files(source: &SourceStage) -> Result<Vec<PathBuf>, crate::source::SourceError> {
    match source {
        SourceStage::Parquet(p) => {
            crate::source::discover_inputs(&p.paths, "parquet", p.columns.split.as_deref())
        }
        SourceStage::Jsonl(l) | SourceStage::Processbench(l) | SourceStage::Features(l) => {
            crate::source::remote::localise_paths(&l.paths)
        }
    }
}
