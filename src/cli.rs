//! The command table. Flags are defined once here and fill the same job structs that pipeline
//! files fill.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use actprm::model::{Device, HeadsWeights, LoadedModel, RuntimeOptions};
use actprm::pipeline::{run_score, ScoreJob};
use actprm::score::ScoreOptions;
use actprm::select::SelectionRule;
use actprm::source::ColumnMapping;

#[derive(Parser, Debug)]
#[command(name = "actprm", version, about = "Train and run Process Reward Models by active learning")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score every step of Parquet trajectories; write scored Parquet parts and summary.json.
    Score(ScoreArgs),
    /// Convert labelled JSON Lines / ProcessBench JSON to Parquet (id, problem, steps, label).
    Convert {
        /// Input .jsonl or .json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output Parquet file.
        #[arg(long, short)]
        output: PathBuf,
    },
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
    },
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// Model directory (manifest.json + files); default: the embedded default model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// cpu, cuda or cuda:N (CUDA fails loudly if its provider cannot start).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl ModelArgs {
    fn runtime(&self) -> RuntimeOptions {
        RuntimeOptions { device: self.device, intra_threads: self.threads }
    }
}

#[derive(Args, Debug, Clone)]
struct SelectArgs {
    /// First-error threshold; default: the model's own tau.
    #[arg(long)]
    tau: Option<f32>,
    /// A step is confident only if max(mu, 1 - mu) >= delta_pred ...
    #[arg(long, default_value_t = 0.9)]
    delta_pred: f32,
    /// ... and its std over heads <= delta_std.
    #[arg(long, default_value_t = 0.01)]
    delta_std: f32,
}

#[derive(Args, Debug, Clone)]
struct ScoreArgs {
    /// Parquet files, globs or folders.
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output folder (part-*.parquet, rejects/, summary.json).
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Problem column (default: problem, question, prompt, input or instruction).
    #[arg(long)]
    problem_column: Option<String>,
    /// Steps column, a list of strings (default: steps, completions or model_output_steps).
    #[arg(long)]
    steps_column: Option<String>,
    /// Rows per batch read from Parquet.
    #[arg(long, default_value_t = 64)]
    batch_rows: usize,
    /// Padded tokens per backbone call.
    #[arg(long, default_value_t = 8192)]
    token_budget: usize,
    /// Also write per-head probabilities (step_head_probs).
    #[arg(long)]
    head_probs: bool,
    /// Also write step features (Arrow IPC) for `actprm train`.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Swap in this model directory's heads whenever they change (hot refresh from a trainer).
    #[arg(long)]
    watch_model: Option<PathBuf>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn validate_thresholds(s: &SelectArgs) -> Result<(), String> {
    for (name, v) in [("delta_pred", s.delta_pred), ("delta_std", s.delta_std)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("--{} {v} is outside 0..1", name.replace('_', "-")));
        }
    }
    if let Some(t) = s.tau.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(format!("--tau {t} is outside 0..1"));
    }
    Ok(())
}

pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Score(a) => {
            validate_thresholds(&a.select)?;
            let mut job = ScoreJob::new(a.input.clone(), a.output.clone());
            job.model = a.model.model.clone();
            job.runtime = a.model.runtime();
            job.columns = ColumnMapping { problem: a.problem_column.clone(), steps: a.steps_column.clone() };
            job.score = ScoreOptions {
                tau: a.select.tau,
                rule: SelectionRule { delta_pred: a.select.delta_pred, delta_std: a.select.delta_std },
                token_budget: a.token_budget,
                ..ScoreOptions::default()
            };
            job.batch_rows = a.batch_rows;
            job.with_head_probs = a.head_probs;
            job.features = a.features.clone();
            job.watch_model = a.watch_model.clone();
            job.progress = std::io::stderr().is_terminal();
            let summary = run_score(&job, None)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                summary.print();
                println!("output         {}", a.output.display());
            }
        }
        Command::Convert { inputs, output } => {
            let mut records = Vec::new();
            for path in &inputs {
                records.extend(actprm::source::jsonl::read_labelled(path)?);
            }
            let batch = actprm::source::jsonl::to_record_batch(&records);
            let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("converted").to_string();
            let mut writer = actprm::sink::PartWriter::new(&dir, &stem, usize::MAX)?;
            writer.write(&batch)?;
            let parts = writer.finish()?;
            if let Some(part) = parts.first() {
                std::fs::rename(part, &output)?;
            }
            println!("wrote {} trajectories to {}", records.len(), output.display());
        }
        Command::InitModel { output, heads, seed, name } => {
            let base = LoadedModel::embedded()?;
            let weights = HeadsWeights::init(heads, base.manifest.hidden_size, seed);
            let bytes = weights.to_onnx(&[("actprm.seed", seed.to_string())]);
            let mut model = base;
            model.manifest.name = name;
            model.manifest.ensemble_size = heads;
            model.manifest.seed = seed;
            model.manifest.provenance = format!("heads initialised by `actprm init-model --heads {heads} --seed {seed}`");
            model.write_dir(&output, &bytes, Some(&bytes))?;
            let written = LoadedModel::from_dir(&output)?;
            println!("wrote {} ({})", output.display(), written.version());
        }
    }
    Ok(())
}
