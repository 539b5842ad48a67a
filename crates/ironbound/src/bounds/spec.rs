//! Specifications: the linear functions of the output to bound from below.
//!
//! A spec is `C` `[B, K, F]` with B = 1 (shared by the batch) or B = N; row k asks for a lower
//! bound of `C[k] . f(x)`. Margins `f_y - f_j` are the rows `e_y - e_j`; they are folded into
//! the last layer by every engine (never computed as lower[y] - upper[j]).
//!
//! A spec may also say who the samples are: their labels and their indices in the data set.
//! Only relaxations whose ReLU lines depend on more than the bounds use them (the per-sample
//! random and sign-gradient slopes of `slopes.rs`); every other relaxation ignores them.

use crate::error::{Error, Result};
use crate::tensor::{from_vec, Device, Tensor};

#[derive(Clone, Debug)]
pub struct Spec {
    pub c: Tensor<3>,
    /// The samples' labels, when known (`margins` records them): slopes that descend the
    /// robust loss of the margins need them.
    pub labels: Option<Vec<usize>>,
    /// Each sample's index in its data set (None: its position in the batch). Random slopes
    /// of a sample are drawn from the stream of (seed, index), so a sample gets the same
    /// slopes whichever batch it is in.
    pub indices: Option<Vec<u64>>,
}

impl Spec {
    pub fn new(c: Tensor<3>) -> Self {
        Spec { c, labels: None, indices: None }
    }

    /// The same rows, for samples with these labels.
    pub fn with_labels(self, labels: &[usize]) -> Spec {
        Spec { labels: Some(labels.to_vec()), ..self }
    }

    /// The same rows, for the samples with these indices in their data set.
    pub fn with_indices(self, indices: Vec<u64>) -> Spec {
        Spec { indices: Some(indices), ..self }
    }

    /// The same rows in float type `dtype`.
    pub fn cast(&self, dtype: crate::tensor::DType) -> Spec {
        Spec { c: self.c.clone().cast(dtype), ..self.clone() }
    }

    /// Rows e_0..e_{K-1}, shared by the batch.
    pub fn identity(k: usize, device: &Device) -> Spec {
        let mut v = vec![0.0f32; k * k];
        for i in 0..k {
            v[i * k + i] = 1.0;
        }
        Spec::new(from_vec(v, [1, k, k], device))
    }

    /// Rows e_0..e_{K-1} followed by -e_0..-e_{K-1}: lower bounds of the first half and
    /// (negated) upper bounds of the second half, in one pass.
    pub fn identity_pair(k: usize, device: &Device) -> Spec {
        let mut v = vec![0.0f32; 2 * k * k];
        for i in 0..k {
            v[i * k + i] = 1.0;
            v[(k + i) * k + i] = -1.0;
        }
        Spec::new(from_vec(v, [1, 2 * k, k], device))
    }

    /// Margins with the label row elided: for label y, rows e_y - e_j for every j != y in
    /// increasing j, `[N, K - 1, K]`.
    pub fn margins(labels: &[usize], k: usize, device: &Device) -> Result<Spec> {
        if k < 2 {
            return Err(Error::input("margins need at least two classes"));
        }
        let n = labels.len();
        let mut v = vec![0.0f32; n * (k - 1) * k];
        for (i, &y) in labels.iter().enumerate() {
            if y >= k {
                return Err(Error::input(format!("label {y} at row {i} is not below the number of classes {k}")));
            }
            for (row, j) in (0..k).filter(|&j| j != y).enumerate() {
                let base = (i * (k - 1) + row) * k;
                v[base + y] = 1.0;
                v[base + j] = -1.0;
            }
        }
        Ok(Spec::new(from_vec(v, [n, k - 1, k], device)).with_labels(labels))
    }

    pub fn rows(&self) -> usize {
        self.c.dims()[1]
    }

    pub fn to_device(&self, device: &Device) -> Spec {
        Spec { c: self.c.clone().to_device(device), ..self.clone() }
    }
}

/// Re-inserts the elided label column (0) into margins `[N, K-1]` -> `[N, K]`.
pub fn insert_label_column(elided: &[f32], labels: &[usize], k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(labels.len() * k);
    for (i, &y) in labels.iter().enumerate() {
        let row = &elided[i * (k - 1)..(i + 1) * (k - 1)];
        out.extend_from_slice(&row[..y]);
        out.push(0.0);
        out.extend_from_slice(&row[y..]);
    }
    out
}

/// `a` `[B, K, F]` times `x` `[N, F]` -> `[N, K]` (B is 1 or N).
pub fn apply_rows(a: Tensor<3>, x: Tensor<2>) -> Tensor<2> {
    let [b, k, f] = a.dims();
    let n = x.dims()[0];
    if b == 1 {
        x.matmul(a.reshape([k, f]).transpose())
    } else {
        a.matmul(x.reshape([n, f, 1])).reshape([n, k])
    }
}
