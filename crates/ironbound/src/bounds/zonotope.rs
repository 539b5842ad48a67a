//! Zonotope propagation (DeepZ, hBox): every value is `center + sum_g eps_g * gen_g` with
//! independent noise symbols eps_g in [-1, 1].
//!
//! Affine layers map the center and the generators exactly. A ReLU needs parallel lines
//! (lower slope = upper slope = lambda, gap b): the output is `lambda x + b/2 +- b/2`, a fresh
//! noise symbol per neuron with a gap. DeepZ uses the chord slope, hBox the box [0, u].
//! New symbols are only added for neurons with a gap in some sample of the batch.

use super::interval::Interval;
use crate::error::{Error, Result};
use crate::net::{relu, Network, Op, ReluLower};
use crate::tensor::{from_vec, Tensor};

#[derive(Clone, Debug)]
pub struct Zonotope {
    /// `[N, C, H, W]`.
    pub center: Tensor<4>,
    /// `[N * G, C, H, W]`: generator g of sample n at row n * G + g.
    pub gens: Tensor<4>,
    pub num_gens: usize,
}

impl Zonotope {
    /// The box of an interval: one noise symbol per input element.
    pub fn from_interval(b: &Interval) -> Zonotope {
        let [n, c, h, w] = b.lo.dims();
        let f = c * h * w;
        let r = b.radius().reshape([n, 1, f]);
        let eye = diagonal_selector(&(0..f).collect::<Vec<_>>(), f, &b.lo);
        let gens = (eye * r).reshape([n * f, c, h, w]);
        Zonotope { center: b.center(), gens, num_gens: f }
    }

    fn gens3(&self) -> Tensor<3> {
        let [n, c, h, w] = self.center.dims();
        self.gens.clone().reshape([n, self.num_gens, c * h * w])
    }

    /// Elementwise bounds: center -+ sum_g |gen_g|.
    pub fn interval(&self) -> Interval {
        let dims = self.center.dims();
        let r = self.gens3().abs().sum_dim(1).reshape(dims);
        Interval::new(self.center.clone() - r.clone(), self.center.clone() + r)
    }

    fn with_gens(&self, gens3: Tensor<3>, center: Tensor<4>) -> Zonotope {
        let [n, c, h, w] = center.dims();
        let g = gens3.dims()[1];
        Zonotope { center, gens: gens3.reshape([n * g, c, h, w]), num_gens: g }
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
fn diagonal_selector(cols: &[usize], f: usize, like: &Tensor<4>) -> Tensor<3> {
    let mut v = vec![0.0f32; cols.len() * f];
    for (m, &j) in cols.iter().enumerate() {
        v[m * f + j] = 1.0;
    }
    from_vec(v, [1, cols.len(), f], &like.device())
}

fn relu_transform(z: &Zonotope, lower: ReluLower) -> Result<(Zonotope, Interval)> {
    let pre = z.interval();
    let lines = relu::lines(&pre.lo, &pre.hi, lower);
    let [n, c, h, w] = z.center.dims();
    let f = c * h * w;
    let lambda = lines.lower_slope.clone();
    let gap = lines.upper_intercept.clone();
    let center = lambda.clone() * z.center.clone() + gap.clone() / 2.0;
    let gens = z.gens3() * lambda.reshape([n, 1, f]);
    // Only neurons with a gap in some sample get a noise symbol.
    let gap_any = crate::tensor::to_vec(gap.clone().detach().reshape([n, f]).max_dim(0).reshape([f]));
    let cols: Vec<usize> = gap_any.iter().enumerate().filter(|(_, g)| **g > 0.0).map(|(j, _)| j).collect();
    if cols.is_empty() {
        return Ok((z.with_gens(gens, center), pre));
    }
    let fresh = diagonal_selector(&cols, f, &z.center) * (gap / 2.0).reshape([n, 1, f]);
    Ok((z.with_gens(Tensor::cat(vec![gens, fresh], 1), center), pre))
}

/// Propagates the input box through the network. Returns the output zonotope and the
/// bounds of every ReLU input (index = value id; None elsewhere).
pub fn propagate(net: &Network, input: &Interval, lower: ReluLower) -> Result<(Zonotope, Vec<Option<Interval>>)> {
    if !matches!(lower, ReluLower::Parallel | ReluLower::Box) {
        return Err(Error::input(format!("zonotopes need parallel ReLU lines (DeepZ or box), not {lower:?}")));
    }
    let mut values: Vec<Zonotope> = vec![Zonotope::from_interval(input)];
    let mut pre_bounds: Vec<Option<Interval>> = vec![None; net.nodes().len() + 1];
    pre_bounds[0] = Some(input.clone());
    for node in net.nodes() {
        let x = &values[node.inputs[0]];
        let y = match &node.op {
            Op::Relu => {
                let (y, pre) = relu_transform(x, lower)?;
                pre_bounds[node.inputs[0]] = Some(pre);
                y
            }
            Op::Add => {
                let b = &values[node.inputs[1]];
                let g = x.num_gens.max(b.num_gens);
                x.with_gens(x.padded(g) + b.padded(g), x.center.clone() + b.center.clone())
            }
            op => {
                let layer = op.as_affine().unwrap_or_else(|| unreachable!());
                let gens = layer.linear(x.gens.clone());
                let center = layer.forward(x.center.clone());
                Zonotope { center, gens, num_gens: x.num_gens }
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
    mid - spread.abs().sum_dim(1).reshape([n, k])
}

