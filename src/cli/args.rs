//! Every command's flags: one clap type per command, each flattening the library's settings
//! types (the same types pipeline files deserialize), so this file only names and groups them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::experiment::ExperimentSettings;
use actprm::label::judge::JudgeConfig;
use actprm::label::LabelBudget;
use actprm::model::ModelOptions;
use actprm::pipeline::active::ActiveSettings;
use actprm::pipeline::filter::ray::RaySettings;
use actprm::pipeline::filter::FilterSettings;
use actprm::pipeline::finetune::FinetuneSettings;
use actprm::pipeline::score::{ScoreExtras, Scorer};
use actprm::pipeline::train::TrainSettings;
use actprm::score::check::CheckRule;
use actprm::score::ScoreOptions;
use actprm::select::KeepRate;
use actprm::sink::format::FormatFlag;
use actprm::source::ColumnMapping;
use actprm::sql::{OutputFormat, TableSpec};

use super::render::Output;

#[derive(Parser, Debug)]
#[command(
    name = "actprm",
    version,
    about = "Train and run Process Reward Models by active learning"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// No progress on stderr (else a bar on a terminal, a line every 10 s elsewhere).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score every step of Parquet trajectories; write scored Parquet parts and summary.json.
    Score(ScoreArgs),
    /// Convert labelled data as released (JSON Lines, ProcessBench JSON, TRL stepwise JSON Lines,
    /// PRM800K raw, Math-Shepherd raw) to Parquet (id, problem, steps, label). A record that
    /// cannot be converted is reported with its line and reason, and kept in OUTPUT.rejects.jsonl.
    Convert {
        /// Input .jsonl or .json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output Parquet file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Train the ensemble heads (tch) on stored step features; export a model directory.
    Train(TrainArgs),
    /// Fine-tune the backbone's top layers with the heads (tch) on labelled trajectories; export a
    /// model directory whose backbone actprm builds from the fine-tuned fp32 weights.
    Finetune(FinetuneArgs),
    /// Label Parquet trajectories with a judge model behind an OpenAI-compatible endpoint (only
    /// rows with `selected` = true when that column exists); write Parquet parts and summary.json.
    Label(LabelArgs),
    /// The judge on its own.
    Judge {
        #[command(subcommand)]
        command: JudgeCommand,
    },
    /// ProcessBench / PRMBench metrics of a model on labelled subsets (one file = one subset).
    Eval(EvalArgs),
    /// Score a corpus and keep the uncertain trajectories: bounded memory, exact resume, shards.
    Filter(FilterArgs),
    /// Check that filter outputs (one folder per shard) cover every input unit exactly once.
    FilterVerify {
        #[arg(long, short, required = true, num_args = 1..)]
        input: Vec<String>,
        /// Output folders of the shards.
        #[arg(required = true)]
        outputs: Vec<PathBuf>,
        #[command(flatten)]
        columns: ColumnMapping,
    },
    /// Generate a large realistic corpus by copying and recombining real trajectories.
    Generate {
        /// Labelled JSON Lines / ProcessBench JSON files to draw from.
        #[arg(long, required = true, num_args = 1..)]
        from: Vec<PathBuf>,
        #[arg(long, short)]
        output: PathBuf,
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value_t = 10)]
        files: usize,
        #[arg(long, default_value_t = 10_000)]
        row_group_rows: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write a model directory with a tiny backbone (same I/O contract) for scale and crash tests.
    TinyModel {
        #[arg(long, short)]
        output: PathBuf,
        #[arg(long, default_value_t = 32)]
        dim: usize,
        #[arg(long, default_value_t = 8)]
        heads: usize,
        /// Write into a folder that is not a model directory actprm wrote (its files are kept).
        #[arg(long)]
        overwrite: bool,
    },
    /// The streaming active loop: score -> select -> label (pool column or judge) -> train -> refresh.
    Active(Box<ActiveArgs>),
    /// The pool-based experiment: ActPRM vs random vs full data at equal label budgets.
    Experiment(ExperimentArgs),
    /// SQL over Parquet files and scored outputs: run QUERY, or open a shell without it.
    Sql(SqlArgs),
    /// Write a fresh model directory: the default backbone with newly initialised heads.
    InitModel {
        #[arg(long, short)]
        output: PathBuf,
        /// Ensemble size E.
        #[arg(long, default_value_t = 8)]
        heads: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Model name (versions are name@hash).
        #[arg(long, default_value = "minilm-actprm")]
        name: String,
        /// Write into a folder that is not a model directory actprm wrote (its files are kept).
        #[arg(long)]
        overwrite: bool,
    },
    /// Import a Hugging Face PRM checkpoint folder (Qwen2.5-Math-PRM, ActPRM, Skywork-PRM,
    /// Math-Shepherd, RLHFlow) as a model directory every command runs (see docs/models.md).
    Import {
        /// The checkpoint folder: config.json, *.safetensors (or shards + index), tokenizer.json.
        /// A Hub repository (`hf://Qwen/Qwen2.5-Math-PRM-7B`) or a store folder (`s3://b/prm/`)
        /// is fetched into the cache first.
        #[arg(long)]
        from: PathBuf,
        /// The model directory to write: swapped in whole (a model directory actprm wrote is
        /// replaced, other files there are kept), or left as it was on failure.
        #[arg(long, short)]
        output: PathBuf,
        /// Write into a folder that is not a model directory actprm wrote (its files are kept).
        #[arg(long)]
        overwrite: bool,
        /// The PRM family; `auto` reads `architectures` and the head's tensor names.
        #[arg(long, value_enum, default_value_t = actprm::model::import::Family::Auto)]
        format: actprm::model::import::Family,
        /// Dense layers of the written backbone: f32; f16 (decoders: weights and activations in
        /// f16, norms and softmax in f32: half the memory); int8 (decoders: 8-bit weights in blocks of
        /// 32, f32 activations, a quarter of f32's weight memory; BERT encoders: per-channel s8
        /// weights, u8 activations quantised per call); int8-rows (encoders only).
        #[arg(long, value_enum, default_value_t = Default::default())]
        dtype: actprm::model::import::dense::Precision,
        #[command(flatten)]
        io: Output,
    },
    /// Check a pipeline file, then run it (see docs/pipelines.md).
    Run {
        /// Pipeline YAML file.
        file: PathBuf,
    },
    /// Check a pipeline file and report every problem with file:line:column; run nothing.
    Validate {
        /// Pipeline YAML file.
        file: PathBuf,
        /// Skip the environment checks (input files and columns, models, output folders, judge).
        #[arg(long)]
        skip_env: bool,
    },
    /// Print the JSON Schema of pipeline files.
    Schema,
}

#[derive(Subcommand, Debug)]
pub enum JudgeCommand {
    /// The judge's ProcessBench-style F1 on labelled files (one file = one subset), to check a
    /// judge and prompt before spending money on it.
    Eval {
        /// ProcessBench .json arrays, .jsonl, or Parquet with a label column.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        judge: JudgeConfig,
        /// Answer cache directory (default: no cache).
        #[arg(long)]
        cache: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
}

/// Input files and output folder of a command that streams Parquet.
#[derive(Args, Debug, Clone)]
pub struct InputOutput {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// Output folder.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub extras: ScoreExtras,
    #[command(flatten)]
    pub format: FormatFlag,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub filter: FilterSettings,
    #[command(flatten)]
    pub format: FormatFlag,
    #[command(flatten)]
    pub ray: RaySettings,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ActiveArgs {
    /// The pool (with a label, ratings, hard_labels or labels column unless a judge labels it),
    /// and the output folder (model/, decisions/, eval.jsonl, loop-state.json, summary.json).
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub keep: KeepRate,
    #[command(flatten)]
    pub budget: LabelBudget,
    #[command(flatten)]
    pub labels: actprm::label::LabelOutput,
    #[command(flatten)]
    pub active: ActiveSettings,
    /// Label by an LLM judge instead of the pool's label column when --judge-url is given
    /// (answers cached in OUTPUT/judge-cache, so --resume pays only for new ones).
    #[command(flatten)]
    pub judge: JudgeConfig,
    /// Start again in a folder holding an earlier run (only the loop's own files are removed;
    /// else it is refused: --resume continues it).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct LabelArgs {
    #[command(flatten)]
    pub io: InputOutput,
    #[command(flatten)]
    pub columns: ColumnMapping,
    #[command(flatten)]
    pub judge: JudgeConfig,
    #[command(flatten)]
    pub run: actprm::label::LabelRun,
    #[command(flatten)]
    pub labels: actprm::label::LabelOutput,
    #[command(flatten)]
    pub format: FormatFlag,
    /// Replace an earlier run's parts, rejects and summary in OUTPUT (else they are refused).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Step-feature stores written by `actprm score --features`.
    #[arg(long, required = true, num_args = 1..)]
    pub features: Vec<PathBuf>,
    /// Output model directory (manifest, heads, anchors, checkpoint).
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: TrainSettings,
}

#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Labelled trajectories: ProcessBench .json arrays, .jsonl, or .parquet with a label column.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output model directory.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: FinetuneSettings,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// ProcessBench .json arrays, .jsonl, .parquet with a label column, or .arrow step features.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Fixed threshold; default: the model's own tau.
    #[arg(long, conflicts_with = "tau_from_first")]
    pub tau: Option<f32>,
    /// Choose tau on the first subset and reuse it on the others.
    #[arg(long)]
    pub tau_from_first: bool,
    /// Join the exact arithmetic check to the model: `min` predicts the earlier of the model's
    /// first error and the first step that states a false equality; default: the model's rule.
    #[arg(long, value_enum)]
    pub check: Option<CheckRule>,
    #[command(flatten)]
    pub batching: actprm::score::Batching,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Step features of the labelled pool (`actprm score --features`).
    #[arg(long)]
    pub pool: PathBuf,
    /// Development feature stores; the file stem names the subset.
    #[arg(long, required = true, num_args = 1..)]
    pub dev: Vec<PathBuf>,
    /// Output folder: results.json, table.md, curve.svg, budget.svg.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub settings: ExperimentSettings,
}

#[derive(Args, Debug, Clone)]
pub struct SqlArgs {
    /// SQL to run (statements separated by ';'); without it, the shell (reading stdin when piped).
    pub query: Option<String>,
    /// Register a table NAME=PATH: a Parquet file, a glob, or an actprm output folder (score and
    /// label: part-*.parquet; filter: kept/*.parquet; active: scored/part-*.parquet).
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<TableSpec>,
    /// Register the Parquet outputs a pipeline file's run wrote, named after its sinks
    /// (SINK, SINK_rejects; after filter SINK_skipped; after train TRAIN_decisions).
    #[arg(long = "pipeline", value_name = "FILE")]
    pub pipelines: Vec<PathBuf>,
    /// table, csv, json (JSON Lines) or parquet; default: from --output's extension, else table on
    /// a terminal and csv otherwise.
    #[arg(long)]
    pub format: Option<OutputFormat>,
    /// Write the results to this file instead of stdout (required for --format parquet).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Let COPY, INSERT and CREATE EXTERNAL TABLE write under this folder (default: no writes).
    #[arg(long, value_name = "DIR")]
    pub allow_write: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Thresholds prm_score applies.
    #[command(flatten)]
    pub score: ScoreOptions,
}
