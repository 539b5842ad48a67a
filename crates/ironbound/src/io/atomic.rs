//! Writing result files atomically: a temporary file in the same directory is renamed over
//! the target only once complete, so a failure never leaves a half-written file that looks
//! finished.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes whatever `fill` writes to `path`, atomically.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("{}: cannot create directory: {e}", dir.display())))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::internal(format!("{}: cannot write: {e}", path.display())))?;
        fill(&mut file)?;
        file.flush().and_then(|_| file.sync_all()).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::internal(format!("{}: cannot write: {e}", path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| f.write_all(bytes).map_err(|e| Error::internal(format!("{}: {e}", path.display()))))
}
