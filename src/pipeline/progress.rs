//! Progress of long work on stderr: a bar on a terminal (rows/s, tokens/s, ETA); off a terminal
//! (a notebook cell, Slurm or Ray logs, a pipe) one line every [`LINE_EVERY`], so a long run is
//! never silent until its end; nothing with `--quiet`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is printed off a terminal (`ACTPRM_PROGRESS_EVERY_MS` sets
/// another period, for logs that want more or fewer lines).
pub const LINE_EVERY: Duration = Duration::from_secs(10);

fn line_every() -> Duration {
    std::env::var("ACTPRM_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(LINE_EVERY, Duration::from_millis)
}

pub fn rows_bar(total_rows: u64, enabled: bool) -> ProgressBar {
    bar(
        total_rows,
        enabled,
        "rows",
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} rows ({per_sec}, ETA {eta}) {msg}",
    )
}

/// Units done of a `--ray` run, with the rate and live nodes as the message.
pub fn units_bar(total_units: u64, enabled: bool) -> ProgressBar {
    bar(
        total_units,
        enabled,
        "units",
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units (ETA {eta}) {msg}",
    )
}

fn bar(total: u64, enabled: bool, what: &'static str, template: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        print_lines(&bar, what, line_every());
        return bar;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Prints `bar`'s state every `every` until the bar is finished or dropped.
fn print_lines(bar: &ProgressBar, what: &'static str, every: Duration) {
    let weak = bar.downgrade();
    std::thread::spawn(move || {
        let tick = every.min(Duration::from_millis(200));
        let mut waited = Duration::ZERO;
        loop {
            std::thread::sleep(tick);
            let Some(bar) = weak.upgrade() else { return };
            if bar.is_finished() {
                return;
            }
            waited += tick;
            if waited >= every {
                waited = Duration::ZERO;
                eprintln!("actprm: {}", line(&bar, what));
            }
        }
    });
}

/// `1200/5000 rows (24.0 %), 96 rows/s, ETA 40 s; 12345 tokens`
fn line(bar: &ProgressBar, what: &str) -> String {
    let done = bar.position();
    let rate = bar.per_sec();
    let mut text = match bar.length().filter(|&n| n > 0) {
        Some(total) => {
            let left = total.saturating_sub(done) as f64;
            let eta = if rate > 0.0 {
                format!("ETA {:.0} s", left / rate)
            } else {
                "ETA unknown".to_string()
            };
            format!(
                "{done}/{total} {what} ({:.1} %), {rate:.0} {what}/s, {eta}",
                100.0 * done as f64 / total as f64
            )
        }
        None => format!("{done} {what}, {rate:.0} {what}/s"),
    };
    let message = bar.message();
    if !message.is_empty() {
        text += &format!("; {message}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_how_far_how_fast_and_how_long() {
        let bar = ProgressBar::with_draw_target(Some(400), ProgressDrawTarget::hidden());
        bar.inc(100);
        bar.set_message("5000 tokens");
        let text = line(&bar, "rows");
        assert!(text.starts_with("100/400 rows (25.0 %), "), "{text}");
        assert!(
            text.contains("rows/s, ETA ") && text.ends_with("; 5000 tokens"),
            "{text}"
        );
    }
}
