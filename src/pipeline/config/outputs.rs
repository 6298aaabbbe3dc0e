//! What a pipeline's run leaves behind, and how others find it: the tables `actprm sql
//! --pipeline FILE` registers.

use std::path::{Path, PathBuf};

use super::compile::{stage_error, Plan};
use super::*;

/// The tables a run of this pipeline writes, named for `actprm sql --pipeline FILE`: each data
/// sink's rows (a score or label sink's parts, a filter's kept rows) as the sink's name, in
/// whatever format the sink stores them; `NAME_rejects`; after `filter` also `NAME_skipped`;
/// an active run's decision records as `TRAIN_decisions`.
pub fn output_tables(file: &PipelineFile, plan: &Plan) -> Vec<(String, PathBuf)> {
    let mut tables = Vec::new();
    for name in &plan.sinks {
        let Some(data) = file.sinks.get(name).and_then(SinkStage::data) else {
            continue;
        };
        // a folder path finds the data files of any format (`sql::table_files`)
        tables.push((name.clone(), data.folder.clone()));
        if plan.job() == "filter" {
            let skipped = data.format.units_pattern("skipped");
            tables.push((format!("{name}_skipped"), data.folder.join(skipped)));
        }
        tables.push((format!("{name}_rejects"), data.folder.join("rejects")));
    }
    if let Some(TransformStage::Train(train)) =
        plan.train.as_ref().and_then(|t| file.transforms.get(t))
    {
        let name = plan.train.clone().unwrap_or_default();
        tables.push((format!("{name}_decisions"), train.output.join("decisions")));
    }
    tables
}

/// The tables `actprm sql --pipeline FILE` registers: the Parquet outputs this pipeline's run
/// wrote (those that exist yet), named as plain SQL identifiers (sink `my-kept` is `my_kept`).
pub fn sql_tables(path: &Path) -> Result<Vec<crate::sql::TableSpec>, ConfigError> {
    let checked = check_file(path, CheckOptions { skip_env: true })?;
    let tables: Vec<crate::sql::TableSpec> = output_tables(&checked.file, &checked.plan)
        .into_iter()
        .filter(|(_, at)| crate::sql::session::table_files(&at.to_string_lossy()).is_ok())
        .map(|(name, at)| crate::sql::TableSpec {
            name: name
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            path: at.display().to_string(),
        })
        .collect();
    if tables.is_empty() {
        return Err(stage_error(
            &format!("--pipeline {}", path.display()),
            format!(
                "no output of this pipeline exists yet (run `actprm run {}` first)",
                path.display()
            ),
        ));
    }
    Ok(tables)
}
