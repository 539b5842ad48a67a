//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (red plane, green
//! plane, blue plane, each 32x32 row-major), i.e. already CHW. See
//! <https://www.cs.toronto.edu/~kriz/cifar.html>.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const PIXELS: usize = 3 * 32 * 32;
const RECORD: usize = 1 + PIXELS;

/// Folder the official tarball unpacks to.
pub(crate) const BATCH_DIR: &str = "cifar-10-batches-bin";

/// Batch file names of one split.
pub(crate) fn batch_files(split: super::Split) -> &'static [&'static str] {
    match split {
        super::Split::Train => &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        super::Split::Test => &["test_batch.bin"],
    }
}

/// Loads the given batch files, in order, into unit floats and labels.
pub(crate) fn load(paths: &[PathBuf]) -> Result<(Vec<f32>, Vec<u8>)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let bytes = super::idx::read_maybe_gz(path)?;
        check_size(path, bytes.len())?;
        images.reserve(bytes.len() / RECORD * PIXELS);
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            let label = rec[0];
            if label >= 10 {
                return Err(Error::file(
                    path,
                    format!("label {label} in record {i} is not in 0..10 (not a CIFAR-10 batch?)"),
                ));
            }
            labels.push(label);
            images.extend(super::to_unit(&rec[1..]));
        }
    }
    Ok((images, labels))
}

fn check_size(path: &Path, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::file(path, "file is empty"));
    }
    if !len.is_multiple_of(RECORD) {
        let hint = if len.is_multiple_of(RECORD + 1) {
            " (records of 3074 bytes: this looks like CIFAR-100, which has 2 label bytes)"
        } else {
            ""
        };
        return Err(Error::file(
            path,
            format!(
                "size {len} is not a multiple of {RECORD} bytes (1 label + 3x32x32 pixels): \
                 truncated or not a CIFAR-10 binary batch{hint}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    #[test]
    fn roundtrip_keeps_chw_order_and_batch_order() {
        let dir = TempDir::new("cifar");
        let a = dir.path().join("data_batch_1.bin");
        let b = dir.path().join("data_batch_2.bin");
        write(&a, &cifar_batch(&[6, 9]));
        write(&b, &gzip(&cifar_batch(&[1])));
        let (img, lab) = load(&[a, b]).unwrap();
        assert_eq!(lab, vec![6, 9, 1]);
        assert_eq!(img.len(), 3 * PIXELS);
        // pixel k of record i in its file was (i + 3k) mod 256; (c, h, w) is k = c*1024 + h*32 + w
        let at = |n: usize, c: usize, h: usize, w: usize| img[n * PIXELS + c * 1024 + h * 32 + w];
        let byte = |i: usize, c: usize, h: usize, w: usize| {
            ((i + 3 * (c * 1024 + h * 32 + w)) % 256) as f32 / 255.0
        };
        assert_eq!(at(0, 0, 0, 0), byte(0, 0, 0, 0));
        assert_eq!(at(1, 2, 31, 5), byte(1, 2, 31, 5));
        assert_eq!(at(0, 1, 3, 17), byte(0, 1, 3, 17));
        // third image is record 0 of the second file
        assert_eq!(at(2, 2, 10, 20), byte(0, 2, 10, 20));
    }

    #[test]
    fn bad_batches_are_reported_with_their_path() {
        let dir = TempDir::new("cifar-bad");
        let p = dir.path().join("test_batch.bin");
        let full = cifar_batch(&[1, 2]);
        for (bytes, what) in [
            (full[..full.len() - 1].to_vec(), "not a multiple of 3073"),
            (Vec::new(), "empty"),
            (cifar_batch(&[1, 10]), "label 10 in record 1"),
            (vec![0u8; 3074 * 2], "CIFAR-100"),
        ] {
            write(&p, &bytes);
            match load(std::slice::from_ref(&p)) {
                Err(Error::InvalidFile { path, reason }) => {
                    assert_eq!(path, p);
                    assert!(reason.contains(what), "{reason:?} lacks {what:?}");
                }
                other => panic!("expected InvalidFile about {what}, got {other:?}"),
            }
        }
    }
}
