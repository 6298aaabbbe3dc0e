//! What a pipeline's run leaves behind, and how others find it: the Arrow IPC sink, and the
//! tables `actprm sql --pipeline FILE` registers.

use std::path::{Path, PathBuf};

use super::compile::{stage_error, Plan};
use super::*;

/// The scored parts as one Arrow IPC file, written under a temporary name and renamed.
pub(super) fn write_ipc(dir: &Path, parts: &[String], target: &Path) -> Result<(), ConfigError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let err = |e: &dyn std::fmt::Display| stage_error(&target.display().to_string(), e);
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
    }
    let tmp = crate::sink::atomic::temp_path(target, &crate::sink::atomic::process_tag());
    let mut writer: Option<arrow::ipc::writer::FileWriter<std::fs::File>> = None;
    for part in parts {
        let file = std::fs::File::open(dir.join(part)).map_err(|e| err(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| err(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(&e))?;
            if writer.is_none() {
                let out = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
                writer = Some(
                    arrow::ipc::writer::FileWriter::try_new(out, &batch.schema())
                        .map_err(|e| err(&e))?,
                );
            }
            if let Some(w) = writer.as_mut() {
                w.write(&batch).map_err(|e| err(&e))?;
            }
        }
    }
    match writer {
        Some(mut w) => {
            w.finish().map_err(|e| err(&e))?;
            crate::sink::atomic::commit(&tmp, target).map_err(|e| err(&e))?;
        }
        None => return Err(err(&"no scored rows to write")),
    }
    Ok(())
}

/// The Parquet tables a run of this pipeline writes, named for `actprm sql --pipeline FILE`:
/// a score sink's parts as the sink's name; after `filter`, `NAME` (kept rows), `NAME_skipped`
/// and `NAME_rejects`; an active run's decision records as `TRAIN_decisions`.
pub fn output_tables(file: &PipelineFile, plan: &Plan) -> Vec<(String, PathBuf)> {
    let mut tables = Vec::new();
    for name in &plan.sinks {
        if let Some(SinkStage::Parquet(sink)) = file.sinks.get(name) {
            match plan.job() {
                "filter" => {
                    tables.push((name.clone(), sink.path.join("kept")));
                    tables.push((format!("{name}_skipped"), sink.path.join("skipped")));
                    tables.push((format!("{name}_rejects"), sink.path.join("rejects")));
                }
                _ => {
                    tables.push((name.clone(), sink.path.clone()));
                    tables.push((format!("{name}_rejects"), sink.path.join("rejects")));
                }
            }
        }
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
    let has_parquet = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
    };
    let tables: Vec<crate::sql::TableSpec> = output_tables(&checked.file, &checked.plan)
        .into_iter()
        .filter(|(_, dir)| has_parquet(dir))
        .map(|(name, dir)| crate::sql::TableSpec {
            name: name
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            path: dir.display().to_string(),
        })
        .collect();
    if tables.is_empty() {
        return Err(stage_error(
            &format!("--pipeline {}", path.display()),
            format!(
                "no Parquet output of this pipeline exists yet (run `actprm run {}` first)",
                path.display()
            ),
        ));
    }
    Ok(tables)
}
