//! Reading a checkpoint folder that may be hostile: every file is checked to be a regular file
//! before it is opened (a FIFO would block the open, `/dev/zero` would never end), read up to a
//! stated limit, and weight files must lie inside the folder.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::ImportError;

/// The most of a JSON file (`config.json`, `tokenizer_config.json`,
/// `model.safetensors.index.json`) that is read: real ones are a few kB to a few MB.
pub const JSON_LIMIT: u64 = 64 << 20;

/// The most of `tokenizer.json` that is read: real ones are up to a few tens of MB.
pub const TOKENIZER_LIMIT: u64 = 128 << 20;

/// `path` as the refusal names it.
fn refuse(path: &Path, message: String) -> ImportError {
    ImportError::File {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks that `path` (following symlinks) is a regular file; returns its length.
pub fn regular(path: &Path) -> Result<u64, ImportError> {
    let meta = std::fs::metadata(path).map_err(ImportError::io(path))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let kind = if meta.is_dir() {
        "a folder"
    } else {
        special_kind(&meta)
    };
    Err(refuse(
        path,
        format!("is {kind}, not a regular file; checkpoint files are read only from regular files"),
    ))
}

#[cfg(unix)]
fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::Metadata) -> &'static str {
    "a special file"
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// The bytes of the regular file `path`, refused when longer than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ImportError> {
    let len = regular(path)?;
    let too_large = |size: String| {
        refuse(
            path,
            format!("is {size} bytes; actprm reads at most {} of it", mib(limit)),
        )
    };
    if len > limit {
        return Err(too_large(len.to_string()));
    }
    let file = std::fs::File::open(path).map_err(ImportError::io(path))?;
    let mut bytes = Vec::with_capacity(len as usize);
    // the length may change under us: never read more than the limit, whatever it says now
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ImportError::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(format!("over {limit}")));
    }
    Ok(bytes)
}

/// A JSON file of the folder (at most [`JSON_LIMIT`]), parsed.
pub fn read_json(path: &Path) -> Result<serde_json::Value, ImportError> {
    let bytes = read_bounded(path, JSON_LIMIT)?;
    serde_json::from_slice(&bytes).map_err(|e| refuse(path, e.to_string()))
}

/// A shard named by `index` (for `tensor`) as a path inside `dir`: absolute names and names with
/// `..` are refused.
pub fn shard_path(
    dir: &Path,
    index: &Path,
    name: &str,
    tensor: &str,
) -> Result<PathBuf, ImportError> {
    let rel = Path::new(name);
    let plain = !name.is_empty()
        && !rel.is_absolute()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(refuse(
            index,
            format!(
                "weight_map puts {tensor} in {name:?}, which is not a file inside the checkpoint \
                 folder (absolute names and `..` are refused)"
            ),
        ));
    }
    Ok(dir.join(rel))
}

/// Checks that the weight file `file` resolves (symlinks followed) to a file inside `dir`; a
/// Hugging Face cache snapshot (`.../snapshots/REV/`) may also link into its repository's
/// `blobs/`, as `huggingface-cli download` leaves it.
pub fn inside(dir: &Path, file: &Path) -> Result<(), ImportError> {
    let root = dir.canonicalize().map_err(ImportError::io(dir))?;
    let real = file.canonicalize().map_err(ImportError::io(file))?;
    if real.starts_with(&root) {
        return Ok(());
    }
    let blobs = root
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
        .and_then(Path::parent)
        .map(|repo| repo.join("blobs"));
    if blobs.is_some_and(|b| real.starts_with(b)) {
        return Ok(());
    }
    Err(refuse(
        file,
        format!(
            "resolves to {}, outside the checkpoint folder {}; weight files are read only from \
             inside it",
            real.display(),
            root.display()
        ),
    ))
}
