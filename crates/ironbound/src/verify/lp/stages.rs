//! A sequential ReLU network as the affine maps between its ReLUs, in f64, each entry with a
//! rigorous radius: the real-valued map lies within it.
//!
//! LP and MILP encodings need each affine block as explicit sparse rows. Rather than one
//! matrix rule per layer kind, every affine layer is materialised generically, in float64,
//! through its `AffineLayer::linear` on unit basis inputs (exact for Linear and Conv2d: each
//! output sums one product) and its `forward` of zero (the bias); consecutive layers are
//! multiplied out in f64. A Normalize or batch norm derives its constants with a few
//! roundings and a product of layers rounds too, so every entry and bias carries a radius
//! (the error model of `bounds/sound.rs`: gamma(max_terms) per layer, Higham's bound for each
//! product), and the encodings turn the radii into range rows: what the LP holds is then
//! implied by the real network, which LP certificates need to be float-sound.

use crate::bounds::sound;
use crate::error::{Error, Result};
use crate::net::{numel, AffineLayer, Network, Op, Shape};
use crate::tensor::{from_vec, to_vec64, Device, Tensor};

/// Sparse rows `out = W in + b`, with radii: the real map's entry is within `rad` of the
/// f64 one, its bias within `bias_rad`.
#[derive(Clone, Debug)]
pub struct Affine {
    pub inputs: usize,
    /// `rows[i]` holds the non-zero `(input index, weight)` pairs of output i.
    pub rows: Vec<Vec<(usize, f64)>>,
    /// `rad[i][t]`: the radius of `rows[i][t]`.
    pub rad: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
    pub bias_rad: Vec<f64>,
}

/// `v` rounded up by more than the rounding error of a sum of `n` non-negative terms (the radii
/// are themselves computed in floating point).
fn pad(v: f64, n: usize) -> f64 {
    v * (1.0 + 2.0 * sound::gamma(n + 2)) + sound::TINY
}

/// One entry of a product of affine maps, summed product by product in f64, with what its
/// radius needs: the factors' radii carried through, and the rounding of the f64 sum.
#[derive(Clone, Copy, Default)]
struct Entry {
    value: f64,
    /// Sum of |products|.
    abs: f64,
    /// |w| rv + rw (|v| + rv) summed: the real factors' contribution.
    carried: f64,
    /// u |product| summed over the products that round.
    rounding: f64,
    terms: usize,
}

impl Entry {
    fn add(&mut self, w: f64, rw: f64, v: f64, rv: f64) {
        let p = w * v;
        self.value += p;
        self.abs += p.abs();
        self.carried += w.abs() * rv + rw * (v.abs() + rv);
        if w.abs() != 1.0 && v.abs() != 1.0 && p != 0.0 {
            self.rounding += sound::U * p.abs();
        }
        self.terms += 1;
    }

    fn radius(&self) -> f64 {
        let additions = sound::gamma(self.terms.saturating_sub(1)) * self.abs;
        let r = self.carried + self.rounding + additions;
        if r == 0.0 {
            0.0
        } else {
            pad(r, 3 * self.terms)
        }
    }
}

impl Affine {
    fn identity(n: usize) -> Affine {
        Affine { inputs: n, rows: (0..n).map(|i| vec![(i, 1.0)]).collect(), rad: vec![vec![0.0]; n], bias: vec![0.0; n], bias_rad: vec![0.0; n] }
    }

    /// A bound on `|real_i(x) - (W_i x + b_i)|` for every x with `|x_j| <= magnitude[j]`.
    pub fn row_error(&self, i: usize, magnitude: &dyn Fn(usize) -> f64) -> f64 {
        let r = &self.rad[i];
        if self.bias_rad[i] == 0.0 && r.iter().all(|&v| v == 0.0) {
            return 0.0;
        }
        let sum: f64 = self.rows[i].iter().zip(r).map(|(&(j, _), &rv)| rv * magnitude(j)).sum::<f64>() + self.bias_rad[i];
        pad(sum, r.len() + 1)
    }

    pub fn outputs(&self) -> usize {
        self.rows.len()
    }

    /// `self ∘ first`: the rows of `self` over the inputs of `first`. With `W' = W + dW` and
    /// `V' = V + dV` the real maps, `W'V' - WV = W dV + dW V + dW dV`; the f64 product `WV`
    /// adds its own rounding: u per product (none by a factor of +-1, as with the identity
    /// every stage starts from) and gamma(K - 1) times `|W||V|` for the K - 1 additions.
    fn after(&self, first: &Affine) -> Affine {
        let n = first.inputs;
        let mut acc = vec![Entry::default(); n];
        let mut touched: Vec<usize> = Vec::new();
        let (mut rows, mut rads) = (Vec::with_capacity(self.rows.len()), Vec::with_capacity(self.rows.len()));
        let (mut bias, mut bias_rad) = (Vec::with_capacity(self.rows.len()), Vec::with_capacity(self.rows.len()));
        for i in 0..self.rows.len() {
            let mut b = Entry::default();
            b.add(1.0, 0.0, self.bias[i], self.bias_rad[i]);
            for (&(k, w), &rw) in self.rows[i].iter().zip(&self.rad[i]) {
                b.add(w, rw, first.bias[k], first.bias_rad[k]);
                for (&(j, v), &rv) in first.rows[k].iter().zip(&first.rad[k]) {
                    if acc[j].terms == 0 {
                        touched.push(j);
                    }
                    acc[j].add(w, rw, v, rv);
                }
            }
            bias.push(b.value);
            bias_rad.push(b.radius());
            touched.sort_unstable();
            let (mut row, mut rad) = (Vec::with_capacity(touched.len()), Vec::with_capacity(touched.len()));
            for &j in &touched {
                let e = std::mem::take(&mut acc[j]);
                let r = e.radius();
                if e.value != 0.0 || r != 0.0 {
                    row.push((j, e.value));
                    rad.push(r);
                }
            }
            touched.clear();
            rows.push(row);
            rads.push(rad);
        }
        Affine { inputs: n, rows, rad: rads, bias, bias_rad }
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

/// The dense-then-sparse matrix of one affine layer of a float64 network. `linear(e_j)` and
/// `forward(0)` are within 2 gamma(max_terms) of their absolute values of the real layer's
/// column and bias (the error model of `bounds/sound.rs`), which become the radii.
fn layer_matrix(layer: &dyn AffineLayer, input: &Shape, output: &Shape, device: &Device) -> Affine {
    let (n_in, n_out) = (numel(input), numel(output));
    // (Generous for Linear and Conv2d, exact on a basis vector; the radii then cost ~1e-14.)
    let g = 2.0 * sound::gamma(layer.max_terms(input));
    let zero = Tensor::<4>::zeros([1, input[0], input[1], input[2]], (device, sound::WORKING));
    let bias = to_vec64(layer.forward(zero));
    let bias_rad = bias.iter().map(|b| if *b == 0.0 { 0.0 } else { g * b.abs() + sound::TINY }).collect();
    let (mut rows, mut rad): (Vec<Vec<(usize, f64)>>, Vec<Vec<f64>>) = (vec![Vec::new(); n_out], vec![Vec::new(); n_out]);
    for start in (0..n_in).step_by(BASIS_CHUNK) {
        let m = BASIS_CHUNK.min(n_in - start);
        let mut basis = vec![0.0f32; m * n_in];
        for i in 0..m {
            basis[i * n_in + start + i] = 1.0;
        }
        let basis = from_vec(basis, [m, input[0], input[1], input[2]], device).cast(sound::WORKING);
        let (cols, abs_cols) = (to_vec64(layer.linear(basis.clone())), to_vec64(layer.abs_linear(basis)));
        for i in 0..m {
            for o in 0..n_out {
                let (v, a) = (cols[i * n_out + o], abs_cols[i * n_out + o]);
                let r = if a == 0.0 { 0.0 } else { g * a + sound::TINY };
                if v != 0.0 || r != 0.0 {
                    rows[o].push((start + i, v));
                    rad[o].push(r);
                }
            }
        }
    }
    Affine { inputs: n_in, rows, rad, bias, bias_rad }
}

/// Splits a sequential network at its ReLUs. Residual connections are not supported by the
/// LP encodings (an error names the node).
pub fn extract(net: &Network) -> Result<Stages> {
    let net = &*sound::working_network(net);
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
    use crate::tensor::{default_device, to_vec};

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

    /// A Normalize (1/std is not a float) in front of a linear layer, one stage of two
    /// products: every entry and bias of the f64 stage lies within its radius of the real
    /// map's, computed in exact rationals from the float32 parameters.
    #[test]
    fn stage_radii_contain_the_real_maps() {
        use crate::net::{NetSpec, NodeSpec, OpSpec, Param};
        type Q = num_rational::BigRational;
        let q = |v: f64| Q::from_float(v).expect("finite");
        let dist = |a: Q, b: Q| if a > b { a - b } else { b - a };
        let device = default_device();
        let node = |name: &str, op: OpSpec, input: usize| NodeSpec { name: name.into(), op, inputs: vec![input] };
        let spec = NetSpec { input_shape: [6, 1, 1], nodes: vec![node("fc", OpSpec::Linear { in_features: 6, out_features: 4 }, 0), node("relu", OpSpec::Relu, 1), node("out", OpSpec::Linear { in_features: 4, out_features: 3 }, 2)] };
        let std = vec![0.3081f32, 0.7, 0.1, 3.3, 0.9, 0.25];
        let mean = vec![0.1307f32, -0.2, 0.5, 1.0, 0.0, 0.33];
        let net = spec.with_normalize(mean.clone(), std.clone()).init(4, &device).unwrap();
        let params = net.named_params();
        let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, p)| match p {
            Param::D1(t) => to_vec(t.clone()),
            Param::D2(t) => to_vec(t.clone()),
            Param::D4(t) => to_vec(t.clone()),
        }).unwrap();
        let (w, b) = (get("fc.weight"), get("fc.bias"));
        let a = &extract(&net).unwrap().affine[0];
        for o in 0..4 {
            // The real stage: sum_j w_oj (x_j - mean_j) / std_j + b_o.
            let mut bias = q(b[o] as f64);
            for (t, &(j, v)) in a.rows[o].iter().enumerate() {
                let exact = q(w[o * 6 + j] as f64) / q(std[j] as f64);
                assert!(dist(exact, q(v)) <= q(a.rad[o][t]), "entry ({o}, {j}): {v} +- {}", a.rad[o][t]);
            }
            for j in 0..6 {
                bias -= q(w[o * 6 + j] as f64) * q(mean[j] as f64) / q(std[j] as f64);
            }
            assert!(dist(bias.clone(), q(a.bias[o])) <= q(a.bias_rad[o]), "bias {o}: {} +- {}", a.bias[o], a.bias_rad[o]);
            assert!(a.rad[o].iter().all(|&r| r > 0.0 && r < 1e-12), "radii of a rounding or two: {:?}", a.rad[o]);
        }
    }
}
