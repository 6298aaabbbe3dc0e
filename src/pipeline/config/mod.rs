//! Pipeline files: one YAML file = one dataflow graph of named sources, transforms and sinks,
//! checked completely before any work starts, then compiled into the same jobs the CLI builds.
//!
//! The serde types below are the format: the reader (`parse.rs`) fills them, `actprm schema`
//! prints their JSON Schema, and every option has the CLI flag's name and default.

pub mod checks;
pub mod compile;
pub mod env_check;
pub mod graph;
pub mod interpolate;
mod offline;
pub mod outputs;
pub mod parse;
pub mod problem;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::experiment::ExperimentSettings;
use crate::label::LabelBudget;
use crate::pipeline::active::ActiveSettings;
use crate::pipeline::filter::FilterSettings;
use crate::pipeline::finetune::FinetuneSettings;
use crate::pipeline::score::{ScoreExtras, ScoreSettings};
use crate::pipeline::train::TrainSettings;
use crate::source::ColumnMapping;

pub use compile::{run_file, Plan, RunOutcome};
pub use problem::{Problem, Report};

/// The whole file. Stage names are unique across `sources`, `transforms` and `sinks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "actprm pipeline file")]
pub struct PipelineFile {
    /// Models, declared once and referred to by name from `score` stages.
    #[serde(default)]
    pub models: BTreeMap<String, ModelDecl>,
    /// LLM judge endpoints, declared once and referred to by name from `label` stages.
    #[serde(default)]
    pub judges: BTreeMap<String, JudgeDecl>,
    /// Where trajectories come from.
    pub sources: BTreeMap<String, SourceStage>,
    /// Stages that consume and produce streams of rows.
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformStage>,
    /// Where results go.
    pub sinks: BTreeMap<String, SinkStage>,
}

/// A model directory and where it runs: `--model` (here `path`), `--device`, `--threads`.
pub type ModelDecl = crate::model::ModelOptions;

/// An OpenAI-compatible judge endpoint: the judge flags, with `url` and `model` required. The API
/// key is read from the environment variable named by `api_key_env`, never written in the file.
pub type JudgeDecl = crate::label::judge::JudgeConfig;

/// A stage section's types, each listed once as `"type" => Variant(Keys)`: the enum (tagged by
/// `type` for serde and the JSON Schema), its type names (`TYPES`, aliases included), each
/// stage's `kind`, and the reader's dispatch (`read`): a new stage type is one line here (and,
/// for a transform or sink, its arm of `inputs`).
macro_rules! stage_types {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $kind:literal $(| $alias:literal)* => $variant:ident($keys:ty)
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        pub enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $kind $(, alias = $alias)*)]
                $variant($keys),
            )*
        }

        impl $name {
            /// The `type` names a file may give, aliases included.
            pub const TYPES: &'static [&'static str] = &[$($kind, $($alias,)*)*];

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $kind,)*
                }
            }

            /// The stage of type `kind`, its keys read by `reader` (`None`: reported there).
            pub(crate) fn read(kind: &str, reader: &mut impl parse::ReadKeys) -> Option<Self> {
                match kind {
                    $($kind $(| $alias)* => reader.read::<$keys>($kind).map(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

stage_types! {
    pub enum SourceStage {
        /// Parquet files, globs or folders (`--input`).
        "parquet" => Parquet(ParquetSource),
        /// Labelled JSON Lines files (converted to Parquet on the fly, like `actprm convert`).
        "jsonl" => Jsonl(LabelledSource),
        /// ProcessBench JSON arrays (converted to Parquet on the fly, like `actprm convert`).
        "processbench" => Processbench(LabelledSource),
        /// Step-feature stores (`actprm score --features`): what `fit` and `experiment` read.
        "features" => Features(LabelledSource),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParquetSource {
    /// Parquet files, globs or folders.
    pub paths: Vec<String>,
    #[serde(flatten)]
    pub columns: ColumnMapping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelledSource {
    /// Input files.
    pub paths: Vec<PathBuf>,
}

stage_types! {
    pub enum TransformStage {
        /// A DataFusion SQL query over the input, registered as table `input`.
        "sql" => Sql(SqlStage),
        /// Score every step (`actprm score`).
        "score" => Score(ScoreStage),
        /// Keep the uncertain trajectories (`actprm filter`; `select` is the older name).
        "filter" | "select" => Filter(FilterStage),
        /// Label the selected trajectories: from the pool's own label column, or by an LLM judge.
        "label" => Label(LabelStage),
        /// Train the heads on the labelled trajectories, refreshing the scorer (`actprm active`).
        "train" => Train(TrainStage),
        /// Train the heads on stored step features (`actprm train`), reading a `features` source.
        "fit" => Fit(FitStage),
        /// Fine-tune the encoder's top layers with the heads on labelled trajectories (`actprm
        /// finetune`), reading a jsonl, processbench or labelled parquet source.
        "finetune" => Finetune(FinetuneStage),
        /// The pool-based experiment over stored features (`actprm experiment`), reading a
        /// `features` source as its pool.
        "experiment" => Experiment(ExperimentStage),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlStage {
    pub inputs: Vec<String>,
    /// The query; the input is the table `input`.
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreStage {
    pub inputs: Vec<String>,
    /// A name under `models`; absent: the embedded default model on the CPU.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(flatten)]
    pub settings: ScoreSettings,
    #[serde(flatten)]
    pub extras: ScoreExtras,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FilterStage {
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub settings: FilterSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    /// The pool's own label column (label, ratings, hard_labels or labels).
    Pool,
    /// An LLM judge named under `judges`.
    Judge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelStage {
    pub inputs: Vec<String>,
    pub mode: LabelMode,
    /// A name under `judges` (mode: judge).
    #[serde(default)]
    pub judge: Option<String>,
    #[serde(flatten)]
    pub budget: LabelBudget,
    #[serde(flatten)]
    pub output: crate::label::LabelOutput,
    /// The answer cache and batch size of a judge (mode: judge).
    #[serde(flatten)]
    pub run: crate::label::LabelRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainStage {
    pub inputs: Vec<String>,
    /// Output folder (model/, decisions/, eval.jsonl, loop-state.json, summary.json).
    pub output: PathBuf,
    #[serde(flatten)]
    pub settings: ActiveSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FitStage {
    pub inputs: Vec<String>,
    /// Output model directory (manifest, heads, anchors, checkpoint).
    pub output: PathBuf,
    #[serde(flatten)]
    pub settings: TrainSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FinetuneStage {
    pub inputs: Vec<String>,
    /// Output model directory.
    pub output: PathBuf,
    #[serde(flatten)]
    pub settings: FinetuneSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExperimentStage {
    pub inputs: Vec<String>,
    /// Development feature stores; the file stem names the subset.
    pub dev: Vec<PathBuf>,
    /// Output folder: results.json, table.md, curve.svg, budget.svg.
    pub output: PathBuf,
    #[serde(flatten)]
    pub settings: ExperimentSettings,
}

stage_types! {
    pub enum SinkStage {
        /// A folder of Parquet files (score, label: part-*.parquet; filter: kept/), with rejects/,
        /// summary.json and a dataset card.
        "parquet" => Parquet(PathSink),
        /// The same folder with the rows as JSON Lines (part-*.jsonl; filter: kept/*.jsonl).
        "jsonl" => Jsonl(PathSink),
        /// The same folder with the rows as Arrow IPC files (part-*.arrow; filter: kept/*.arrow).
        "arrow_ipc" => ArrowIpc(PathSink),
        /// A Hugging Face data set folder: data/train-*.parquet and its README.md card.
        "hf_dataset" => HfDataset(PathSink),
        /// A summary table printed to the terminal.
        "table" => Table(TableSink),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathSink {
    pub inputs: Vec<String>,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSink {
    pub inputs: Vec<String>,
    /// Print JSON instead of a table.
    #[serde(default)]
    pub json: bool,
}

impl TransformStage {
    pub fn inputs(&self) -> &[String] {
        match self {
            Self::Sql(s) => &s.inputs,
            Self::Score(s) => &s.inputs,
            Self::Filter(s) => &s.inputs,
            Self::Label(s) => &s.inputs,
            Self::Train(s) => &s.inputs,
            Self::Fit(s) => &s.inputs,
            Self::Finetune(s) => &s.inputs,
            Self::Experiment(s) => &s.inputs,
        }
    }

    /// A stage that runs on its whole input at once (a recipe over stored data), not as rows
    /// stream: its source feeds it alone and it writes its own `output`.
    pub fn offline(&self) -> bool {
        matches!(self, Self::Fit(_) | Self::Finetune(_) | Self::Experiment(_))
    }
}

impl SinkStage {
    pub fn inputs(&self) -> &[String] {
        match self {
            Self::Parquet(s) | Self::Jsonl(s) | Self::ArrowIpc(s) | Self::HfDataset(s) => &s.inputs,
            Self::Table(s) => &s.inputs,
        }
    }

    /// Where a data sink writes and in which format (`None`: a table sink).
    pub fn data(&self) -> Option<crate::sink::DataOutput> {
        self.data_sink()
            .map(|(format, sink)| crate::sink::DataOutput {
                folder: sink.path.clone(),
                format,
            })
    }

    /// A data sink's format and its keys (`None`: a table sink).
    fn data_sink(&self) -> Option<(crate::sink::DataFormat, &PathSink)> {
        use crate::sink::DataFormat;
        Some(match self {
            Self::Parquet(s) => (DataFormat::Parquet, s),
            Self::Jsonl(s) => (DataFormat::Jsonl, s),
            Self::ArrowIpc(s) => (DataFormat::ArrowIpc, s),
            Self::HfDataset(s) => (DataFormat::HfDataset, s),
            Self::Table(_) => return None,
        })
    }
}

/// The JSON Schema of the pipeline format (`actprm schema`, `schemas/pipeline.schema.json`).
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PipelineFile)).unwrap_or_default()
}

/// Options of `actprm validate` / `actprm run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Skip the environment checks (files, columns, models, output folders, judge endpoint).
    pub skip_env: bool,
}

/// A pipeline file that passed every check, ready to run.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: PipelineFile,
    pub plan: Plan,
    /// Positions, so stages this build cannot run are still reported at their line.
    pub spans: parse::Spans,
    /// The file's name and text as written, for located reports.
    pub name: String,
    pub text: String,
    interpolated: interpolate::Interpolated,
}

impl Checked {
    /// A report of problems located in the interpolated text (as `spans` are).
    pub fn report(&self, problems: Vec<Problem>) -> Report {
        let problems = problems
            .into_iter()
            .map(|p| self.interpolated.map_back(p))
            .collect();
        Report::new(&self.name, &self.text, problems)
    }
}

/// Errors of reading, checking and running a pipeline file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found, rendered with `file:line:column` and the offending line.
    #[error("{0}")]
    Invalid(Report),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("{context}: {message}")]
    Stage { context: String, message: String },
}

/// Reads, interpolates, parses and checks a pipeline file, collecting every problem.
pub fn check_file(path: &Path, options: CheckOptions) -> Result<Checked, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_text(
        &path.display().to_string(),
        &text,
        &|name| std::env::var(name).ok(),
        options,
    )
}

/// [`check_file`] over text already read; `env` looks up environment variables.
pub fn check_text(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    options: CheckOptions,
) -> Result<Checked, ConfigError> {
    let invalid = |problems: Vec<Problem>| ConfigError::Invalid(Report::new(name, text, problems));
    let interpolated = interpolate::interpolate(text, env);
    if !interpolated.problems.is_empty() {
        // substituted blanks would only cause follow-on problems: report these alone
        return Err(invalid(interpolated.problems));
    }
    let parsed = parse::parse(&interpolated.text);
    let mut problems = parsed.problems;
    let mut plan = None;
    if let Some(file) = &parsed.file {
        problems.extend(graph::check(file, &parsed.spans));
        if problems.is_empty() {
            match compile::plan(file, &parsed.spans) {
                Ok(p) => plan = Some(p),
                Err(p) => problems.extend(p),
            }
        }
        if problems.is_empty() && !options.skip_env {
            problems.extend(env_check::check(file, &parsed.spans, env));
        }
    }
    let problems: Vec<Problem> = problems
        .into_iter()
        .map(|p| interpolated.map_back(p))
        .collect();
    match (parsed.file, plan) {
        (Some(file), Some(plan)) if problems.is_empty() => Ok(Checked {
            file,
            plan,
            spans: parsed.spans,
            name: name.to_string(),
            text: text.to_string(),
            interpolated,
        }),
        _ => Err(invalid(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::SinkStage;
    use crate::sink::DataFormat;

    /// A data sink's `type` is its format's name, and the sink writes that format.
    #[test]
    fn a_data_sink_type_is_its_format_name() {
        for format in DataFormat::ALL {
            let declared =
                serde_json::json!({"type": format.sink_type(), "inputs": [], "path": "x"});
            let sink: SinkStage = serde_json::from_value(declared).unwrap();
            assert_eq!(sink.kind(), format.sink_type());
            assert_eq!(sink.data().map(|d| d.format), Some(format));
        }
    }
}
