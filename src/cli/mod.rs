//! The command table: parses flags and renders reports, nothing else. Every flag is a field of a
//! library settings type (flattened here), the same type a pipeline file's stage deserializes,
//! so a flag and its file key cannot drift apart (tests/architecture.rs checks it).

mod args;
mod render;

pub use args::*;

use clap::Parser;

use actprm::eval::judge::run_judge_eval;
use actprm::eval::model::{evaluate_files, TauRule};
use actprm::pipeline::config::{CheckOptions, ConfigError};
use actprm::pipeline::filter::ray::worker_args;
use actprm::pipeline::stage_list::{LabelStep, StageList};
use actprm::source::remote::localise_paths;
use actprm::sql::SqlConfig;
use render::render;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Parses the command line, runs the command, prints a clear error.
pub fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("actprm: error: {e}");
        std::process::exit(1);
    }
}

/// A pipeline file's problems are printed as they are (located, one after another), not as one
/// `actprm: error:` line.
fn pipeline_file<T>(result: std::result::Result<T, ConfigError>) -> Result<T> {
    match result {
        Err(ConfigError::Invalid(report)) => {
            eprintln!("{report}");
            std::process::exit(1);
        }
        other => Ok(other?),
    }
}

pub fn run(cli: Cli) -> Result {
    let progress = || !cli.quiet;
    match cli.command {
        Command::Run { file } => {
            let outcome = pipeline_file(actprm::pipeline::config::run_file(&file, progress()))?;
            render::run_outcome(&outcome);
        }
        Command::Validate { file, skip_env } => {
            let checked = pipeline_file(actprm::pipeline::config::check_file(
                &file,
                CheckOptions { skip_env },
            ))?;
            println!(
                "{}: ok ({} job{})",
                file.display(),
                checked.plan.job(),
                if skip_env {
                    "; environment not checked"
                } else {
                    ""
                }
            );
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&actprm::pipeline::config::schema())?
            );
        }
        Command::Score(a) => {
            let stages = StageList::score(a.io.input, a.io.output.clone(), a.scorer, a.extras)
                .with_format(a.format.format);
            let job = stages.with_run(a.overwrite, progress()).job()?;
            render(&job.run()?, &a.output, Some(&a.io.output))?;
        }
        Command::Filter(a) => {
            let stages = StageList::filter(a.io.input, a.io.output, a.scorer, a.filter)
                .with_format(a.format.format);
            let mut job = stages.with_run(false, progress()).job()?;
            if let Some(filter) = job.filter_mut() {
                // a Ray task runs the units its driver gave it
                filter.units = a.ray.ray_unit.clone();
            }
            let outcome = match &a.ray.ray {
                Some(address) => {
                    job.run_on_ray(address, &a.ray, worker_args(std::env::args().skip(1)))?
                }
                None => job.run()?,
            };
            render(&outcome, &a.output, None)?;
        }
        Command::Active(a) => {
            let a = *a;
            let label = LabelStep {
                judge: a.judge.is_given().then_some(a.judge),
                budget: a.budget,
                format: a.labels.label_format,
                ..LabelStep::judge(Default::default(), Some(a.io.output.join("judge-cache")))
            };
            let stages = StageList::active(
                a.io.input,
                a.io.output.clone(),
                a.scorer,
                a.keep,
                label,
                a.active,
            );
            let job = stages.with_run(a.overwrite, progress()).job()?;
            render(&job.run()?, &a.output, Some(&a.io.output))?;
        }
        Command::Label(a) => {
            let label = LabelStep {
                batch_rows: a.run.batch_rows,
                format: a.labels.label_format,
                ..LabelStep::judge(a.judge, a.run.cache_for(&a.io.output))
            };
            let stages = StageList::label(a.io.input, a.io.output.clone(), a.columns, label)
                .with_format(a.format.format);
            let job = stages.with_run(a.overwrite, progress()).job()?;
            render(&job.run()?, &a.output, Some(&a.io.output))?;
        }
        Command::Judge {
            command:
                JudgeCommand::Eval {
                    files,
                    judge,
                    cache,
                    output,
                },
        } => {
            let files = localise_paths(&files)?;
            let report = run_judge_eval(
                &files,
                &judge.with_cache(cache),
                actprm::report::Log::default(),
            )?;
            render(&report, &output, None)?;
        }
        Command::Eval(a) => {
            let loaded = a.model.open()?;
            let rule = if a.tau_from_first {
                TauRule::FromFirstSubset
            } else {
                TauRule::Fixed(a.tau.unwrap_or(loaded.manifest.tau))
            };
            let check = a.check.unwrap_or(loaded.manifest.check);
            let report = evaluate_files(
                &localise_paths(&a.files)?,
                &loaded,
                &a.model.runtime(),
                rule,
                check,
                a.batching,
            )?;
            render(&report, &a.output, None)?;
        }
        Command::Train(a) => {
            let report =
                actprm::pipeline::train::run_train(&a.features, &a.output, &a.settings, |r| {
                    if let Some(line) = r.progress_line() {
                        eprintln!("{line}");
                    }
                })?;
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Finetune(a) => {
            let report = actprm::pipeline::finetune::run_finetune(
                &localise_paths(&a.files)?,
                &a.output,
                &a.settings,
                |p| {
                    if let Some(line) = p.line() {
                        eprintln!("{line}");
                    }
                },
            )?;
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Experiment(a) => {
            let run = actprm::experiment::run_experiment_files(
                &a.pool,
                &a.dev,
                &a.output,
                &a.settings,
                |c| {
                    if let Some(line) = c.progress_line() {
                        eprintln!("{line}");
                    }
                },
            )?;
            print!("{}", run.summary());
        }
        Command::Sql(a) => {
            let mut tables = a.tables;
            for file in &a.pipelines {
                tables.extend(pipeline_file(
                    actprm::pipeline::config::outputs::sql_tables(file),
                )?);
            }
            actprm::sql::run::run(actprm::sql::run::SqlRequest {
                query: a.query,
                tables,
                format: a.format,
                output: a.output,
                config: SqlConfig {
                    allow_write: a.allow_write,
                    runtime: a.model.runtime(),
                    model: a.model.model,
                    score: a.score,
                    ..SqlConfig::default()
                },
            })?;
        }
        Command::FilterVerify {
            input,
            outputs,
            columns,
        } => {
            let (s, problems) = actprm::pipeline::filter::verify(&input, &columns, &outputs)?;
            for p in &problems {
                eprintln!("actprm: {p}");
            }
            println!(
                "{} units, {} rows in, {} kept, {} rejected",
                s.units, s.rows_in, s.rows_kept, s.rows_rejected
            );
            if !problems.is_empty() {
                return Err(format!(
                    "{} problem(s): the shard outputs are not complete",
                    problems.len()
                )
                .into());
            }
            println!("complete: every unit committed exactly once");
        }
        Command::Generate {
            from,
            output,
            rows,
            files,
            row_group_rows,
            seed,
        } => {
            let spec = actprm::source::generate::GenerateSpec {
                rows,
                files,
                row_group_rows,
                seed,
            };
            let paths = actprm::source::generate::generate_from_files(&from, &output, &spec)?;
            println!(
                "wrote {rows} rows in {} files to {}",
                paths.len(),
                output.display()
            );
        }
        Command::Convert { inputs, output } => {
            let report = actprm::pipeline::convert::convert(&localise_paths(&inputs)?, &output)?;
            for r in &report.rejected {
                eprintln!("actprm: {}:{}: {} (rejected)", r.file, r.line, r.reason);
            }
            print!("{}", actprm::report::Report::table(&report));
        }
        Command::Import {
            from,
            output,
            format,
            dtype,
            io,
            overwrite,
        } => {
            actprm::model::check_output(&output, overwrite)?;
            let from = actprm::source::remote::localise_checkpoint(&from)?.unwrap_or(from);
            let report = actprm::model::import::import(&from, &output, format, dtype)?;
            render(&report, &io, None)?;
        }
        Command::TinyModel {
            output,
            dim,
            heads,
            overwrite,
        } => {
            actprm::model::check_output(&output, overwrite)?;
            let version = actprm::model::create::tiny_model(&output, dim, heads)?;
            println!("wrote {} ({version})", output.display());
        }
        Command::InitModel {
            output,
            heads,
            seed,
            name,
            overwrite,
        } => {
            actprm::model::check_output(&output, overwrite)?;
            let version = actprm::model::create::init_model(&output, heads, seed, &name)?;
            println!("wrote {} ({version})", output.display());
        }
    }
    Ok(())
}
