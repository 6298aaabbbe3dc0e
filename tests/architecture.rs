//! The architecture, enforced: every flag of `score`, `filter`, `label`, `active`, `train`,
//! `finetune` and `experiment` is a key of a pipeline file with the same default (both come from one settings type), and no module uses a
//! higher layer than its own (docs/architecture.md).

#[allow(dead_code)]
#[path = "../src/cli/mod.rs"]
mod cli;

use clap::CommandFactory;
use std::collections::BTreeSet;
use std::path::Path;

use cli::Cli;
use serde_json::Value;

use actprm::label::judge::JudgeConfig;
use actprm::model::ModelOptions;
use actprm::pipeline::config::{
    ExperimentStage, FilterStage, FinetuneStage, FitStage, LabelStage, LabelledSource,
    ParquetSource, PathSink, ScoreStage, TableSink, TrainStage,
};

fn properties<T: schemars::JsonSchema>(section: &str) -> Vec<(String, String, Value)> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap();
    schema["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (section.to_string(), k.clone(), v["default"].clone()))
        .collect()
}

/// The file keys each command's pipeline shape offers, as (where, key, default).
fn file_keys(command: &str) -> Vec<(String, String, Value)> {
    let mut keys = properties::<TableSink>("sink (table)");
    match command {
        "train" => {
            keys.extend(properties::<LabelledSource>("source (features)"));
            keys.extend(properties::<FitStage>("transform (fit)"));
            return keys;
        }
        "finetune" => {
            keys.extend(properties::<LabelledSource>("source (jsonl)"));
            keys.extend(properties::<FinetuneStage>("transform (finetune)"));
            return keys;
        }
        "experiment" => {
            keys.extend(properties::<LabelledSource>("source (features)"));
            keys.extend(properties::<ExperimentStage>("transform (experiment)"));
            return keys;
        }
        _ => {}
    }
    keys.extend(properties::<ParquetSource>("source (parquet)"));
    keys.extend(properties::<ModelOptions>("models.NAME"));
    keys.extend(properties::<ScoreStage>("transform (score)"));
    match command {
        "score" => keys.extend(properties::<PathSink>("sink (parquet)")),
        "filter" => {
            keys.extend(properties::<FilterStage>("transform (filter)"));
            keys.extend(properties::<PathSink>("sink (parquet)"));
        }
        "label" => {
            keys.extend(properties::<LabelStage>("transform (label)"));
            keys.extend(properties::<PathSink>("sink (parquet)"));
            keys.extend(properties::<JudgeConfig>("judges.NAME"));
        }
        "active" => {
            keys.extend(properties::<FilterStage>("transform (filter)"));
            keys.extend(properties::<LabelStage>("transform (label)"));
            keys.extend(properties::<TrainStage>("transform (train)"));
            keys.extend(properties::<JudgeConfig>("judges.NAME"));
        }
        _ => unreachable!(),
    }
    keys
}

/// Flags whose file key has another name because the file says it by its place: (the section
/// the key must be in, or "" for any; the key, or "" for the flag's own name).
fn file_key(command: &str, id: &str) -> Option<(&'static str, &'static str)> {
    Some(match (command, id) {
        ("train", "features") | ("experiment", "pool") => ("source (features)", "paths"),
        ("finetune", "files") => ("source (jsonl)", "paths"),
        ("train", "output" | "model") => ("transform (fit)", ""),
        ("finetune", "output" | "model") => ("transform (finetune)", ""),
        ("experiment", "output") => ("transform (experiment)", "output"),
        (_, "input") => ("source (parquet)", "paths"),
        ("active", "output") => ("transform (train)", "output"),
        // `picks` is a key of both stages, each with its command's default
        ("active", "picks") => ("transform (train)", ""),
        ("filter", "picks") => ("transform (filter)", ""),
        (_, "output") => ("sink (parquet)", "path"),
        (_, "model") => ("models.NAME", "path"),
        (_, "judge_url") => ("judges.NAME", "url"),
        (_, "judge_model") => ("judges.NAME", "model"),
        // a pipeline file's rerun always replaces its earlier score outputs
        ("score" | "active", "overwrite") => return None,
        // a data sink's `type` (parquet, jsonl, arrow_ipc, hf_dataset) is its format; the
        // sinks of each type run in tests/loaders.rs
        ("score" | "filter" | "label", "format") => return None,
        // a pipeline file's rerun always replaces its earlier label outputs
        ("label", "overwrite") => return None,
        // each Ray task reruns the command line, so `--ray` is a flag of the command only
        ("filter", "ray" | "ray_retries" | "ray_units_per_task" | "ray_unit") => return None,
        _ => ("", ""),
    })
}

fn same_default(clap_default: Option<&str>, file_default: &Value) -> bool {
    match (clap_default, file_default) {
        (None, Value::Null) => true,
        // a switch (`--resume`) is off unless given
        (None, Value::Bool(false)) => true,
        (None, Value::Array(a)) => a.is_empty(),
        (Some(c), Value::Bool(b)) => c == b.to_string(),
        (Some(c), Value::Number(n)) => c
            .parse::<f64>()
            .is_ok_and(|c| (c as f32) == (n.as_f64().unwrap() as f32)),
        (Some(c), Value::String(s)) => c == s,
        // a list flag takes its items comma-separated
        (Some(c), Value::Array(items)) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect();
            c == items.join(",")
        }
        _ => false,
    }
}

#[test]
fn every_flag_is_a_file_key_with_the_same_default() {
    let cli = Cli::command();
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in [
        "score",
        "filter",
        "label",
        "active",
        "train",
        "finetune",
        "experiment",
    ] {
        let command = cli.find_subcommand(name).unwrap();
        let keys = file_keys(name);
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" {
                continue;
            }
            let Some((section, key)) = file_key(name, id) else {
                continue;
            };
            let key = if key.is_empty() { id } else { key };
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let clap_default = defaults.first().map(String::as_str);
            match keys
                .iter()
                .find(|(place, k, _)| k == key && (section.is_empty() || place == section))
            {
                None => problems.push(format!(
                    "`actprm {name} --{}` has no pipeline-file key `{key}`",
                    arg.get_long().unwrap_or(id)
                )),
                Some((place, _, file_default))
                    if !matches!(key, "paths" | "path" | "output")
                        && !same_default(clap_default, file_default) =>
                {
                    problems.push(format!(
                        "`actprm {name} --{}` defaults to {clap_default:?}, `{key}` in {place} to {file_default}",
                        arg.get_long().unwrap_or(id)
                    ))
                }
                Some(_) => checked += 1,
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // score alone has more than 15 flags: the loop really looked at them
    assert!(checked > 120, "only {checked} flags checked");
}

#[test]
fn the_judge_flags_are_the_judge_declaration() {
    // `label` and `judge eval` take the same judge flags as `active`
    let cli = Cli::command();
    let judge_keys = properties::<JudgeConfig>("judges.NAME");
    for name in ["label", "active"] {
        let command = cli.find_subcommand(name).unwrap();
        for (_, key, _) in &judge_keys {
            let id = match key.as_str() {
                "url" => "judge_url",
                "model" => "judge_model",
                k => k,
            };
            assert!(
                command.get_arguments().any(|a| a.get_id() == id),
                "`actprm {name}` has no flag for the judge key `{key}`"
            );
        }
    }
}

/// Lowest first. A module may use modules of strictly lower layers only.
const LAYERS: &[&[&str]] = &[
    &["location", "failpoint", "settings"],
    &["limits", "report", "rng", "runtime", "sink"],
    &["model", "formats", "label", "select"],
    &["tokenise", "source"],
    &["score"],
    &["train", "eval", "sql"],
    &["experiment"],
    &["pipeline"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::NAME` modules a file refers to.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer(&module) else {
            problems.push(format!("src/{module}: not in any layer of tests/layers.rs"));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("crate::{"),
            "{}: name modules one by one",
            rel.display()
        );
        for used in uses(&text).into_iter().filter(|u| *u != module) {
            checked += 1;
            match layer(&used) {
                Some(l) if l < own => {}
                Some(_) => problems.push(format!(
                    "src/{}: `{module}` uses `crate::{used}`, which is not below it",
                    rel.display()
                )),
                None => problems.push(format!(
                    "src/{}: uses `crate::{used}`, which is in no layer",
                    rel.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 100, "only {checked} references checked");
}
