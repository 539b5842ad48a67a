//! Constant tensors and the tiny evaluator that folds the constant sub-graphs exporters emit
//! (PyTorch's `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` flatten, casts, arithmetic on
//! constants). Every function checks its inputs and returns `Err(reason)`; nothing panics.

use super::proto::{data_type, TensorProto};

/// Largest constant the evaluator will create (elements), so a crafted model cannot make it
/// allocate without bound.
const MAX_FOLDED: usize = 1 << 26;

/// Largest accepted dimension of any tensor or shape.
pub(crate) const MAX_DIM: i64 = 1 << 31;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    F(Vec<f32>),
    I(Vec<i64>),
}

/// A constant tensor: row-major values with their dims.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

pub(crate) type R<T> = std::result::Result<T, String>;

/// Product of dims, failing on overflow or beyond `limit`.
pub(crate) fn checked_numel(dims: &[usize], limit: usize) -> R<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d).filter(|&n| n <= limit).ok_or_else(|| format!("tensor of shape {dims:?} is too large"))?;
    }
    Ok(n)
}

impl Const {
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F(v) => v.len(),
            Data::I(v) => v.len(),
        }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn ints(dims: Vec<usize>, v: Vec<i64>) -> Const {
        Const { dims, data: Data::I(v) }
    }

    pub fn floats(dims: Vec<usize>, v: Vec<f32>) -> Const {
        Const { dims, data: Data::F(v) }
    }

    /// Values as floats (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as integers; floats are refused (shapes and indices must be integers).
    pub fn as_ints(&self) -> R<&[i64]> {
        match &self.data {
            Data::I(v) => Ok(v),
            Data::F(_) => Err("expected an integer tensor, got a float tensor".into()),
        }
    }

    fn with_data(&self, dims: Vec<usize>, data: Data) -> Const {
        let _ = self;
        Const { dims, data }
    }
}

/// Parses an initializer or `Constant` tensor.
pub(crate) fn from_proto(t: &TensorProto) -> R<Const> {
    if t.data_location == 1 {
        return Err("stores its data in an external file, which is not supported".into());
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if !(0..=MAX_DIM).contains(&d) {
            return Err(format!("has invalid dimension {d}"));
        }
        dims.push(d as usize);
    }
    let n = checked_numel(&dims, usize::MAX / 16)?;
    let raw = &t.raw_data;
    let from_raw = |size: usize| -> R<Option<std::slice::ChunksExact<'_, u8>>> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() != n.saturating_mul(size) {
            return Err(format!("has {} bytes of raw data, but its shape {dims:?} needs {}", raw.len(), n.saturating_mul(size)));
        }
        Ok(Some(raw.chunks_exact(size)))
    };
    let data = match t.data_type {
        data_type::FLOAT => match from_raw(4)? {
            Some(c) => Data::F(c.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            None => Data::F(t.float_data.clone()),
        },
        data_type::DOUBLE => match from_raw(8)? {
            Some(c) => Data::F(c.map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32).collect()),
            None => Data::F(t.double_data.iter().map(|&x| x as f32).collect()),
        },
        data_type::INT64 => match from_raw(8)? {
            Some(c) => Data::I(c.map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect()),
            None => Data::I(t.int64_data.clone()),
        },
        data_type::INT32 => match from_raw(4)? {
            Some(c) => Data::I(c.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()),
            None => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        },
        data_type::INT16 => match from_raw(2)? {
            Some(c) => Data::I(c.map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            None => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        },
        data_type::UINT16 => match from_raw(2)? {
            Some(c) => Data::I(c.map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect()),
            None => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        },
        data_type::INT8 => match from_raw(1)? {
            Some(c) => Data::I(c.map(|b| b[0] as i8 as i64).collect()),
            None => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        },
        data_type::UINT8 | data_type::BOOL => match from_raw(1)? {
            Some(c) => Data::I(c.map(|b| b[0] as i64).collect()),
            None => Data::I(t.int32_data.iter().map(|&x| x as i64).collect()),
        },
        data_type::UINT32 => match from_raw(4)? {
            Some(c) => Data::I(c.map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect()),
            None => Data::I(t.uint64_data.iter().map(|&x| x as i64).collect()),
        },
        other => return Err(format!("has data type {other}, which is not supported (float, double and integer types are)")),
    };
    let c = Const { dims, data };
    if c.len() != n {
        return Err(format!("has {} values, but its shape {:?} needs {n}", c.len(), c.dims));
    }
    Ok(c)
}

/// Normalises a possibly negative axis for a tensor of `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

pub(crate) fn gather(data: &Const, indices: &Const, ax: i64) -> R<Const> {
    let ax = axis(ax, data.rank())?;
    let idx = indices.as_ints()?;
    let n = data.dims[ax];
    let outer: usize = data.dims[..ax].iter().product();
    let inner: usize = data.dims[ax + 1..].iter().product();
    let mut resolved = Vec::with_capacity(idx.len());
    for &i in idx {
        let j = if i < 0 { i + n as i64 } else { i };
        if !(0..n as i64).contains(&j) {
            return Err(format!("Gather index {i} is out of range for a dimension of size {n}"));
        }
        resolved.push(j as usize);
    }
    let mut dims = data.dims[..ax].to_vec();
    dims.extend_from_slice(&indices.dims);
    dims.extend_from_slice(&data.dims[ax + 1..]);
    checked_numel(&dims, MAX_FOLDED)?;
    fn pick<T: Copy>(v: &[T], outer: usize, n: usize, inner: usize, idx: &[usize]) -> Vec<T> {
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &j in idx {
                let start = (o * n + j) * inner;
                out.extend_from_slice(&v[start..start + inner]);
            }
        }
        out
    }
    let data_out = match &data.data {
        Data::F(v) => Data::F(pick(v, outer, n, inner, &resolved)),
        Data::I(v) => Data::I(pick(v, outer, n, inner, &resolved)),
    };
    Ok(data.with_data(dims, data_out))
}

pub(crate) fn unsqueeze(x: &Const, axes: &[i64]) -> R<Const> {
    let out_rank = x.rank() + axes.len();
    let mut norm = axes.iter().map(|&a| axis(a, out_rank)).collect::<R<Vec<_>>>()?;
    norm.sort_unstable();
    if norm.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("Unsqueeze axes {axes:?} repeat an axis"));
    }
    let mut dims = Vec::with_capacity(out_rank);
    let mut src = x.dims.iter();
    for i in 0..out_rank {
        if norm.binary_search(&i).is_ok() {
            dims.push(1);
        } else {
            dims.push(*src.next().ok_or("Unsqueeze axes do not fit")?);
        }
    }
    Ok(Const { dims, data: x.data.clone() })
}

pub(crate) fn squeeze(x: &Const, axes: Option<&[i64]>) -> R<Const> {
    let dims = match axes {
        None => x.dims.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let norm = axes.iter().map(|&a| axis(a, x.rank())).collect::<R<Vec<_>>>()?;
            if let Some(&a) = norm.iter().find(|&&a| x.dims[a] != 1) {
                return Err(format!("Squeeze axis {a} has size {}, not 1", x.dims[a]));
            }
            x.dims.iter().enumerate().filter(|(i, _)| !norm.contains(i)).map(|(_, &d)| d).collect()
        }
    };
    Ok(Const { dims, data: x.data.clone() })
}

pub(crate) fn concat(xs: &[&Const], ax: i64) -> R<Const> {
    let first = xs.first().ok_or("Concat needs at least one input")?;
    let ax = axis(ax, first.rank())?;
    let is_float = matches!(first.data, Data::F(_));
    for x in xs {
        if x.rank() != first.rank()
            || x.dims.iter().zip(&first.dims).enumerate().any(|(i, (a, b))| i != ax && a != b)
            || matches!(x.data, Data::F(_)) != is_float
        {
            return Err(format!("Concat inputs of shapes {:?} and {:?} (or types) do not match", first.dims, x.dims));
        }
    }
    let outer: usize = first.dims[..ax].iter().product();
    let inner: usize = first.dims[ax + 1..].iter().product();
    let mut dims = first.dims.clone();
    dims[ax] = xs.iter().map(|x| x.dims[ax]).sum();
    checked_numel(&dims, MAX_FOLDED)?;
    fn cat<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
        let mut out = Vec::new();
        for o in 0..outer {
            for (v, chunk) in parts {
                out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        out
    }
    let data = if is_float {
        let parts: Vec<(&[f32], usize)> = xs
            .iter()
            .map(|x| match &x.data {
                Data::F(v) => (v.as_slice(), x.dims[ax] * inner),
                Data::I(_) => (&[][..], 0),
            })
            .collect();
        Data::F(cat(&parts, outer))
    } else {
        let parts: Vec<(&[i64], usize)> = xs
            .iter()
            .map(|x| match &x.data {
                Data::I(v) => (v.as_slice(), x.dims[ax] * inner),
                Data::F(_) => (&[][..], 0),
            })
            .collect();
        Data::I(cat(&parts, outer))
    };
    Ok(Const { dims, data })
}

pub(crate) fn cast(x: &Const, to: i64) -> R<Const> {
    let to = i32::try_from(to).map_err(|_| format!("Cast to unknown type {to}"))?;
    let data = match to {
        data_type::FLOAT | data_type::DOUBLE => Data::F(x.to_f32()),
        data_type::INT64
        | data_type::INT32
        | data_type::INT16
        | data_type::INT8
        | data_type::UINT8
        | data_type::UINT16
        | data_type::UINT32
        | data_type::UINT64 => match &x.data {
            Data::I(v) => Data::I(v.clone()),
            Data::F(v) => Data::I(v.iter().map(|&f| f as i64).collect()),
        },
        data_type::BOOL => match &x.data {
            Data::I(v) => Data::I(v.iter().map(|&i| (i != 0) as i64).collect()),
            Data::F(v) => Data::I(v.iter().map(|&f| (f != 0.0) as i64).collect()),
        },
        other => return Err(format!("Cast to data type {other} is not supported")),
    };
    Ok(Const { dims: x.dims.clone(), data })
}

/// Resolves an ONNX `Reshape` target (`0` copies the input dimension unless `allowzero`, one
/// `-1` is inferred) for an input of `input` dims.
pub(crate) fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let total = checked_numel(input, usize::MAX)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input.get(i).ok_or_else(|| format!("Reshape target {target:?} copies dimension {i}, which the input {input:?} lacks"))?,
            ),
            t if (0..=MAX_DIM).contains(&t) => out.push(t as usize),
            _ => return Err(format!("Reshape target {target:?} is invalid")),
        }
    }
    let known = checked_numel(&out, usize::MAX)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {input:?} ({total} values) to {target:?}"));
    }
    Ok(out)
}

pub(crate) fn reshape(x: &Const, target: &[i64], allowzero: bool) -> R<Const> {
    let dims = reshape_target(&x.dims, target, allowzero)?;
    Ok(Const { dims, data: x.data.clone() })
}

/// Numpy-style broadcast of two shapes.
pub(crate) fn broadcast_dims(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Row-major index into `s` (right-aligned, broadcast) of every element of `out`.
fn broadcast_index(s: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let rank = out.len();
    let offset = rank - s.len();
    // Strides of `s` in the output's axes; 0 on broadcast axes.
    let mut strides = vec![0usize; rank];
    let mut acc = 1;
    for i in (0..s.len()).rev() {
        strides[i + offset] = if s[i] == 1 { 0 } else { acc };
        acc *= s[i];
    }
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; rank];
    for _ in 0..n {
        idx.push(pos.iter().zip(&strides).map(|(p, st)| p * st).sum());
        for d in (0..rank).rev() {
            pos[d] += 1;
            if pos[d] < out[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    idx
}

/// Elementwise `Add`/`Sub`/`Mul`/`Div` of two constants, with broadcasting.
pub(crate) fn binary(op: &str, a: &Const, b: &Const) -> R<Const> {
    let dims = broadcast_dims(&a.dims, &b.dims)?;
    checked_numel(&dims, MAX_FOLDED)?;
    let ia = broadcast_index(&a.dims, &dims);
    let ib = broadcast_index(&b.dims, &dims);
    let data = match (&a.data, &b.data) {
        (Data::F(x), Data::F(y)) => {
            let f: fn(f32, f32) -> f32 = match op {
                "Add" => |p, q| p + q,
                "Sub" => |p, q| p - q,
                "Mul" => |p, q| p * q,
                "Div" => |p, q| p / q,
                _ => return Err(format!("cannot evaluate {op} on constants")),
            };
            Data::F(ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect())
        }
        (Data::I(x), Data::I(y)) => {
            let mut out = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(&ib) {
                let (p, q) = (x[i], y[j]);
                let v = match op {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    "Div" => p.checked_div(q),
                    _ => return Err(format!("cannot evaluate {op} on constants")),
                };
                out.push(v.ok_or_else(|| format!("integer {op} of {p} and {q} overflows or divides by zero"))?);
            }
            Data::I(out)
        }
        _ => return Err(format!("{op} of a float and an integer tensor")),
    };
    Ok(Const { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_unsqueeze_concat_make_a_flatten_shape() {
        let shape = Const::ints(vec![4], vec![1, 3, 8, 8]);
        let n = gather(&shape, &Const::ints(vec![], vec![0]), 0).unwrap();
        assert_eq!(n, Const::ints(vec![], vec![1]));
        let n = unsqueeze(&n, &[0]).unwrap();
        let cat = concat(&[&n, &Const::ints(vec![1], vec![-1])], 0).unwrap();
        assert_eq!(cat, Const::ints(vec![2], vec![1, -1]));
        assert_eq!(reshape_target(&[1, 3, 8, 8], &[1, -1], false).unwrap(), vec![1, 192]);
        assert_eq!(reshape_target(&[2, 3, 8, 8], &[0, -1], false).unwrap(), vec![2, 192]);
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
        assert!(gather(&shape, &Const::ints(vec![], vec![4]), 0).is_err());
    }

    #[test]
    fn binary_broadcasts() {
        let a = Const::floats(vec![2, 1], vec![1.0, 2.0]);
        let b = Const::floats(vec![3], vec![10.0, 20.0, 30.0]);
        let c = binary("Mul", &a, &b).unwrap();
        assert_eq!(c.dims, vec![2, 3]);
        assert_eq!(c.data, Data::F(vec![10.0, 20.0, 30.0, 20.0, 40.0, 60.0]));
        assert!(binary("Div", &Const::ints(vec![], vec![1]), &Const::ints(vec![], vec![0])).is_err());
    }
}
