//! The one rule for the folders actprm writes (every command's `-o`), stated once:
//!
//! 1. A command names what it writes in its folder (its [`Layout`]): top-level files, and
//!    folders with the file names it puts in them. Nothing else is ever removed or replaced,
//!    with or without `--overwrite`: a user's notes, another command's files, stay.
//! 2. A fresh run takes a folder that is missing, empty, or holds none of its layout's entries.
//!    An earlier run's entries are refused (a reader would mix the two runs), unless
//!    `--overwrite`, which removes exactly those entries first.
//! 3. A model directory is read whole by the commands that load it, so an existing folder that
//!    is not a model directory actprm wrote (no `manifest.json` of its own) is refused unless
//!    `--overwrite`; replacing a model directory keeps every file the old one did not write
//!    ([`super::atomic::replace_dir`]).
//! 4. A resumed run (`active --resume`, `filter`) continues its own entries only after its
//!    fingerprint (`run.json`: inputs and settings) matches the one recorded when the run
//!    started; [`differences`] names each change.
//! 5. One process at a time writes a folder: [`claim`] holds `.lock` for the run.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::SinkError;

/// What a command writes at the top of its output folder.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// For messages: "score output", "active run", ...
    pub kind: &'static str,
    pub entries: &'static [Entry],
}

/// One entry of a [`Layout`].
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// A file of this exact name.
    File(&'static str),
    /// Files `PREFIX*SUFFIX` at the top of the folder (`part-*.parquet`).
    Files(&'static str, &'static str),
    /// A folder, and the files in it matching `PREFIX*SUFFIX` (`ckpt-*` with suffix "" also
    /// matches sub-folders); other files in it are not the command's.
    Folder(&'static str, &'static [(&'static str, &'static str)]),
}

impl Entry {
    /// The paths of this entry in `dir` that an earlier run wrote.
    fn found(&self, dir: &Path) -> Vec<PathBuf> {
        match *self {
            Entry::File(name) => {
                let path = dir.join(name);
                if path.symlink_metadata().is_ok() {
                    vec![path]
                } else {
                    vec![]
                }
            }
            Entry::Files(prefix, suffix) => matching(dir, &[(prefix, suffix)]),
            Entry::Folder(name, patterns) => matching(&dir.join(name), patterns),
        }
    }
}

fn matching(dir: &Path, patterns: &[(&str, &str)]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // hidden names are temporary files and locks, never outputs
            !name.starts_with('.')
                && patterns.iter().any(|(prefix, suffix)| {
                    name.len() >= prefix.len() + suffix.len()
                        && name.starts_with(prefix)
                        && name.ends_with(suffix)
                })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

impl Layout {
    /// Every path in `dir` an earlier run of this layout wrote.
    pub fn earlier(&self, dir: &Path) -> Vec<PathBuf> {
        self.entries.iter().flat_map(|e| e.found(dir)).collect()
    }

    /// Removes exactly what [`Layout::earlier`] finds (and the layout's folders once empty).
    pub fn remove_earlier(&self, dir: &Path) -> Result<(), SinkError> {
        for path in self.earlier(dir) {
            remove(&path)?;
        }
        for entry in self.entries {
            if let Entry::Folder(name, _) = entry {
                // only when nothing else is in it: a folder holding a user's file stays
                let _ = std::fs::remove_dir(dir.join(name));
            }
        }
        if dir.exists() {
            super::atomic::sync_dir(dir)?;
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), SinkError> {
    let removed = if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| SinkError::at(path)(e.to_string()))
}

/// The lock a run holds on its output folder (released when dropped).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// The lock file in every folder a run holds.
pub const LOCK_FILE: &str = ".lock";

/// Takes `dir/.lock` (creating `dir`), or says another process holds it.
pub fn lock(dir: &Path) -> Result<FolderLock, SinkError> {
    std::fs::create_dir_all(dir).map_err(|e| SinkError::at(dir)(e.to_string()))?;
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(|e| SinkError::at(&path)(e.to_string()))?;
    file.try_lock().map_err(|_| {
        SinkError::at(dir)(
            "another actprm process is writing this folder (it holds .lock); wait for it, or \
             choose another folder"
                .into(),
        )
    })?;
    Ok(FolderLock { _file: file })
}

/// Rules 2 and 5 for a fresh run: locks `dir`, refuses a folder whose earlier output is among
/// this run's `inputs` (a pipeline whose sink is its source), then [`prepare`]s it.
pub fn claim(
    dir: &Path,
    layout: &Layout,
    overwrite: bool,
    inputs: &[PathBuf],
) -> Result<FolderLock, SinkError> {
    let held = lock(dir)?;
    let inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let earlier = layout.earlier(dir);
    if let Some(input) = earlier.iter().find(|p| {
        p.canonicalize()
            .is_ok_and(|p| inputs.iter().any(|i| i.starts_with(&p)))
    }) {
        return Err(SinkError::at(dir)(format!(
            "{} is an input of this run; a {} cannot write its output over its own input: \
             choose another output folder",
            input.display(),
            layout.kind
        )));
    }
    prepare(dir, layout, overwrite)?;
    Ok(held)
}

/// Rule 2 (the caller holds the lock): refuses an earlier run's entries, or removes exactly
/// those with `overwrite`.
pub fn prepare(dir: &Path, layout: &Layout, overwrite: bool) -> Result<(), SinkError> {
    let earlier = layout.earlier(dir);
    if earlier.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(SinkError::at(dir)(format!(
            "holds an earlier run's output ({} entries such as {}); a {} here would mix with it. \
             Pass --overwrite to remove those entries first (nothing else in the folder is \
             touched), or choose another folder",
            earlier.len(),
            earlier[0].display(),
            layout.kind
        )));
    }
    layout.remove_earlier(dir)
}

/// Rule 3, checked before a command does its work: `dir` is missing, empty, or a model
/// directory actprm wrote (`is_model_dir`), unless `overwrite`.
pub fn check_model_dir(
    dir: &Path,
    overwrite: bool,
    is_model_dir: impl Fn(&Path) -> bool,
) -> Result<(), SinkError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        if dir.exists() {
            return Err(SinkError::at(dir)(
                "exists and is not a folder; choose another output".into(),
            ));
        }
        return Ok(());
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| super::atomic::temp_tag(n).is_none())
        .collect();
    if names.is_empty() || overwrite || is_model_dir(dir) {
        return Ok(());
    }
    Err(SinkError::at(dir)(format!(
        "is not empty and not a model directory actprm wrote (no manifest.json; it holds {}{}). \
         Pass --overwrite to write the model beside those files (they are kept), or choose \
         another folder",
        names[..names.len().min(3)].join(", "),
        if names.len() > 3 { ", ..." } else { "" }
    )))
}

/// The top-level keys of `now` whose values differ from `before`'s, as `key: before -> now`;
/// a list of strings (inputs) names the items added and removed instead of printing both lists.
pub fn differences(before: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let now = now.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = now.keys().collect();
    if let Some(b) = before.as_object() {
        keys.extend(b.keys().filter(|k| !now.contains_key(*k)));
    }
    keys.into_iter()
        .filter_map(|k| {
            let (b, n) = (before.get(k), now.get(k));
            if b.zip(n).is_some_and(|(b, n)| same(b, n)) || (b.is_none() && n.is_none()) {
                return None;
            }
            if let (Some(Value::Array(b)), Some(Value::Array(n))) = (b, n) {
                let added: Vec<String> = n.iter().filter(|x| !b.contains(x)).map(show).collect();
                let removed: Vec<String> = b.iter().filter(|x| !n.contains(x)).map(show).collect();
                if !added.is_empty() || !removed.is_empty() {
                    let mut parts = Vec::new();
                    if !added.is_empty() {
                        parts.push(format!("added {}", added.join(", ")));
                    }
                    if !removed.is_empty() {
                        parts.push(format!("removed {}", removed.join(", ")));
                    }
                    return Some(format!("{k}: {}", parts.join("; ")));
                }
            }
            let side = |v: Option<&Value>| v.map_or("(absent)".to_string(), show);
            Some(format!("{k}: {} -> {}", side(b), side(n)))
        })
        .collect()
}

/// Equal values; numbers equal to 1e-9 relative, since JSON text does not carry an f32 (or
/// every f64) back bit for bit.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A value as a user writes it: strings bare, an f32 setting as `0.01`, not `0.009999999776482582`.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".to_string(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if !n.is_i64() && !n.is_u64() && f64::from(x as f32) == x => {
                (x as f32).to_string()
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        kind: "test run",
        entries: &[
            Entry::File("summary.json"),
            Entry::Files("part-", ".parquet"),
            Entry::Folder("rejects", &[("rejects-", ".parquet")]),
        ],
    };

    #[test]
    fn overwrite_removes_only_the_layouts_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["summary.json", "part-00000.parquet", "notes.txt"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("rejects")).unwrap();
        std::fs::write(d.join("rejects/rejects-00000.parquet"), b"x").unwrap();
        std::fs::write(d.join("rejects/mine.csv"), b"x").unwrap();
        let refused = claim(d, &LAYOUT, false, &[]).unwrap_err().to_string();
        assert!(refused.contains("--overwrite"), "{refused}");
        assert!(d.join("part-00000.parquet").exists());
        let input = claim(d, &LAYOUT, true, &[d.join("rejects/rejects-00000.parquet")]);
        assert!(input.unwrap_err().to_string().contains("is an input"));
        drop(claim(d, &LAYOUT, true, &[]).unwrap());
        assert!(!d.join("part-00000.parquet").exists());
        assert!(!d.join("summary.json").exists());
        assert!(!d.join("rejects/rejects-00000.parquet").exists());
        assert!(d.join("notes.txt").exists());
        assert!(d.join("rejects/mine.csv").exists());
    }

    #[test]
    fn a_second_claim_on_a_held_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = claim(dir.path(), &LAYOUT, false, &[]).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another actprm process"), "{err}");
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn differences_name_each_changed_key_and_input() {
        let before =
            serde_json::json!({"keep_rate": 0.25, "inputs": ["a|1|x", "b|2|y"], "seed": 0});
        let now = serde_json::json!({"keep_rate": 0.3, "inputs": ["a|1|x", "c|3|z"], "seed": 0});
        let tau = serde_json::json!({"tau": 0.49f32});
        let read_back: serde_json::Value = serde_json::from_str(&tau.to_string()).unwrap();
        assert!(differences(&read_back, &tau).is_empty(), "an f32 read back");
        assert_eq!(
            differences(&before, &now),
            vec![
                "inputs: added c|3|z; removed b|2|y".to_string(),
                "keep_rate: 0.25 -> 0.3".to_string()
            ]
        );
    }
}
