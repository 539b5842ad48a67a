//! IDX files (MNIST, Fashion-MNIST): big-endian header then raw unsigned bytes.
//! See <http://yann.lecun.com/exdb/mnist/> for the format.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Upper bound on a decompressed file, so a corrupt or hostile .gz cannot eat all memory.
/// The largest file we read (SVHN train, 182 MB) is far below it.
const MAX_DECOMPRESSED: u64 = 4 << 30;

/// Reads a file, transparently gunzipping it when it starts with the gzip magic (1f 8b);
/// the name is not trusted because people gunzip files without renaming them and vice versa.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::file(path, format!("corrupt or truncated gzip data: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::file(
            path,
            "decompresses to more than 4 GiB; not a dataset file",
        ));
    }
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

fn magic_name(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "an IDX image file",
        LABELS_MAGIC => "an IDX label file",
        _ => "not an IDX unsigned-byte file",
    }
}

/// Checks the first 4 bytes first, so a swapped or foreign file is named as such rather
/// than reported as "too short".
fn check_magic(path: &Path, bytes: &[u8], want: u32, what: &str) -> Result<()> {
    if bytes.len() < 4 {
        return Err(Error::file(
            path,
            format!("{} bytes is too short for an IDX file", bytes.len()),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != want {
        return Err(Error::file(
            path,
            format!(
                "bad magic number 0x{magic:08x} ({}), expected 0x{want:08x} for {what}",
                magic_name(magic)
            ),
        ));
    }
    Ok(())
}

/// Checks an image file's header against `rows x cols` and returns (count, pixel bytes).
fn parse_images<'a>(
    path: &Path,
    bytes: &'a [u8],
    rows: usize,
    cols: usize,
) -> Result<(usize, &'a [u8])> {
    check_magic(path, bytes, IMAGES_MAGIC, "images")?;
    if bytes.len() < 16 {
        return Err(Error::file(
            path,
            format!(
                "{} bytes is too short for an IDX image header (16 bytes)",
                bytes.len()
            ),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    let (r, c) = (be_u32(bytes, 8) as usize, be_u32(bytes, 12) as usize);
    if (r, c) != (rows, cols) {
        return Err(Error::file(
            path,
            format!("images are {r}x{c}, expected {rows}x{cols}"),
        ));
    }
    let pixels = &bytes[16..];
    let want = n
        .checked_mul(rows * cols)
        .ok_or_else(|| Error::file(path, format!("header claims an impossible {n} images")))?;
    if pixels.len() < want {
        return Err(Error::file(
            path,
            format!(
                "truncated: header says {n} images ({want} pixel bytes) but only {} bytes follow",
                pixels.len()
            ),
        ));
    }
    if pixels.len() > want {
        return Err(Error::file(
            path,
            format!(
                "{} unexpected bytes after the {n} images",
                pixels.len() - want
            ),
        ));
    }
    Ok((n, pixels))
}

/// Checks a label file and returns its labels (all < 10).
fn parse_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    check_magic(path, bytes, LABELS_MAGIC, "labels")?;
    if bytes.len() < 8 {
        return Err(Error::file(
            path,
            format!(
                "{} bytes is too short for an IDX label header (8 bytes)",
                bytes.len()
            ),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    let labels = &bytes[8..];
    if labels.len() < n {
        return Err(Error::file(
            path,
            format!(
                "truncated: header says {n} labels but only {} bytes follow",
                labels.len()
            ),
        ));
    }
    if labels.len() > n {
        return Err(Error::file(
            path,
            format!("{} unexpected bytes after the {n} labels", labels.len() - n),
        ));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l >= 10) {
        return Err(Error::file(
            path,
            format!("label {l} at index {i} is not in 0..10"),
        ));
    }
    Ok(labels)
}

/// Loads an image file and its label file (each raw or gzipped) into unit floats and labels.
pub(crate) fn load(
    images_path: &Path,
    labels_path: &Path,
    rows: usize,
    cols: usize,
) -> Result<(Vec<f32>, Vec<u8>)> {
    let image_bytes = read_maybe_gz(images_path)?;
    let (n, pixels) = parse_images(images_path, &image_bytes, rows, cols)?;
    let label_bytes = read_maybe_gz(labels_path)?;
    let labels = parse_labels(labels_path, &label_bytes)?;
    if labels.len() != n {
        return Err(Error::file(
            labels_path,
            format!(
                "has {} labels but {} has {n} images",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    Ok((super::to_unit(pixels).collect(), labels.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    fn roundtrip(gz: bool) {
        let dir = TempDir::new("idx");
        write_idx_split(dir.path(), "t10k", &[3, 0, 9], gz);
        let ext = if gz { ".gz" } else { "" };
        let (img, lab) = load(
            &dir.path().join(format!("t10k-images-idx3-ubyte{ext}")),
            &dir.path().join(format!("t10k-labels-idx1-ubyte{ext}")),
            28,
            28,
        )
        .unwrap();
        assert_eq!(lab, vec![3, 0, 9]);
        assert_eq!(img.len(), 3 * 784);
        // pixel (i, k) was written as (7i + k) mod 256.
        for (i, k) in [(0, 0), (0, 255), (1, 300), (2, 783)] {
            let byte = ((7 * i + k) % 256) as f32;
            assert_eq!(img[i * 784 + k], byte / 255.0, "image {i} pixel {k}");
        }
        assert_eq!(img[255], 1.0);
        assert!(img.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn raw_roundtrip() {
        roundtrip(false);
    }

    #[test]
    fn gz_roundtrip() {
        roundtrip(true);
    }

    #[test]
    fn gzip_detected_by_content_not_name() {
        let dir = TempDir::new("idx-names");
        // gzipped data without .gz, and raw data with .gz
        let img = dir.path().join("images");
        let lab = dir.path().join("labels.gz");
        write(&img, &gzip(&idx_images(2, 28, 28)));
        write(&lab, &idx_labels(&[1, 2]));
        let (pixels, labels) = load(&img, &lab, 28, 28).unwrap();
        assert_eq!(labels, vec![1, 2]);
        assert_eq!(pixels[784], 7.0 / 255.0);
    }

    /// Asserts that loading fails with an InvalidFile naming `bad` and mentioning `what`.
    fn assert_bad(img: &Path, lab: &Path, bad: &Path, what: &str) {
        match load(img, lab, 28, 28) {
            Err(Error::InvalidFile { path, reason }) => {
                assert_eq!(path, bad);
                assert!(reason.contains(what), "reason {reason:?} lacks {what:?}");
            }
            other => panic!("expected InvalidFile about {what}, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path() {
        let dir = TempDir::new("idx-bad");
        let good_img = dir.path().join("img");
        let good_lab = dir.path().join("lab");
        write(&good_img, &idx_images(3, 28, 28));
        write(&good_lab, &idx_labels(&[1, 2, 3]));
        let bad = dir.path().join("bad");

        let full = idx_images(3, 28, 28);
        write(&bad, &full[..full.len() - 1]);
        assert_bad(&bad, &good_lab, &bad, "truncated");
        write(&bad, &full[..10]);
        assert_bad(&bad, &good_lab, &bad, "too short");
        write(&bad, &full[..2]);
        assert_bad(&bad, &good_lab, &bad, "too short");
        write(&bad, b"");
        assert_bad(&bad, &good_lab, &bad, "too short");
        let mut extra = full.clone();
        extra.push(0);
        write(&bad, &extra);
        assert_bad(&bad, &good_lab, &bad, "unexpected bytes");
        write(&bad, &idx_images(3, 32, 32));
        assert_bad(&bad, &good_lab, &bad, "32x32");
        write(&bad, &idx_labels(&[1, 2, 3]));
        assert_bad(&bad, &good_lab, &bad, "label file");
        assert_bad(&good_img, &good_img, &good_img, "0x00000801");

        let gz = gzip(&full);
        write(&bad, &gz[..gz.len() / 2]);
        assert_bad(&bad, &good_lab, &bad, "gzip");
        let mut garbage = gz.clone();
        for b in garbage.iter_mut().skip(12).take(64) {
            *b ^= 0x5a;
        }
        write(&bad, &garbage);
        assert_bad(&bad, &good_lab, &bad, "gzip");

        write(&bad, &idx_labels(&[1, 12, 3]));
        assert_bad(&good_img, &bad, &bad, "label 12 at index 1");
        write(&bad, &idx_labels(&[1, 2]));
        assert_bad(&good_img, &bad, &bad, "has 2 labels");
        let labs = idx_labels(&[1, 2, 3]);
        write(&bad, &labs[..labs.len() - 1]);
        assert_bad(&good_img, &bad, &bad, "truncated");

        let missing = dir.path().join("missing");
        assert_bad(&missing, &good_lab, &missing, "cannot read");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Damaged IDX files (raw or gzipped) give errors, never a crash or a wrong size.
        #[test]
        fn damaged_idx_files_never_panic(
            gz: bool,
            cut in 0usize..3000,
            flips in proptest::collection::vec((0usize..3000, 1u8..=255), 0..6),
        ) {
            let mut img = idx_images(2, 28, 28);
            let mut lab = idx_labels(&[4, 2]);
            for (at, x) in flips {
                let (ni, nl) = (img.len(), lab.len());
                if at % 2 == 0 { img[at % ni] ^= x } else { lab[at % nl] ^= x }
            }
            img.truncate(img.len().saturating_sub(cut % 40));
            if gz {
                img = gzip(&img);
                let n = img.len();
                img.truncate(n.saturating_sub(cut % 7));
            }
            let dir = TempDir::new("idx-prop");
            let (pi, pl) = (dir.path().join("i"), dir.path().join("l"));
            write(&pi, &img);
            write(&pl, &lab);
            if let Ok((pixels, labels)) = load(&pi, &pl, 28, 28) {
                proptest::prop_assert_eq!(pixels.len(), labels.len() * 784);
                proptest::prop_assert!(labels.iter().all(|&l| l < 10));
            }
        }
    }
}
