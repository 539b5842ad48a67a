//! NumPy `.npy` / `.npz` input and output (float32 tensors, int64 labels).

mod header;

use super::atomic;
use crate::error::{Error, Result};
use header::{Header, Kind};
use npyz::WriterBuilder;
use std::io::{Read, Seek};
use std::path::Path;

/// A dense array read from a file: row-major values and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, e)
}

/// Data is read in pieces of at most this size, so memory grows with the bytes that really
/// arrive rather than with what a header claims (an `.npz` member's sizes are claims too).
const READ_CHUNK: usize = 1 << 26;

/// Reads one `.npy` stream of `avail` bytes (the file's size, or an `.npz` member's).
/// Every size the file states is checked against `avail` before anything is allocated.
fn read_npy<R: Read>(mut r: R, avail: u64, path: &Path, what: &str) -> Result<Array<f64>> {
    let err = |e: String| bad(path, format!("{what}{e}"));
    let mut start = [0u8; 8];
    r.read_exact(&mut start).map_err(|_| err("too short to be a .npy file".into()))?;
    if &start[..6] != header::MAGIC {
        return Err(err("not a .npy file (bad magic)".into()));
    }
    let prefix = header::prefix_len(start[6], start[7]).map_err(err)?;
    let mut len_field = [0u8; 4];
    r.read_exact(&mut len_field[..prefix - 8]).map_err(|_| err("truncated .npy header".into()))?;
    let header_len = u32::from_le_bytes(len_field) as usize;
    if header_len > header::MAX_HEADER_LEN {
        return Err(err(format!("header length {header_len} exceeds the {} bytes a .npy header may have", header::MAX_HEADER_LEN)));
    }
    let data_avail = avail
        .checked_sub((prefix + header_len) as u64)
        .ok_or_else(|| err(format!("header length {header_len} is longer than the file ({avail} bytes)")))?;
    let mut text = vec![0u8; header_len];
    r.read_exact(&mut text).map_err(|_| err("truncated .npy header".into()))?;
    let h: Header = header::parse(&text).map_err(|e| err(format!("invalid .npy header: {e}")))?;
    if h.fortran_order && h.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(err("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let needed = h.data_len().map_err(err)?;
    if needed as u64 > data_avail {
        return Err(err(format!("shape {:?} needs {needed} bytes of data but only {data_avail} follow the header", h.shape)));
    }
    let mut bytes = Vec::with_capacity(needed.min(READ_CHUNK));
    r.take(needed as u64).read_to_end(&mut bytes).map_err(|e| err(format!("cannot read array data: {e}")))?;
    if bytes.len() != needed {
        return Err(err(format!("array data is shorter than its shape {:?} ({} of {needed} bytes)", h.shape, bytes.len())));
    }
    Ok(Array { data: decode(&bytes, &h), shape: h.shape })
}

fn decode(bytes: &[u8], h: &Header) -> Vec<f64> {
    fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }
    macro_rules! each {
        ($t:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| (if h.little_endian { <$t>::from_le_bytes(arr(c)) } else { <$t>::from_be_bytes(arr(c)) }) as f64)
                .collect()
        };
    }
    match h.kind {
        Kind::F4 => each!(f32, 4),
        Kind::F8 => each!(f64, 8),
        Kind::I1 => each!(i8, 1),
        Kind::I2 => each!(i16, 2),
        Kind::I4 => each!(i32, 4),
        Kind::I8 => each!(i64, 8),
        Kind::U1 => each!(u8, 1),
        Kind::U2 => each!(u16, 2),
        Kind::U4 => each!(u32, 4),
        Kind::U8 => each!(u64, 8),
    }
}

fn read_npz<R: Read + Seek>(reader: R, path: &Path, preferred: &[&str]) -> Result<Array<f64>> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad(path, format!("not a valid .npz archive: {e}")))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.strip_suffix(".npy")).map(str::to_owned).collect();
    let name = preferred
        .iter()
        .find(|p| names.iter().any(|n| n == *p))
        .map(|s| s.to_string())
        .or_else(|| (names.len() == 1).then(|| names[0].clone()))
        .ok_or_else(|| bad(path, format!("expected one array or one named {preferred:?}, found {names:?}")))?;
    let member = zip.by_name(&format!("{name}.npy")).map_err(|e| bad(path, format!("array {name}: {e}")))?;
    let size = member.size();
    read_npy(member, size, path, &format!("array {name}: "))
}

/// Reads an array from `.npy`, or from `.npz` (its only array, or the first of `preferred`).
fn read_any(path: &Path, preferred: &[&str]) -> Result<Array<f64>> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    let size = file.metadata().map_err(|e| bad(path, format!("cannot open: {e}")))?.len();
    let mut reader = std::io::BufReader::new(file);
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).map_err(|_| bad(path, "file is too short to be .npy or .npz"))?;
    reader.rewind().map_err(|e| bad(path, e))?;
    match &magic {
        b"PK\x03\x04" => read_npz(reader, path, preferred),
        [0x93, b'N', b'U', b'M'] => read_npy(reader, size, path, ""),
        _ => Err(bad(path, "not a .npy or .npz file")),
    }
}

/// Float32 data (inputs). Rejects NaN and infinite values.
pub fn read_f32(path: &Path, preferred: &[&str]) -> Result<Array<f32>> {
    let a = read_any(path, preferred)?;
    // Checked after the conversion: a finite float64 beyond f32::MAX becomes inf.
    let data: Vec<f32> = a.data.iter().map(|&v| v as f32).collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let what = match a.data[i] {
            v if v.is_finite() => format!("the value {v:e}, beyond the float32 range,"),
            _ => "a non-finite value (NaN or inf)".to_string(),
        };
        return Err(bad(path, format!("contains {what} at flat index {i}")));
    }
    Ok(Array { shape: a.shape, data })
}

/// Integer labels, e.g. int64 `[N]`.
pub fn read_labels(path: &Path) -> Result<Array<i64>> {
    let a = read_any(path, &["labels", "y"])?;
    let data = a
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() != 0.0 || v < 0.0 || !v.is_finite() {
                Err(bad(path, format!("label at index {i} is {v}, not a non-negative integer")))
            } else {
                Ok(v as i64)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Array { shape: a.shape, data })
}

/// Writes float32 arrays into an `.npz` archive, atomically.
pub fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[f32])]) -> Result<()> {
    atomic::write_with(path, |file| {
        let io_err = |e: std::io::Error| Error::internal(format!("{}: {e}", path.display()));
        let mut npz = npyz::npz::NpzWriter::new(std::io::BufWriter::new(file));
        for (name, shape, data) in arrays {
            let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut w = npz
                .array::<f32>(name, zip::write::FileOptions::default())
                .map_err(io_err)?
                .default_dtype()
                .shape(&shape)
                .begin_nd()
                .map_err(io_err)?;
            w.extend(data.iter().copied()).map_err(io_err)?;
            w.finish().map_err(io_err)?;
        }
        drop(npz);
        Ok(())
    })
}

/// Writes one float32 array as `.npy`, atomically.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    atomic::write_with(path, |file| {
        let io_err = |e: std::io::Error| Error::internal(format!("{}: {e}", path.display()));
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(io_err)?;
        w.extend(data.iter().copied()).map_err(io_err)?;
        w.finish().map_err(io_err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ironbound-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn npy_and_npz_round_trip() {
        let p = tmp("x.npy");
        write_npy(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let a = read_f32(&p, &[]).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let z = tmp("b.npz");
        write_npz(&z, &[("lower", &[2], &[-1.0, 0.5]), ("upper", &[2], &[1.0, 2.0])]).unwrap();
        assert_eq!(read_f32(&z, &["upper"]).unwrap().data, vec![1.0, 2.0]);
        assert!(read_f32(&z, &[]).is_err(), "two arrays and no preferred name is ambiguous");
    }

    #[test]
    fn rejects_nan_and_garbage() {
        let p = tmp("nan.npy");
        write_npy(&p, &[2], &[1.0, f32::NAN]).unwrap();
        let e = read_f32(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("NaN"), "{e}");
        let g = tmp("garbage.npy");
        std::fs::write(&g, b"hello world").unwrap();
        assert!(read_f32(&g, &[]).unwrap_err().to_string().contains("garbage.npy"));
        let l = tmp("labels.npy");
        write_npy(&l, &[2], &[1.0, 2.5]).unwrap();
        assert!(read_labels(&l).is_err());
    }

    /// A `.npy` file: `version` 1 or 2, the header text padded as NumPy pads it, then `data`.
    fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        let prefix = if version == 1 { 10 } else { 12 };
        while (prefix + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = header::MAGIC.to_vec();
        out.extend([version, 0]);
        match version {
            1 => out.extend((h.len() as u16).to_le_bytes()),
            _ => out.extend((h.len() as u32).to_le_bytes()),
        }
        out.extend(h);
        out.extend(data);
        out
    }

    fn read_err(name: &str, bytes: &[u8]) -> String {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        let e = read_f32(&p, &[]).expect_err(name).to_string();
        assert!(e.contains(name) && !e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn reads_numpy_layouts() {
        let p = tmp("be.npy");
        let data: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        std::fs::write(&p, npy_bytes(2, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", &data)).unwrap();
        assert_eq!(read_f32(&p, &[]).unwrap().data, vec![1.5, -2.0]);
        let p = tmp("u1.npy");
        std::fs::write(&p, npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3), }", &[0, 7, 255])).unwrap();
        assert_eq!(read_labels(&p).unwrap(), Array { shape: vec![1, 3], data: vec![0, 7, 255] });
        let p = tmp("fortran.npy");
        std::fs::write(&p, npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", &[0; 16])).unwrap();
        assert!(read_f32(&p, &[]).unwrap_err().to_string().contains("Fortran"));
    }

    #[test]
    fn shape_overflow_is_an_error() {
        // 2^32 * 2^32 wraps to 0 in u64: the data check must not be fooled by it.
        let big = 1u64 << 32;
        read_err("overflow.npy", &npy_bytes(1, &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({big}, {big}), }}"), &[]));
        read_err("overflow2.npy", &npy_bytes(1, &format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, ), }}", u64::MAX / 4), &[]));
    }

    #[test]
    fn nested_braces_header_fails_fast() {
        let mut h = "{'descr': ".to_string();
        h.push_str(&"{".repeat(90));
        let e = read_err("braces.npy", &npy_bytes(1, &h, &[]));
        assert!(e.contains("invalid .npy header"), "{e}");
    }

    #[test]
    fn huge_claims_fail_before_allocating() {
        // A version-2 length field near 2^32 in a 12-byte file.
        let mut b = header::MAGIC.to_vec();
        b.extend([2, 0]);
        b.extend(0xffff_fff0u32.to_le_bytes());
        assert!(read_err("hugeheader.npy", &b).contains("header length"));
        // A header within the cap but longer than the file.
        let mut b = header::MAGIC.to_vec();
        b.extend([2, 0]);
        b.extend(60_000u32.to_le_bytes());
        b.extend(b"{'descr'");
        assert!(read_err("longheader.npy", &b).contains("longer than the file"));
        // 10^12 elements claimed by a file with 8 bytes of data.
        let e = read_err("claims.npy", &npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", &[0; 8]));
        assert!(e.contains("needs 4000000000000 bytes"), "{e}");
        // The same inside an .npz member.
        let z = tmp("claims.npz");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&z).unwrap());
        w.start_file("x.npy", zip::write::FileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, &npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", &[0; 8])).unwrap();
        w.finish().unwrap();
        let e = read_f32(&z, &["x"]).unwrap_err().to_string();
        assert!(e.contains("claims.npz") && e.contains("array x") && e.contains("needs"), "{e}");
    }

    #[test]
    fn float64_beyond_the_float32_range_is_an_error() {
        // Found by fuzz_readers: 1e300 is finite as float64 but became inf as float32.
        let data: Vec<u8> = [0.5f64, 1e300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = read_err("f64big.npy", &npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", &data));
        assert!(e.contains("1e300") && e.contains("float32 range") && e.contains("index 1"), "{e}");
    }

    #[test]
    fn a_member_name_with_a_newline_is_a_one_line_error() {
        // Found by fuzz_readers: the name of an .npz member was quoted raw in the error.
        let z = tmp("newline.npz");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&z).unwrap());
        w.start_file("x\n.npy", zip::write::FileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, b"not an array").unwrap();
        w.finish().unwrap();
        let e = read_f32(&z, &[]).unwrap_err().to_string();
        assert!(e.contains("array x\\n: not a .npy file") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn truncated_data_is_an_error() {
        let e = read_err("short.npy", &npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", &[0; 8]));
        assert!(e.contains("needs 12 bytes"), "{e}");
    }
}
