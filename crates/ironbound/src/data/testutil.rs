//! Helpers shared by the data tests: throw-away directories and tiny synthetic files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop. Unique per process and
/// per call so parallel tests never share one.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "ironbound-data-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// IDX3 image file: `n` images of `rows x cols`, pixel (i, k) = (7*i + k) mod 256.
pub fn idx_images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803u32, n as u32, rows as u32, cols as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for i in 0..n {
        for k in 0..rows * cols {
            v.push(((7 * i + k) % 256) as u8);
        }
    }
    v
}

/// IDX1 label file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// Writes a complete tiny MNIST-layout test split (3 images, labels `labels`) into `dir`.
pub fn write_idx_split(dir: &Path, prefix: &str, labels: &[u8], gz: bool) {
    let (img, lab) = (idx_images(labels.len(), 28, 28), idx_labels(labels));
    let (img, lab, ext) = if gz {
        (gzip(&img), gzip(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    write(&dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), &img);
    write(&dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), &lab);
}

/// CIFAR-10 binary batch: record i has label `labels[i]`, pixel k = (i + 3*k) mod 256.
pub fn cifar_batch(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        for k in 0..3072 {
            v.push(((i + 3 * k) % 256) as u8);
        }
    }
    v
}
