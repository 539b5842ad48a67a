//! A pickled tensor (storage, offset, size, stride) read out of its storage bytes as a
//! row-major f32 array, whatever its layout (transposed and sliced views included).

use super::object::TensorRef;
use super::TensorValue;

/// Elements that all tensors of one checkpoint may produce together. A stride-0 (expanded)
/// tensor of a tiny storage could otherwise claim terabytes; a real checkpoint stores each
/// element in at least one byte, so the file length bounds it (with slack for small views).
pub struct Budget(u64);

impl Budget {
    pub fn for_file(len: usize) -> Budget {
        Budget((len as u64).saturating_add(1 << 20))
    }

    fn spend(&mut self, n: u64) -> Result<(), String> {
        self.0 = self.0.checked_sub(n).ok_or("its tensors hold more elements than the file could store (corrupt sizes?)")?;
        Ok(())
    }
}

/// Reads `t` from `storage` (the whole root storage's bytes).
pub fn read(t: &TensorRef, storage: &[u8], big_endian: bool, budget: &mut Budget) -> Result<TensorValue, String> {
    let size = t.dtype.size().ok_or_else(|| format!("has element type {}, which ironbound does not know", t.type_name))?;
    let decode = t.dtype.decoder(big_endian).ok_or_else(|| format!("has element type {}, which ironbound cannot convert to float32", t.type_name))?;
    let shape: Vec<usize> = t.size.iter().map(|&d| usize::try_from(d).map_err(|_| "has an impossible size".to_string())).collect::<Result<_, _>>()?;
    let numel = t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or("has an impossible size")?;
    budget.spend(numel)?;
    if numel == 0 {
        return Ok(TensorValue { shape, data: Vec::new() });
    }
    let available = (storage.len() / size) as u64;
    // The largest element index the view touches must lie inside the storage.
    let last = t.size.iter().zip(&t.stride).fold(t.offset.checked_add(t.storage.view_offset), |acc, (&d, &s)| {
        acc.and_then(|a| (d - 1).checked_mul(s).and_then(|x| a.checked_add(x)))
    });
    match last {
        Some(l) if l < available => {}
        _ => return Err(format!("reads past the end of its storage ({available} elements)")),
    }
    let base = (t.offset + t.storage.view_offset) as usize;
    let at = |i: usize| decode(&storage[i * size..(i + 1) * size]);
    let contiguous = is_contiguous(&t.size, &t.stride);
    let data = if contiguous {
        (base..base + numel as usize).map(at).collect()
    } else {
        let stride: Vec<usize> = t.stride.iter().map(|&s| s as usize).collect();
        let mut data = Vec::with_capacity(numel as usize);
        let mut index = vec![0usize; shape.len()];
        let mut flat = base;
        for _ in 0..numel {
            data.push(at(flat));
            // Odometer step over the row-major index, keeping the storage position in step.
            for k in (0..shape.len()).rev() {
                index[k] += 1;
                flat += stride[k];
                if index[k] < shape[k] {
                    break;
                }
                flat -= stride[k] * shape[k];
                index[k] = 0;
            }
        }
        data
    };
    Ok(TensorValue { shape, data })
}

/// Row-major with no gaps (dimensions of size 1 may have any stride).
fn is_contiguous(size: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in size.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::torch::dtype::DType;
    use crate::io::torch::object::StorageRef;

    fn tensor(offset: u64, size: &[u64], stride: &[u64]) -> TensorRef {
        let storage = StorageRef { dtype: DType::F32, type_name: "torch.FloatStorage".into(), key: "0".into(), numel: 12, view_offset: 0 };
        TensorRef { storage, dtype: DType::F32, type_name: "torch.FloatStorage".into(), offset, size: size.to_vec(), stride: stride.to_vec() }
    }

    fn bytes() -> Vec<u8> {
        (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    #[test]
    fn transposed_and_offset_views() {
        let mut b = Budget::for_file(0);
        // A [3, 4] matrix transposed: size [4, 3], stride [1, 4].
        let t = read(&tensor(0, &[4, 3], &[1, 4]), &bytes(), false, &mut b).unwrap();
        assert_eq!(t.data, vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        let t = read(&tensor(5, &[3], &[2]), &bytes(), false, &mut b).unwrap();
        assert_eq!(t.data, vec![5., 7., 9.]);
        let t = read(&tensor(2, &[2, 1], &[3, 99]), &bytes(), false, &mut b).unwrap();
        assert_eq!(t.data, vec![2., 5.]);
    }

    #[test]
    fn out_of_bounds_and_huge_views_are_errors() {
        let mut b = Budget::for_file(0);
        assert!(read(&tensor(10, &[3], &[1]), &bytes(), false, &mut b).unwrap_err().contains("past the end"));
        assert!(read(&tensor(0, &[u64::MAX, 2], &[0, 0]), &bytes(), false, &mut b).is_err());
        assert!(read(&tensor(0, &[1 << 40], &[0]), &bytes(), false, &mut b).unwrap_err().contains("more elements"));
    }
}
