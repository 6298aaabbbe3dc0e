//! A Hugging Face dataset card (`README.md` whose YAML header lists `configs` with their
//! `data_files`) beside an output's data files. `datasets.load_dataset(OUT)`, and the Hub after an
//! upload, then read exactly the data rows: never `summary.json`, `run.json`, the rejects or the
//! unit records, and one `train` split whatever the part names say (a filter's parts are named
//! after their input files, and a name holding "test" would otherwise become a test split).
//!
//! The card is rewritten by every run. A `README.md` actprm did not write (no marker line) is a
//! user's and is never replaced: the card is then skipped and the run says so.

use std::path::Path;

use super::atomic::write_atomic;
use super::SinkError;

pub const CARD_FILE: &str = "README.md";

/// The line that marks a card as actprm's own (so a later run may rewrite it).
const MARKER: &str = "<!-- written by actprm; each run rewrites this file -->";

/// One `configs` entry: its name and the file pattern of its one `train` split, relative to
/// the output folder.
#[derive(Debug, Clone)]
pub struct CardConfig {
    pub name: &'static str,
    pub files: String,
}

/// What became of the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Written,
    /// A `README.md` actprm did not write is there: it stays, and no card is written.
    KeptUsersReadme,
}

/// The card's text: the YAML header `datasets` reads, then what the folder holds.
pub fn card_text(title: &str, configs: &[CardConfig], about: &str) -> String {
    let mut text = String::from("---\nconfigs:\n");
    for c in configs {
        text.push_str(&format!(
            "- config_name: {}\n  data_files:\n  - split: train\n    path: \"{}\"\n",
            c.name, c.files
        ));
    }
    text.push_str("---\n");
    text.push_str(MARKER);
    text.push_str(&format!("\n\n# {title}\n\n{about}\n\n"));
    text.push_str("| config | files |\n|---|---|\n");
    for c in configs {
        text.push_str(&format!("| `{}` | `{}` |\n", c.name, c.files));
    }
    text.push_str(
        "\nRead it with `datasets.load_dataset(\"<this folder>\")` (the `default` config), \
         `load_dataset(\"<this folder>\", \"<config>\")`, or `actprm sql --table t=<this folder>`. \
         `summary.json` (and `run.json` where present) describe the run; `rejects/` holds the rows \
         that could not be read, with their reasons.\n",
    );
    text
}

/// Writes the card into `dir`, unless a `README.md` that is not actprm's is there.
pub fn write_card(
    dir: &Path,
    title: &str,
    configs: &[CardConfig],
    about: &str,
) -> Result<CardOutcome, SinkError> {
    let path = dir.join(CARD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.contains(MARKER) => return Ok(CardOutcome::KeptUsersReadme),
        // unreadable (not text, no permission): not ours to replace either
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Ok(CardOutcome::KeptUsersReadme)
        }
        _ => {}
    }
    write_atomic(&path, card_text(title, configs, about).as_bytes())?;
    Ok(CardOutcome::Written)
}

/// Writes the card and says on stderr when a user's `README.md` kept it out.
pub fn write_card_or_say(
    dir: &Path,
    title: &str,
    configs: &[CardConfig],
    about: &str,
) -> Result<(), SinkError> {
    if write_card(dir, title, configs, about)? == CardOutcome::KeptUsersReadme {
        eprintln!(
            "note: {} is not actprm's, so no dataset card was written beside the data (load the \
             parts by their pattern: {})",
            dir.join(CARD_FILE).display(),
            configs.first().map_or("", |c| c.files.as_str())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> [CardConfig; 1] {
        [CardConfig {
            name: "default",
            files: "part-*.parquet".into(),
        }]
    }

    #[test]
    fn a_users_readme_is_never_replaced_and_ours_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CARD_FILE);
        std::fs::write(&path, "# my notes\n").unwrap();
        assert_eq!(
            write_card(dir.path(), "t", &configs(), "a").unwrap(),
            CardOutcome::KeptUsersReadme
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# my notes\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            write_card(dir.path(), "t", &configs(), "first").unwrap(),
            CardOutcome::Written
        );
        assert_eq!(
            write_card(dir.path(), "t", &configs(), "second").unwrap(),
            CardOutcome::Written
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("---\nconfigs:\n- config_name: default\n"));
        assert!(text.contains("second") && !text.contains("first"));
    }
}
