//! Write-then-rename for small files (summaries, manifests).

use std::path::Path;

use super::SinkError;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let err = SinkError::at(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}
