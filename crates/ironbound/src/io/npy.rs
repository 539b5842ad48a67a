//! NumPy `.npy` / `.npz` input and output (float32 tensors, int64 labels).

use super::atomic;
use crate::error::{Error, Result};
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

fn read_npy<R: Read>(npy: npyz::NpyFile<R>, path: &Path) -> Result<Array<f64>> {
    if npy.order() == npyz::Order::Fortran {
        return Err(bad(path, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray"));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let data: Vec<f64> = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => npy.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
        "f8" => npy.into_vec::<f64>(),
        "i8" => npy.into_vec::<i64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        "i4" => npy.into_vec::<i32>().map(|v| v.into_iter().map(f64::from).collect()),
        "u1" => npy.into_vec::<u8>().map(|v| v.into_iter().map(f64::from).collect()),
        "i1" => npy.into_vec::<i8>().map(|v| v.into_iter().map(f64::from).collect()),
        other => return Err(bad(path, format!("unsupported dtype '{other}' (use float32, float64 or an integer type)"))),
    }
    .map_err(|e| bad(path, format!("cannot read array data: {e}")))?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(bad(path, "array data is shorter than its shape"));
    }
    Ok(Array { shape, data })
}

fn read_npz<R: Read + Seek>(reader: R, path: &Path, preferred: &[&str]) -> Result<Array<f64>> {
    let mut npz = npyz::npz::NpzArchive::new(reader).map_err(|e| bad(path, format!("not a valid .npz archive: {e}")))?;
    let names: Vec<String> = npz.array_names().map(str::to_owned).collect();
    let name = preferred
        .iter()
        .find(|p| names.iter().any(|n| n == *p))
        .map(|s| s.to_string())
        .or_else(|| (names.len() == 1).then(|| names[0].clone()))
        .ok_or_else(|| bad(path, format!("expected one array or one named {preferred:?}, found {names:?}")))?;
    let npy = npz.by_name(&name).map_err(|e| bad(path, e))?.ok_or_else(|| bad(path, format!("array {name} missing")))?;
    read_npy(npy, path)
}

/// Reads an array from `.npy`, or from `.npz` (its only array, or the first of `preferred`).
fn read_any(path: &Path, preferred: &[&str]) -> Result<Array<f64>> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    let mut reader = std::io::BufReader::new(file);
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).map_err(|_| bad(path, "file is too short to be .npy or .npz"))?;
    reader.rewind().map_err(|e| bad(path, e))?;
    match &magic {
        b"PK\x03\x04" => read_npz(reader, path, preferred),
        [0x93, b'N', b'U', b'M'] => {
            let npy = npyz::NpyFile::new(reader).map_err(|e| bad(path, format!("not a valid .npy file: {e}")))?;
            read_npy(npy, path)
        }
        _ => Err(bad(path, "not a .npy or .npz file")),
    }
}

/// Float32 data (inputs). Rejects NaN and infinite values.
pub fn read_f32(path: &Path, preferred: &[&str]) -> Result<Array<f32>> {
    let a = read_any(path, preferred)?;
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(bad(path, format!("contains a non-finite value (NaN or inf) at flat index {i}")));
    }
    Ok(Array { shape: a.shape, data: a.data.into_iter().map(|v| v as f32).collect() })
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
}
