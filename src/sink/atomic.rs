//! The one way actprm puts a file or folder in place: write under a temporary name in the same
//! folder, fsync the data, rename, fsync the folder. A reader (or a resumed run) sees the old
//! file or the whole new one, never half of one, and after a power loss a rename that survived
//! has its data with it.
//!
//! Temporary names are `.<name>.tmp-<tag>`: hidden (folder scans and globs skip them) and tagged,
//! so a run cleans up only its own leftovers (`filter` tags them with its shard).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::SinkError;

/// The temporary name `path` is written under before [`commit`] renames it into place.
pub fn temp_path(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    path.with_file_name(format!(".{name}.tmp-{tag}"))
}

/// The tag of a temporary name made by [`temp_path`], if `name` is one.
pub fn temp_tag(name: &str) -> Option<&str> {
    name.strip_prefix('.')?
        .rsplit_once(".tmp-")
        .map(|(_, tag)| tag)
}

/// The default tag: this process, so concurrent processes never share a temporary file.
pub fn process_tag() -> String {
    std::process::id().to_string()
}

/// Flushes `tmp` to disk, renames it to `path` and flushes the folder entry.
pub fn commit(tmp: &Path, path: &Path) -> Result<(), SinkError> {
    let err = SinkError::at(path);
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| SinkError::at(tmp)(e.to_string()))?;
    std::fs::rename(tmp, path).map_err(|e| err(e.to_string()))?;
    sync_parent(path)
}

/// Flushes the folder holding `path`, so a rename or removal in it survives a power loss.
pub fn sync_parent(path: &Path) -> Result<(), SinkError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent)
}

pub fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::at(dir)(e.to_string()))
}

/// Creates `path`'s folder if needed.
pub fn create_parent(path: &Path) -> Result<(), SinkError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| SinkError::at(parent)(e.to_string()))?;
    }
    Ok(())
}

/// Writes a whole small file (summary, manifest, commit record) atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    write_atomic_tagged(path, bytes, &process_tag())
}

pub fn write_atomic_tagged(path: &Path, bytes: &[u8], tag: &str) -> Result<(), SinkError> {
    create_parent(path)?;
    let tmp = temp_path(path, tag);
    std::fs::write(&tmp, bytes).map_err(|e| SinkError::at(&tmp)(e.to_string()))?;
    commit(&tmp, path)
}

/// Replaces the folder `out` by the complete folder `staging` (same parent): the old one is moved
/// aside, the new one renamed in, the entries of the old one that `ours` does not claim (files
/// actprm did not write there) moved into the new one, and the rest of the old one removed. A
/// reader sees the old or the new folder. A file of the old folder that is not ours but has the
/// name of one in `staging` is refused before anything moves.
///
/// A crash between the swap and the move leaves those files in the hidden `.NAME.tmp-old-PID`
/// beside `out`; the next replace refuses until they are moved back, so nothing is lost unseen.
pub fn replace_dir(
    staging: &Path,
    out: &Path,
    ours: &dyn Fn(&str) -> bool,
) -> Result<(), SinkError> {
    let err = SinkError::at(out);
    refuse_interrupted_replace(out)?;
    sync_tree(staging)?;
    if !out.exists() {
        std::fs::rename(staging, out).map_err(|e| err(e.to_string()))?;
        return sync_parent(out);
    }
    let foreign: Vec<std::ffi::OsString> = std::fs::read_dir(out)
        .map_err(|e| err(e.to_string()))?
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !ours(&n.to_string_lossy()))
        .collect();
    if let Some(clash) = foreign.iter().find(|n| staging.join(n).exists()) {
        return Err(err(format!(
            "holds {} that actprm did not write, and the new folder has a file of that name; move it away first",
            clash.to_string_lossy()
        )));
    }
    let old = temp_path(out, &format!("old-{}", process_tag()));
    let _ = std::fs::remove_dir_all(&old);
    std::fs::rename(out, &old).map_err(|e| err(e.to_string()))?;
    std::fs::rename(staging, out).map_err(|e| err(e.to_string()))?;
    for name in &foreign {
        std::fs::rename(old.join(name), out.join(name)).map_err(|e| err(e.to_string()))?;
    }
    sync_dir(out)?;
    sync_parent(out)?;
    std::fs::remove_dir_all(&old).map_err(|e| SinkError::at(&old)(e.to_string()))
}

/// An earlier replace of `out` that died after the swap left the files it was carrying over in
/// `.NAME.tmp-old-PID`: refuse, naming the folder, rather than replace again and lose sight of them.
fn refuse_interrupted_replace(out: &Path) -> Result<(), SinkError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return Ok(());
    };
    let prefix = format!(".{name}.tmp-old-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let found = entry.file_name().to_string_lossy().to_string();
        let alive = found
            .strip_prefix(&prefix)
            .is_some_and(|pid| pid == process_tag() || Path::new("/proc").join(pid).exists());
        if found.starts_with(&prefix) && !alive {
            let left = std::fs::read_dir(entry.path()).map_or(0, |e| e.count());
            if left == 0 {
                let _ = std::fs::remove_dir(entry.path());
                continue;
            }
            return Err(SinkError::at(out)(format!(
                "an interrupted replace of this folder left {left} entries in {}: move the files you want back into {} and delete that folder, then run again",
                entry.path().display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// fsyncs every file and folder under `dir` (a staging folder about to be renamed into place).
fn sync_tree(dir: &Path) -> Result<(), SinkError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SinkError::at(dir)(e.to_string()))?;
    for entry in entries {
        let path = entry.map_err(|e| SinkError::at(dir)(e.to_string()))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| SinkError::at(&path)(e.to_string()))?;
        }
    }
    sync_dir(dir)
}

/// Removes the temporary files in `dir` whose tag satisfies `mine` (a killed run's leftovers).
/// A folder an interrupted [`replace_dir`] moved aside (`old-*`) is never removed here: it may
/// hold files actprm did not write.
pub fn remove_temps(dir: &Path, mine: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if temp_tag(&name).is_some_and(|tag| !tag.starts_with("old-") && mine(tag)) {
            let path = entry.path();
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_and_carry_their_tag() {
        let t = temp_path(Path::new("out/kept/a.parquet"), "shard-1-of-4");
        assert_eq!(t, Path::new("out/kept/.a.parquet.tmp-shard-1-of-4"));
        assert_eq!(
            temp_tag(".a.parquet.tmp-shard-1-of-4"),
            Some("shard-1-of-4")
        );
        assert_eq!(temp_tag("a.parquet"), None);
        assert_eq!(temp_tag("a.parquet.tmp-3"), None);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/summary.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("summary.json")]);
    }
}
