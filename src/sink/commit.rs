//! The one commit protocol of the runs that resume: a filter's units, the active loop's
//! commits, a fine-tune's checkpoint. Stated once:
//!
//! 1. **Fingerprint.** When a run starts, what its outputs depend on (inputs, model, every
//!    setting that changes a row) is recorded as `run.json`, keyed as the user changes it
//!    (`--keep-rate`). A resume continues only when it is the same ([`recorded`]); each
//!    difference is named.
//! 2. **Data files** are written under a temporary name, fsynced, renamed into place and the
//!    folder fsynced ([`super::atomic`], [`super::format::DataFile`]).
//! 3. **Commit record.** Only then is the record written (atomically) that names every file it
//!    commits with its row count ([`Promised`]). A file no record names is not committed: a
//!    resume removes it or writes it again.
//! 4. **Resume** checks that each record's files hold the rows it promises
//!    ([`Promised::check`]) before it skips the work they stand for.
//!
//! What a run may remove or replace in its folder is the output-folder rule,
//! [`super::output_folder`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::format::rows_in;
use super::SinkError;

/// The fingerprint's file, in the folder of the run it describes.
pub const FINGERPRINT_FILE: &str = "run.json";

/// What `run.json` in a folder says of a run with fingerprint `now`.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// No fingerprint: a fresh folder (or one written by a run that recorded none).
    Absent,
    Same,
    /// Each difference as `key: before -> now`.
    Changed(Vec<String>),
}

/// Compares `folder/run.json` with `now`. The earlier record is read back through `T` when it
/// parses as one, so keys a later version added with a default compare equal to a record
/// written before them; else as plain JSON.
pub fn recorded<T: Serialize + DeserializeOwned>(
    folder: &Path,
    now: &T,
) -> Result<Recorded, SinkError> {
    let path = folder.join(FINGERPRINT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recorded::Absent),
        Err(e) => return Err(SinkError::at(&path)(e.to_string())),
    };
    let as_value = |v: &T| serde_json::to_value(v).expect("a fingerprint serialises");
    let before = match serde_json::from_str::<T>(&text) {
        Ok(typed) => as_value(&typed),
        Err(_) => serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    };
    let differences = super::output_folder::differences(&before, &as_value(now));
    Ok(if differences.is_empty() {
        Recorded::Same
    } else {
        Recorded::Changed(differences)
    })
}

/// Records `now` as `folder/run.json` (atomically; `tag` names the writer's temporary file, so
/// shards writing one folder never share one).
pub fn record<T: Serialize>(folder: &Path, now: &T, tag: &str) -> Result<(), SinkError> {
    let bytes = serde_json::to_vec_pretty(now).expect("a fingerprint serialises");
    super::write_atomic_tagged(&folder.join(FINGERPRINT_FILE), &bytes, tag)
}

/// The files a commit record promises, relative to the run's folder (or absolute, for a
/// further sink's folder), with their row counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Promised(BTreeMap<String, u64>);

impl Promised {
    pub fn add(&mut self, file: String, rows: u64) {
        self.0.insert(file, rows);
    }

    pub fn extend(&mut self, other: Promised) {
        self.0.extend(other.0);
    }

    /// The files, in name order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Step 4: every file is in `folder` with the rows promised; else the first that is not.
    pub fn check(&self, folder: &Path) -> Result<(), String> {
        for (file, &rows) in &self.0 {
            let path = folder.join(file);
            let found = rows_in(&path)?;
            if found != rows {
                return Err(format!(
                    "{} has {found} rows, its commit record says {rows}",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

impl FromIterator<(String, u64)> for Promised {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Settings {
        #[serde(rename = "--keep-rate")]
        keep_rate: f32,
        /// Added later, with a default: an earlier record without it still resumes.
        #[serde(rename = "--format", default)]
        format: Option<String>,
    }

    #[test]
    fn a_fingerprint_is_absent_same_or_changed_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let now = Settings {
            keep_rate: 0.3,
            format: None,
        };
        assert_eq!(recorded(dir.path(), &now).unwrap(), Recorded::Absent);
        record(dir.path(), &now, "t").unwrap();
        assert_eq!(recorded(dir.path(), &now).unwrap(), Recorded::Same);
        std::fs::write(dir.path().join(FINGERPRINT_FILE), r#"{"--keep-rate": 0.3}"#).unwrap();
        assert_eq!(recorded(dir.path(), &now).unwrap(), Recorded::Same);
        let other = Settings {
            keep_rate: 0.25,
            format: Some("jsonl".into()),
        };
        assert_eq!(
            recorded(dir.path(), &other).unwrap(),
            Recorded::Changed(vec![
                "--format: (none) -> jsonl".to_string(),
                "--keep-rate: 0.3 -> 0.25".to_string()
            ])
        );
    }

    #[test]
    fn a_promise_fails_on_a_missing_or_short_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"x\":1}\n{\"x\":2}\n").unwrap();
        let promise: Promised = [("a.jsonl".to_string(), 2)].into_iter().collect();
        promise.check(dir.path()).unwrap();
        let short: Promised = [("a.jsonl".to_string(), 3)].into_iter().collect();
        let err = short.check(dir.path()).unwrap_err();
        assert!(
            err.contains("has 2 rows, its commit record says 3"),
            "{err}"
        );
        let missing: Promised = [("b.jsonl".to_string(), 1)].into_iter().collect();
        let err = missing.check(dir.path()).unwrap_err();
        assert!(err.contains("b.jsonl"), "{err}");
    }
}
