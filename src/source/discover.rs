//! Turns the user's `--input` arguments (files, globs, folders) into a sorted list of files.

use std::path::{Path, PathBuf};

use super::SourceError;

/// Files, globs (`data/*.parquet`) and folders (searched recursively for `extension`), in a stable
/// order without duplicates. A pattern that matches nothing is an error, never silently empty.
pub fn discover_inputs(patterns: &[String], extension: &str) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let err = |message: String| SourceError::Input {
            pattern: pattern.clone(),
            message,
        };
        let path = Path::new(pattern);
        let before = files.len();
        if path.is_dir() {
            walk(path, extension, &mut files).map_err(|e| err(e.to_string()))?;
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else if pattern.contains(['*', '?', '[']) {
            let paths = glob::glob(pattern).map_err(|e| err(format!("bad glob: {e}")))?;
            for entry in paths {
                let p = entry.map_err(|e| err(e.to_string()))?;
                if p.is_file() {
                    files.push(p);
                }
            }
        } else {
            return Err(err("no such file or folder".into()));
        }
        if files.len() == before {
            return Err(err(format!("matches no .{extension} file")));
        }
        files[before..].sort();
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let p = entry.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, extension, out)?;
        } else if p.extension().and_then(|e| e.to_str()) == Some(extension) {
            out.push(p);
        }
    }
    Ok(())
}
