//! Zonotope propagation (DeepZ, hBox): every value is `center + sum_g eps_g * gen_g` with
//! independent noise symbols eps_g in [-1, 1].
//!
//! Affine layers map the center and the generators exactly. A ReLU needs parallel lines
//! (lower slope = upper slope = lambda, gap b): the output is `lambda x + b/2 +- b/2`, a fresh
//! noise symbol per neuron with a gap. DeepZ uses the chord slope, hBox the box [0, u].
//! New symbols are only added for neurons with a gap in some sample of the batch.
//!
//! For training, the symbols can be replaced by Cauchy random projections (Wong et al. 2018,
//! "Scaling provable adversarial defenses"; the paradox paper's CIFAR-10 DeepZ and hBox): a
//! block of k random combinations `sum_g c_g gen_g` with standard Cauchy c_g is a Cauchy
//! variable of scale `sum_g |gen_g|`, so the median of its k absolute values estimates that l1
//! norm. The input box and every ReLU layer contribute one block of k rows instead of one row
//! per input element or unstable neuron. The results are estimates, not bounds: nothing that
//! certifies may use them.

use super::interval::Interval;
use crate::error::{Error, Result};
use crate::net::init::SplitMix64;
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::{from_vec, Tensor};

/// Cauchy random projections: `count` per block, drawn from the SplitMix64 stream `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Projections {
    pub count: usize,
    pub seed: u64,
}

/// Where the noise symbols of the input box and of ReLU gaps come from.
enum Symbols {
    /// One symbol per element: exact zonotopes.
    Exact,
    /// A block of `count` Cauchy projections per source.
    Projected { count: usize, rng: SplitMix64 },
}

impl Symbols {
    fn block(&self) -> Option<usize> {
        match self {
            Symbols::Exact => None,
            Symbols::Projected { count, .. } => Some(*count),
        }
    }

    /// Generators `[N, G, F]` for independent noise of half-widths `radius` `[N, F]`. Exact
    /// symbols are made for every element when `every`, else only for elements with a width
    /// in some sample.
    fn fresh(&mut self, radius: Tensor<2>, every: bool) -> Tensor<3> {
        let [n, f] = radius.dims();
        match self {
            Symbols::Exact => {
                let cols: Vec<usize> = if every {
                    (0..f).collect()
                } else {
                    let any = crate::tensor::to_vec(radius.clone().detach().max_dim(0).reshape([f]));
                    any.iter().enumerate().filter(|(_, r)| **r > 0.0).map(|(j, _)| j).collect()
                };
                diagonal_selector(&cols, f, &radius.device()) * radius.reshape([n, 1, f])
            }
            Symbols::Projected { count, rng } => {
                // One projection matrix for the whole batch: each sample's estimate is as good,
                // and drawing per sample would cost a batch's worth of tangents.
                let c = cauchy(rng, *count * f);
                from_vec(c, [1, *count, f], &radius.device()) * radius.reshape([n, 1, f])
            }
        }
    }
}

/// `n` standard Cauchy samples `tan(pi (u - 1/2))`, clipped to +-1e10 as the paradox code does
/// (a sample at u = 0 would be infinite).
fn cauchy(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n).map(|_| (std::f64::consts::PI * (rng.uniform() - 0.5)).tan().clamp(-1e10, 1e10) as f32).collect()
}

/// `sum_g |gens[:, g, :]|` `[N, F]`: exact, or with projected blocks of `k` rows the sum over
/// blocks of the median of the absolute values in the block.
fn l1(gens: Tensor<3>, block: Option<usize>) -> Tensor<2> {
    let [n, g, f] = gens.dims();
    match block {
        None => gens.abs().sum_dim(1).reshape([n, f]),
        Some(k) => median_dim1(gens.reshape([n * (g / k), k, f]).abs()).reshape([n, g / k, f]).sum_dim(1).reshape([n, f]),
    }
}

/// The lower median over dim 1 of `a` `[R, K, F]` (PyTorch's `median`), `[R, F]`. The median
/// entries are picked on the host (selection, not a sort) and the gradient flows to them through
/// a mask, which is far cheaper than burn's sort and its scatter backward. Ties share the
/// gradient.
fn median_dim1(a: Tensor<3>) -> Tensor<2> {
    let [r, k, f] = a.dims();
    let values = crate::tensor::to_vec(a.clone().detach());
    let mut mask = vec![0.0f32; r * k * f];
    let mut column = vec![0.0f32; f * k];
    for i in 0..r {
        let block = &values[i * k * f..(i + 1) * k * f];
        for (t, row) in block.chunks_exact(f).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                column[j * k + t] = v;
            }
        }
        for j in 0..f {
            let (_, median, _) = column[j * k..(j + 1) * k].select_nth_unstable_by((k - 1) / 2, f32::total_cmp);
            let median = *median;
            for t in 0..k {
                if block[t * f + j] == median {
                    mask[(i * k + t) * f + j] = 1.0;
                }
            }
        }
    }
    let mask = from_vec(mask, [r, k, f], &a.device());
    ((a * mask.clone()).sum_dim(1) / mask.sum_dim(1)).reshape([r, f])
}

#[derive(Clone, Debug)]
pub struct Zonotope {
    /// `[N, C, H, W]`.
    pub center: Tensor<4>,
    /// `[N * G, C, H, W]`: generator g of sample n at row n * G + g.
    pub gens: Tensor<4>,
    pub num_gens: usize,
    /// `Some(k)`: the generators are blocks of k Cauchy projections (estimates, see above).
    pub block: Option<usize>,
}

impl Zonotope {
    /// The box of an interval: one noise symbol per input element, or one block of projections.
    fn from_box(b: &Interval, symbols: &mut Symbols) -> Zonotope {
        let [n, c, h, w] = b.lo.dims();
        let gens = symbols.fresh(b.radius().reshape([n, c * h * w]), true);
        let num_gens = gens.dims()[1];
        Zonotope { center: b.center(), gens: gens.reshape([n * num_gens, c, h, w]), num_gens, block: symbols.block() }
    }

    fn gens3(&self) -> Tensor<3> {
        let [n, c, h, w] = self.center.dims();
        self.gens.clone().reshape([n, self.num_gens, c * h * w])
    }

    /// Elementwise bounds: center -+ sum_g |gen_g|.
    pub fn interval(&self) -> Interval {
        let dims = self.center.dims();
        let r = l1(self.gens3(), self.block).reshape(dims);
        Interval::new(self.center.clone() - r.clone(), self.center.clone() + r)
    }

    fn with_gens(&self, gens3: Tensor<3>, center: Tensor<4>) -> Zonotope {
        let [n, c, h, w] = center.dims();
        let g = gens3.dims()[1];
        Zonotope { center, gens: gens3.reshape([n * g, c, h, w]), num_gens: g, block: self.block }
    }

    /// The same zonotope with zero generators appended up to `g` symbols.
    fn padded(&self, g: usize) -> Tensor<3> {
        let gens = self.gens3();
        if g == self.num_gens {
            return gens;
        }
        let [n, _, f] = gens.dims();
        Tensor::cat(vec![gens, Tensor::zeros([n, g - self.num_gens, f], &self.center.device())], 1)
    }
}

/// `[1, M, F]` rows that are one-hot at `cols` (the diagonal restricted to those columns).
fn diagonal_selector(cols: &[usize], f: usize, device: &crate::tensor::Device) -> Tensor<3> {
    let mut v = vec![0.0f32; cols.len() * f];
    for (m, &j) in cols.iter().enumerate() {
        v[m * f + j] = 1.0;
    }
    from_vec(v, [1, cols.len(), f], device)
}

fn relu_transform(z: &Zonotope, lower: ReluLower, symbols: &mut Symbols) -> Result<(Zonotope, Interval)> {
    let pre = z.interval();
    let lines = relu::lines(&pre.lo, &pre.hi, lower);
    let [n, c, h, w] = z.center.dims();
    let f = c * h * w;
    let lambda = lines.lower_slope.clone();
    let gap = lines.upper_intercept.clone();
    let center = lambda.clone() * z.center.clone() + gap.clone() / 2.0;
    let gens = z.gens3() * lambda.reshape([n, 1, f]);
    let fresh = symbols.fresh((gap / 2.0).reshape([n, f]), false);
    if fresh.dims()[1] == 0 {
        return Ok((z.with_gens(gens, center), pre));
    }
    Ok((z.with_gens(Tensor::cat(vec![gens, fresh], 1), center), pre))
}

/// Propagates the input box through the network. Returns the output zonotope and the
/// bounds of every ReLU input (index = value id; None elsewhere).
pub fn propagate(net: &Network, input: &Interval, lower: ReluLower) -> Result<(Zonotope, Vec<Option<Interval>>)> {
    propagate_with(net, input, lower, &mut Symbols::Exact)
}

/// `propagate` with Cauchy random projections: the output zonotope's generators and the
/// ReLU input intervals are estimates (training only).
pub fn propagate_projected(net: &Network, input: &Interval, lower: ReluLower, projections: Projections) -> Result<(Zonotope, Vec<Option<Interval>>)> {
    if projections.count == 0 {
        return Err(Error::input("random projections need at least one projection per block"));
    }
    propagate_with(net, input, lower, &mut Symbols::Projected { count: projections.count, rng: SplitMix64::new(projections.seed) })
}

fn propagate_with(net: &Network, input: &Interval, lower: ReluLower, symbols: &mut Symbols) -> Result<(Zonotope, Vec<Option<Interval>>)> {
    if !matches!(lower, ReluLower::Parallel | ReluLower::Box) {
        return Err(Error::input(format!("zonotopes need parallel ReLU lines (DeepZ or box), not {lower:?}")));
    }
    let mut values: Vec<Zonotope> = vec![Zonotope::from_box(input, symbols)];
    let mut pre_bounds: Vec<Option<Interval>> = vec![None; net.nodes().len() + 1];
    pre_bounds[0] = Some(input.clone());
    for node in net.nodes() {
        let x = &values[node.inputs[0]];
        let y = match &node.op {
            Op::Relu => {
                let (y, pre) = relu_transform(x, lower, symbols)?;
                pre_bounds[node.inputs[0]] = Some(pre);
                y
            }
            Op::Add => {
                // Both branches share the leading symbols; the extra ones of the longer branch
                // (whole blocks when projected) are zero in the shorter.
                let b = &values[node.inputs[1]];
                let g = x.num_gens.max(b.num_gens);
                x.with_gens(x.padded(g) + b.padded(g), x.center.clone() + b.center.clone())
            }
            op => {
                let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                let gens = layer.linear(x.gens.clone());
                let center = layer.forward(x.center.clone());
                Zonotope { center, gens, num_gens: x.num_gens, block: x.block }
            }
        };
        values.push(y);
    }
    let out = values.pop().unwrap_or_else(|| unreachable!());
    Ok((out, pre_bounds))
}

/// Lower bound `[N, K]` of `C f(x)` over the output zonotope, C `[B, K, F]`.
pub fn spec_lower(z: &Zonotope, c: Tensor<3>) -> Tensor<2> {
    let [n, ch, h, w] = z.center.dims();
    let f = ch * h * w;
    let [b, k, _] = c.dims();
    let center = z.center.clone().reshape([n, f]);
    let gens = z.gens3();
    let ct = c.clone().swap_dims(1, 2); // [B, F, K]
    let (mid, spread) = if b == 1 {
        let ct2 = ct.reshape([f, k]);
        let g = z.num_gens;
        (center.matmul(ct2.clone()), gens.reshape([n * g, f]).matmul(ct2).reshape([n, g, k]))
    } else {
        (center.reshape([n, 1, f]).matmul(ct.clone()).reshape([n, k]), gens.matmul(ct))
    };
    mid - l1(spread, z.block)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{default_device, to_vec};

    #[test]
    fn median_dim1_is_the_lower_median() {
        let mut rng = SplitMix64::new(3);
        for k in [1, 2, 5, 8] {
            let (r, f) = (3, 7);
            let a = from_vec(rng.uniforms(r * k * f), [r, k, f], &default_device());
            let want = to_vec(a.clone().median(1));
            assert_eq!(to_vec(median_dim1(a)), want, "k = {k}");
        }
        // Ties (an all-zero column) give the tied value.
        let zeros = Tensor::<3>::zeros([1, 4, 2], &default_device());
        assert_eq!(to_vec(median_dim1(zeros)), vec![0.0, 0.0]);
    }
}
