//! The one place results reach the terminal: every command's report as a table, or as JSON with
//! `--json`, and a pipeline run's table sinks the same way.

use std::path::Path;

use actprm::pipeline::config::RunOutcome;
use actprm::report::Report;

/// `--json`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Output {
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints `report` as JSON or as its table (then the output folder, when there is one).
pub fn render(
    report: &impl Report,
    how: &Output,
    folder: Option<&Path>,
) -> Result<(), serde_json::Error> {
    if how.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table());
        if let Some(folder) = folder {
            println!("output         {}", folder.display());
        }
    }
    Ok(())
}

/// A pipeline run's table sinks, each as it asks.
pub fn run_outcome(outcome: &RunOutcome) {
    for &json in &outcome.table_sinks {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome.summary).unwrap_or_default()
            );
        } else {
            print!("{}", outcome.table);
            if let Some(folder) = &outcome.output {
                println!("output         {}", folder.display());
            }
        }
    }
}
