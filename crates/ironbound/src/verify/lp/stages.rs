//! A sequential ReLU network as the exact affine maps between its ReLUs, in f64.
//!
//! LP and MILP encodings need each affine block as explicit sparse rows. Rather than one
//! matrix rule per layer kind, every affine layer is materialised generically through its
//! `AffineLayer::linear` on unit basis inputs (exact for Linear and Conv2d: each output sums
//! one product) and its `forward` of zero (the bias); consecutive layers are multiplied out in
//! f64, so a Normalize in front of a convolution costs no rounding worth the name.

use crate::error::{Error, Result};
use crate::net::{numel, AffineLayer, Network, Op, Shape};
use crate::tensor::{from_vec, to_vec, Device, Tensor};

/// Sparse rows `out = W in + b`.
#[derive(Clone, Debug)]
pub struct Affine {
    pub inputs: usize,
    /// `rows[i]` holds the non-zero `(input index, weight)` pairs of output i.
    pub rows: Vec<Vec<(usize, f64)>>,
    pub bias: Vec<f64>,
}

impl Affine {
    fn identity(n: usize) -> Affine {
        Affine { inputs: n, rows: (0..n).map(|i| vec![(i, 1.0)]).collect(), bias: vec![0.0; n] }
    }

    pub fn outputs(&self) -> usize {
        self.rows.len()
    }

    /// `self ∘ first`: the rows of `self` over the inputs of `first`.
    fn after(&self, first: &Affine) -> Affine {
        let mut acc = vec![0.0f64; first.inputs];
        let mut touched: Vec<usize> = Vec::new();
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut bias = self.bias.clone();
        for (row, b) in self.rows.iter().zip(bias.iter_mut()) {
            for &(k, w) in row {
                *b += w * first.bias[k];
                for &(j, v) in &first.rows[k] {
                    if acc[j] == 0.0 {
                        touched.push(j);
                    }
                    acc[j] += w * v;
                }
            }
            touched.sort_unstable();
            touched.dedup();
            let out: Vec<(usize, f64)> = touched.iter().map(|&j| (j, std::mem::take(&mut acc[j]))).filter(|&(_, v)| v != 0.0).collect();
            touched.clear();
            rows.push(out);
        }
        Affine { inputs: first.inputs, rows, bias }
    }

    /// `W x + b` in f64.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        self.rows.iter().zip(&self.bias).map(|(row, b)| b + row.iter().map(|&(j, w)| w * x[j]).sum::<f64>()).collect()
    }
}

/// `affine[0]`, ReLU, `affine[1]`, ReLU, ..., `affine[L-1]` (the logits).
#[derive(Clone, Debug)]
pub struct Stages {
    pub input_shape: Shape,
    pub affine: Vec<Affine>,
    /// Value id (in the network) of the input of ReLU k, whose bounds the engines return.
    pub relu_inputs: Vec<usize>,
    /// Whether affine stage k contains a convolution.
    pub has_conv: Vec<bool>,
}

impl Stages {
    pub fn input_dim(&self) -> usize {
        numel(&self.input_shape)
    }

    /// Number of ReLU layers.
    pub fn hidden(&self) -> usize {
        self.relu_inputs.len()
    }

    /// The hidden stage whose ReLU comes right after the last convolution.
    pub fn after_last_conv(&self) -> Option<usize> {
        (0..self.hidden()).rev().find(|&k| self.has_conv[k])
    }

    /// The network's outputs at `x`, in f64 (for checking counterexamples).
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        for (k, a) in self.affine.iter().enumerate() {
            h = a.apply(&h);
            if k + 1 < self.affine.len() {
                h.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        h
    }
}

/// Basis vectors pushed through a layer at once (bounds the memory of the materialisation).
const BASIS_CHUNK: usize = 256;

/// The dense-then-sparse matrix of one affine layer.
fn layer_matrix(layer: &dyn AffineLayer, input: &Shape, output: &Shape, device: &Device) -> Affine {
    let (n_in, n_out) = (numel(input), numel(output));
    let zero = Tensor::<4>::zeros([1, input[0], input[1], input[2]], device);
    let bias: Vec<f64> = to_vec(layer.forward(zero)).into_iter().map(f64::from).collect();
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n_out];
    for start in (0..n_in).step_by(BASIS_CHUNK) {
        let m = BASIS_CHUNK.min(n_in - start);
        let mut basis = vec![0.0f32; m * n_in];
        for i in 0..m {
            basis[i * n_in + start + i] = 1.0;
        }
        let cols = to_vec(layer.linear(from_vec(basis, [m, input[0], input[1], input[2]], device)));
        for i in 0..m {
            for (o, &v) in cols[i * n_out..(i + 1) * n_out].iter().enumerate() {
                if v != 0.0 {
                    rows[o].push((start + i, f64::from(v)));
                }
            }
        }
    }
    Affine { inputs: n_in, rows, bias }
}

/// Splits a sequential network at its ReLUs. Residual connections are not supported by the
/// LP encodings (an error names the node).
pub fn extract(net: &Network) -> Result<Stages> {
    let device = net.device().unwrap_or_else(crate::tensor::default_device);
    let n0 = numel(&net.input_shape());
    let mut affine = Vec::new();
    let mut relu_inputs = Vec::new();
    let mut has_conv = Vec::new();
    let mut current = Affine::identity(n0);
    let mut conv = false;
    for (i, node) in net.nodes().iter().enumerate() {
        if node.inputs != [i] {
            return Err(Error::unsupported(format!(
                "LP/MILP methods need a sequential network; node {} ({}) reads values {:?}",
                node.name,
                node.op.kind(),
                node.inputs
            )));
        }
        match &node.op {
            Op::Relu => {
                relu_inputs.push(i);
                let n = current.outputs();
                affine.push(std::mem::replace(&mut current, Affine::identity(n)));
                has_conv.push(std::mem::take(&mut conv));
            }
            Op::Flatten(_) => {}
            Op::Add => unreachable!("an add has two inputs"),
            op => {
                conv |= matches!(op, Op::Conv2d(_));
                let layer = op.as_affine().unwrap_or_else(|| unreachable!("every other op is affine"));
                let m = layer_matrix(layer, &net.shape(i), &net.shape(i + 1), &device);
                current = m.after(&current);
            }
        }
    }
    affine.push(current);
    has_conv.push(conv);
    Ok(Stages { input_shape: net.input_shape(), affine, relu_inputs, has_conv })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::arch;
    use crate::net::init::SplitMix64;
    use crate::tensor::default_device;

    #[test]
    fn stages_reproduce_the_forward_pass() {
        let device = default_device();
        for name in ["fc-small", "conv-small"] {
            let net = arch::named(name, [1, 28, 28]).and_then(|s| s.init(3, &device)).unwrap();
            let stages = extract(&net).unwrap();
            assert_eq!(stages.hidden(), net.nodes().iter().filter(|n| matches!(n.op, Op::Relu)).count());
            let x: Vec<f32> = SplitMix64::new(5).uniforms(784);
            let want = to_vec(net.forward(from_vec(x.clone(), [1, 1, 28, 28], &device)));
            let got = stages.forward(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            for (a, b) in want.iter().zip(&got) {
                assert!((f64::from(*a) - b).abs() < 1e-4, "{name}: {a} vs {b}");
            }
        }
    }
}
