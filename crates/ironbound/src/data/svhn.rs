//! SVHN cropped digits (`{train,test}_32x32.mat`, MATLAB v5): `X` is uint8 of size
//! (32, 32, 3, N) stored column-major, i.e. X(h, w, c, n); `y` is (N, 1) with labels 1..10,
//! where 10 stands for the digit 0. See <http://ufldl.stanford.edu/housenumbers/>.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use matfile::{MatFile, NumericData};

use crate::error::{Error, Result};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const PIXELS: usize = 3 * PLANE;

pub(crate) fn file_name(split: super::Split) -> &'static str {
    match split {
        super::Split::Train => "train_32x32.mat",
        super::Split::Test => "test_32x32.mat",
    }
}

/// Most bytes the compressed elements of one file may inflate to, together. SVHN's train
/// split holds about 226 MB of matrices; a zlib bomb stops here.
const MAX_INFLATED: u64 = 1 << 30;

/// Rejects what `matfile` cannot read with a message a user can act on, and returns the file
/// as `matfile` should see it (see [`flatten`]).
fn check_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    if bytes.len() < 128 {
        return Err(Error::file(
            path,
            "too short to be a MATLAB .mat file (128-byte header)",
        ));
    }
    let version = match &bytes[126..128] {
        b"IM" => u16::from_le_bytes([bytes[124], bytes[125]]),
        b"MI" => u16::from_be_bytes([bytes[124], bytes[125]]),
        _ => {
            return Err(Error::file(
                path,
                "not a MATLAB v5 .mat file (no endian marker)",
            ))
        }
    };
    match version {
        0x0100 => flatten(path, bytes, &bytes[126..128] == b"IM"),
        0x0200 => Err(Error::file(
            path,
            "MATLAB v7.3 (HDF5) files are not supported; use the original SVHN file \
             or re-save it with save(..., '-v7')",
        )),
        v => Err(Error::file(
            path,
            format!("unknown MATLAB file version 0x{v:04x}"),
        )),
    }
}

/// Walks the top-level data elements and returns the file with every miCOMPRESSED element
/// replaced by the miMATRIX it inflates to (borrowed when nothing is compressed).
///
/// `matfile` would inflate them itself, but it prints zlib errors to stderr and announces any
/// element that is not a matrix on stdout, around the one-line error the contract promises,
/// and it inflates without a bound. It also silently drops a last element that is cut short,
/// which would turn a truncated download into a confusing "no variable y".
fn flatten<'a>(path: &Path, bytes: &'a [u8], little: bool) -> Result<Cow<'a, [u8]>> {
    let word = |b: &[u8], at: usize| {
        let b = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut out: Option<Vec<u8>> = None;
    let mut inflated = 0u64;
    let mut at = 128usize;
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            return Err(Error::file(
                path,
                format!("truncated: partial element tag at byte {at}"),
            ));
        }
        let (data_type, size) = (word(bytes, at), word(bytes, at + 4) as usize);
        if data_type != MI_MATRIX && data_type != MI_COMPRESSED {
            return Err(Error::file(
                path,
                format!("element at byte {at} has data type {data_type:#x}, not a matrix (14) or a compressed matrix (15)"),
            ));
        }
        let remaining = bytes.len() - at;
        // miCOMPRESSED is not padded; MATLAB may omit the padding of the very last element.
        let len = if data_type == MI_COMPRESSED { 8 + size } else { 8 + size.div_ceil(8) * 8 };
        if 8 + size > remaining {
            return Err(Error::file(
                path,
                format!(
                    "truncated: element at byte {at} needs {len} bytes but only {remaining} remain"
                ),
            ));
        }
        let element = &bytes[at..at + len.min(remaining)];
        if data_type == MI_COMPRESSED {
            let out = out.get_or_insert_with(|| bytes[..at].to_vec());
            let mut plain = Vec::new();
            flate2::read::ZlibDecoder::new(&element[8..])
                .take(MAX_INFLATED - inflated + 1)
                .read_to_end(&mut plain)
                .map_err(|e| Error::file(path, format!("corrupt compressed element at byte {at}: {e}")))?;
            inflated += plain.len() as u64;
            if inflated > MAX_INFLATED {
                return Err(Error::file(path, "compressed elements inflate to more than 1 GiB; not an SVHN file"));
            }
            let inner = (plain.len() >= 8).then(|| (word(&plain, 0), word(&plain, 4) as usize));
            match inner {
                Some((MI_MATRIX, n)) if 8 + n <= plain.len() => {
                    // Padded so that the element after it starts on an 8-byte boundary.
                    plain.truncate(8 + n);
                    plain.resize((8 + n).div_ceil(8) * 8, 0);
                    out.extend(plain);
                }
                _ => {
                    return Err(Error::file(
                        path,
                        format!("compressed element at byte {at} does not hold a whole matrix"),
                    ))
                }
            }
        } else if let Some(out) = out.as_mut() {
            out.extend(element);
        }
        at += len.min(remaining);
    }
    Ok(out.map_or(Cow::Borrowed(bytes), Cow::Owned))
}

const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

fn parse(path: &Path, bytes: &[u8]) -> Result<MatFile> {
    let bytes = check_header(path, bytes)?;
    // matfile is third-party code fed untrusted bytes and can panic on some malformed
    // inputs (e.g. dimension overflow); turn that into an error instead of a crash.
    let parsed = crate::error::catch_panic(|| MatFile::parse(&bytes[..]));
    match parsed {
        Ok(Ok(mat)) => Ok(mat),
        Ok(Err(e)) => Err(Error::file(
            path,
            format!("corrupt or unsupported .mat file: {e}"),
        )),
        Err(_) => Err(Error::file(
            path,
            "corrupt .mat file (the parser failed on it)",
        )),
    }
}

fn variable<'a>(path: &Path, mat: &'a MatFile, name: &str) -> Result<&'a matfile::Array> {
    mat.find_by_name(name).ok_or_else(|| {
        let found: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        Error::file(
            path,
            format!("no numeric variable '{name}' (found: {})", found.join(", ")),
        )
    })
}

/// Converts any numeric MATLAB array to f64, since `y` is saved as double but MATLAB may
/// store it with a smaller integer type.
fn as_f64(data: &NumericData) -> Vec<f64> {
    match data {
        NumericData::Int8 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt8 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int16 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt16 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int32 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::UInt32 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        NumericData::UInt64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        NumericData::Single { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Double { real, .. } => real.clone(),
    }
}

/// Loads an SVHN .mat file into NCHW unit floats and labels 0..10.
pub(crate) fn load(path: &Path) -> Result<(Vec<f32>, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mat = parse(path, &bytes)?;
    drop(bytes);

    let x = variable(path, &mat, "X")?;
    let n = match x.size().as_slice() {
        [32, 32, 3, n] => *n,
        [32, 32, 3] => 1, // MATLAB drops a trailing singleton dimension
        other => {
            return Err(Error::file(
                path,
                format!("X has size {other:?}, expected [32, 32, 3, N]"),
            ))
        }
    };
    let NumericData::UInt8 { real: xs, .. } = x.data() else {
        return Err(Error::file(path, "X is not uint8"));
    };
    // Checked: N comes from the file's dimensions, which need not match its data.
    if n.checked_mul(PIXELS) != Some(xs.len()) {
        return Err(Error::file(
            path,
            format!("X holds {} values, expected {n} x {PIXELS}", xs.len()),
        ));
    }

    let y = variable(path, &mat, "y")?;
    let ys = as_f64(y.data());
    if ys.len() != n || y.size().iter().filter(|&&d| d != 1).count() > 1 {
        return Err(Error::file(
            path,
            format!("y has size {:?}, expected [{n}, 1] to match X", y.size()),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in ys.iter().enumerate() {
        // 10 means digit 0; accept 0 too for files already remapped.
        let label = match v {
            v if v == 10.0 || v == 0.0 => 0,
            v if v.fract() == 0.0 && (1.0..=9.0).contains(&v) => v as u8,
            _ => {
                return Err(Error::file(
                    path,
                    format!("label {v} at index {i} is not in 1..10"),
                ))
            }
        };
        labels.push(label);
    }

    // Column-major X(h, w, c, n) sits at h + 32*w + 1024*c + 3072*n; write NCHW.
    let mut images = Vec::with_capacity(n * PIXELS);
    for img in xs.chunks_exact(PIXELS) {
        for plane in img.chunks_exact(PLANE) {
            for h in 0..SIDE {
                images.extend((0..SIDE).map(|w| f32::from(plane[h + SIDE * w]) / 255.0));
            }
        }
    }
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;
    use std::io::Write;

    /// One uncompressed miMATRIX element (tag included), built by hand per the MAT v5 spec.
    fn matrix(name: &str, class: u32, dims: &[u32], data_type: u32, data: &[u8]) -> Vec<u8> {
        fn pad8(v: &mut Vec<u8>) {
            while !v.len().is_multiple_of(8) {
                v.push(0);
            }
        }
        let mut body = Vec::new();
        // array flags: miUINT32, 8 bytes: class, nzmax
        for w in [6u32, 8, class, 0] {
            body.extend_from_slice(&w.to_le_bytes());
        }
        // dimensions: miINT32
        body.extend_from_slice(&5u32.to_le_bytes());
        body.extend_from_slice(&(4 * dims.len() as u32).to_le_bytes());
        for d in dims {
            body.extend_from_slice(&d.to_le_bytes());
        }
        pad8(&mut body);
        // name: small data element format (miINT8) when it fits in 4 bytes, as MATLAB does
        if name.len() <= 4 {
            body.extend_from_slice(&(1u32 | ((name.len() as u32) << 16)).to_le_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(4, 0);
            body.extend_from_slice(&n);
        } else {
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            pad8(&mut body);
        }
        // real part
        body.extend_from_slice(&data_type.to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        pad8(&mut body);

        let mut el = Vec::new();
        el.extend_from_slice(&14u32.to_le_bytes()); // miMATRIX
        el.extend_from_slice(&(body.len() as u32).to_le_bytes());
        el.extend_from_slice(&body);
        el
    }

    fn compressed(element: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(element).unwrap();
        let z = z.finish().unwrap();
        let mut el = Vec::new();
        el.extend_from_slice(&15u32.to_le_bytes()); // miCOMPRESSED
        el.extend_from_slice(&(z.len() as u32).to_le_bytes());
        el.extend_from_slice(&z);
        el
    }

    fn header() -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, written by ironbound tests".to_vec();
        h.resize(116, b' ');
        h.extend_from_slice(&[0; 8]); // subsystem data offset
        h.extend_from_slice(&0x0100u16.to_le_bytes());
        h.extend_from_slice(b"IM");
        h
    }

    /// X(h, w, c, n) = (h + 2w + 5c + 11n) mod 256, written column-major.
    fn x_value(h: usize, w: usize, c: usize, n: usize) -> u8 {
        ((h + 2 * w + 5 * c + 11 * n) % 256) as u8
    }

    fn x_bytes(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * PIXELS);
        for i in 0..n {
            for c in 0..3 {
                for w in 0..SIDE {
                    for h in 0..SIDE {
                        v.push(x_value(h, w, c, i));
                    }
                }
            }
        }
        v
    }

    fn svhn_file(labels: &[f64], compress: bool) -> Vec<u8> {
        let n = labels.len();
        let x = matrix("X", 9, &[32, 32, 3, n as u32], 2, &x_bytes(n)); // uint8 class, miUINT8
        let y = if compress {
            // MATLAB stores small-integer doubles as miUINT8 to save space.
            let raw: Vec<u8> = labels.iter().map(|&v| v as u8).collect();
            matrix("y", 6, &[n as u32, 1], 2, &raw)
        } else {
            let raw: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
            matrix("y", 6, &[n as u32, 1], 9, &raw) // double class, miDOUBLE
        };
        let mut f = header();
        if compress {
            f.extend(compressed(&x));
            f.extend(compressed(&y));
        } else {
            f.extend(x);
            f.extend(y);
        }
        f
    }

    fn check_roundtrip(compress: bool) {
        let dir = TempDir::new("svhn");
        let p = dir.path().join("test_32x32.mat");
        write(&p, &svhn_file(&[10.0, 3.0, 1.0], compress));
        let (img, lab) = load(&p).unwrap();
        assert_eq!(lab, vec![0, 3, 1], "label 10 must become 0");
        assert_eq!(img.len(), 3 * PIXELS);
        for (n, c, h, w) in [
            (0, 0, 0, 0),
            (1, 2, 5, 17),
            (2, 1, 31, 0),
            (2, 0, 0, 31),
            (0, 2, 30, 29),
        ] {
            let got = img[n * PIXELS + c * PLANE + h * SIDE + w];
            assert_eq!(
                got,
                f32::from(x_value(h, w, c, n)) / 255.0,
                "(n,c,h,w)=({n},{c},{h},{w})"
            );
        }
    }

    #[test]
    fn uncompressed_mat_roundtrip() {
        check_roundtrip(false);
    }

    #[test]
    fn compressed_mat_roundtrip() {
        check_roundtrip(true);
    }

    #[test]
    fn bad_mat_files_are_reported_with_their_path() {
        let dir = TempDir::new("svhn-bad");
        let p = dir.path().join("train_32x32.mat");
        let good = svhn_file(&[1.0, 2.0], false);
        let mut v73 = good.clone();
        v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
        let mut wrong_y = header();
        wrong_y.extend(matrix("X", 9, &[32, 32, 3, 2], 2, &x_bytes(2)));
        wrong_y.extend(matrix("y", 6, &[3, 1], 9, &[0u8; 24]));
        let mut no_y = header();
        no_y.extend(matrix("X", 9, &[32, 32, 3, 1], 2, &x_bytes(1)));
        let mut wrong_x = header();
        wrong_x.extend(matrix("X", 9, &[28, 28, 1, 1], 2, &[0u8; 784]));
        wrong_x.extend(matrix("y", 6, &[1, 1], 9, &1.0f64.to_le_bytes()));
        let mut garbled_zlib = svhn_file(&[1.0, 2.0], true);
        let mid = 128 + 8 + 20; // inside the zlib stream of X
        for b in &mut garbled_zlib[mid..mid + 40] {
            *b ^= 0xa5;
        }
        for (bytes, what) in [
            (good[..good.len() - 100].to_vec(), "truncated"),
            (good[..50].to_vec(), "too short"),
            (vec![b'x'; 300], "not a MATLAB v5"),
            (v73, "v7.3"),
            (svhn_file(&[1.0, 11.0], false), "label 11 at index 1"),
            (svhn_file(&[1.5], false), "label 1.5"),
            (wrong_y, "y has size [3, 1]"),
            (no_y, "no numeric variable 'y' (found: X)"),
            (wrong_x, "expected [32, 32, 3, N]"),
            (garbled_zlib, "corrupt"),
        ] {
            write(&p, &bytes);
            match load(&p) {
                Err(Error::InvalidFile { path, reason }) => {
                    assert_eq!(path, p);
                    assert!(reason.contains(what), "{reason:?} lacks {what:?}");
                }
                other => panic!("expected InvalidFile about {what}, got {other:?}"),
            }
        }
    }

    #[test]
    fn elements_matfile_would_print_about_are_errors_of_ours() {
        // Found by fuzz_readers: matfile prints a zlib error to stderr, and announces a
        // top-level element that is not a matrix on stdout, around our one-line error.
        let dir = TempDir::new("svhn-quiet");
        let p = dir.path().join("test_32x32.mat");
        let mut int8 = svhn_file(&[1.0], false);
        int8.extend(1u32.to_le_bytes()); // miINT8
        int8.extend(8u32.to_le_bytes());
        int8.extend([0u8; 8]);
        let mut bad_zlib = header();
        bad_zlib.extend(15u32.to_le_bytes());
        bad_zlib.extend(6u32.to_le_bytes());
        bad_zlib.extend(b"\x78\x9c\xff\xff\xff\xff");
        let mut not_a_matrix = header();
        not_a_matrix.extend(compressed(&[1, 0, 0, 0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]));
        for (bytes, what) in [
            (int8, "has data type 0x1, not a matrix"),
            (bad_zlib, "corrupt compressed element at byte 128"),
            (not_a_matrix, "compressed element at byte 128 does not hold a whole matrix"),
        ] {
            write(&p, &bytes);
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("test_32x32.mat") && !e.contains('\n'), "{e}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Damaged files give errors, never a crash.
        #[test]
        fn damaged_mat_files_never_panic(
            compress: bool,
            cut in 0usize..7000,
            flips in proptest::collection::vec((0usize..7000, 1u8..=255), 0..8),
        ) {
            let mut bytes = svhn_file(&[3.0, 10.0], compress);
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            bytes.truncate(bytes.len().saturating_sub(cut % 200));
            let dir = TempDir::new("svhn-prop");
            let p = dir.path().join("t.mat");
            write(&p, &bytes);
            if let Ok((img, lab)) = load(&p) {
                proptest::prop_assert_eq!(img.len(), lab.len() * PIXELS);
                proptest::prop_assert!(lab.iter().all(|&l| l < 10));
            }
        }
    }
}
