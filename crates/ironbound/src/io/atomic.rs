//! Writing result files atomically: a temporary file in the same directory is renamed over
//! the target only once complete, so a failure never leaves a half-written file that looks
//! finished. A failed write (full disk, no permission) removes the temporary file and leaves
//! the previous file, if any, as it was.

use crate::error::{Error, Result};
use crate::fault;
use std::io::Write;
use std::path::{Path, PathBuf};

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into())
}

fn temp_prefix(path: &Path) -> String {
    format!(".{}.tmp", file_name(path))
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

fn cannot_write(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{}: cannot write: {e}", path.display()))
}

/// Writes whatever `fill` writes to `path`, atomically.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("{}: cannot create directory: {e}", dir.display())))?;
    }
    let tmp = temp_path(path);
    let name = file_name(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| cannot_write(path, e))?;
        fill(&mut file)?;
        file.flush().and_then(|_| file.sync_all()).map_err(|e| cannot_write(path, e))?;
        fault::point(&format!("before-rename:{name}"));
        std::fs::rename(&tmp, path).map_err(|e| cannot_write(path, e))?;
        fault::point(&format!("after-rename:{name}"));
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    write_with(path, |f| {
        f.write_all(first).map_err(|e| cannot_write(path, e))?;
        fault::point(&format!("mid-write:{}", file_name(path)));
        f.write_all(rest).map_err(|e| cannot_write(path, e))
    })
}

/// Removes the temporary files that writers of `path` killed before their rename left behind
/// (a killed training run would otherwise leave a checkpoint-sized file per kill). Only for a
/// file that no other live process writes: a run directory belongs to one `ironbound train`.
pub fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Best effort: an unreadable directory has nothing to clean, and its next write reports it.
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.strip_prefix(&prefix).is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
