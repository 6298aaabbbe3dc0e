//! A progress bar on a terminal (rows/s, tokens/s, ETA); nothing when output is redirected.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn rows_bar(total_rows: u64, enabled: bool) -> ProgressBar {
    bar(
        total_rows,
        enabled,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} rows ({per_sec}, ETA {eta}) {msg}",
    )
}

/// Units done of a `--ray` run, with the rate and live nodes as the message.
pub fn units_bar(total_units: u64, enabled: bool) -> ProgressBar {
    bar(
        total_units,
        enabled,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units (ETA {eta}) {msg}",
    )
}

fn bar(total: u64, enabled: bool, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
