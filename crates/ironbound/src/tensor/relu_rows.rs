//! The ReLU step of back-substitution (`bounds/backsub.rs`) as two fused, differentiable CPU
//! operations.
//!
//! A linear form's coefficients `a` `[B, K, F]` cross a ReLU by taking each coefficient's
//! lower line where it is positive and its upper line elsewhere: new coefficients
//! `max(a, 0)·lower + min(a, 0)·upper`, and constants, the sums over F of `min(a, 0)·intercept`
//! (and of `max(a, 0)·intercept` for the upper bound). Written with burn's element-wise
//! operations these are seven passes over `[B, K, F]` forward and more backward, each
//! allocating a tensor the autodiff tape keeps: on paradox's CONV network (100 rows of 3136
//! coefficients per sample) they were half of an hBox or CROWN training step, far more than
//! its GEMMs. Here each direction reads `a` once per operand, and the backward pass keeps only
//! the inputs.
//!
//! The lines broadcast against `a` as in burn: each operand is `[B or 1, K or 1, F]`.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::cpu::{contiguous, typed, Float};
use super::{neg, on_cpu, pos};

/// The two operations, on the CPU backend with and without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait ReluRowOps: Backend {
    /// `[B, K, F]`: `a·lower` where `a > 0`, `a·upper` elsewhere.
    fn relu_row_lines(a: FloatTensor<Self>, lower: FloatTensor<Self>, upper: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `[B, K, 2]`: the sums over F of `min(a, 0)·intercept` and of `max(a, 0)·intercept`.
    fn relu_row_intercepts(a: FloatTensor<Self>, intercept: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// An operand's `[batch, rows, features]`.
type Dims = [usize; 3];

fn dims(t: &FlexTensor) -> Dims {
    let s = t.layout().shape();
    [s[0], s[1], s[2]]
}

/// The result's batch and rows: the largest of the operands'.
fn out_dims(operands: &[Dims]) -> [usize; 2] {
    operands.iter().fold([1, 1], |[b, k], d| [b.max(d[0]), k.max(d[1])])
}

/// The row of an operand of dims `d` that output row (b, k) reads (broadcast over size-1 axes).
#[inline(always)]
fn row<E>(values: &[E], d: Dims, b: usize, k: usize) -> &[E] {
    let r = if d[0] == 1 { 0 } else { b } * d[1] + if d[1] == 1 { 0 } else { k };
    &values[r * d[2]..(r + 1) * d[2]]
}

/// The coefficient's line: `lower` for a positive coefficient, `upper` otherwise (zero too:
/// the same side as `a - relu(a)`'s gradient, which the unfused form used).
#[inline(always)]
fn pick<E: Float>(x: E, lower: E, upper: E) -> E {
    if x > E::default() {
        lower
    } else {
        upper
    }
}

/// `out[b, k, :] = a·pick(a, lower, upper)`, rows in parallel.
fn lines_forward<E: Float>([a, lo, up]: [&[E]; 3], [da, dl, du]: [Dims; 3]) -> Vec<E> {
    let ([nb, nk], f) = (out_dims(&[da, dl, du]), da[2]);
    let mut y = vec![E::default(); nb * nk * f];
    y.par_chunks_mut(f).enumerate().for_each(|(r, y)| {
        let (b, k) = (r / nk, r % nk);
        let (x, l, u) = (row(a, da, b, k), row(lo, dl, b, k), row(up, du, b, k));
        // Zipped, so that the loop has no bounds checks and vectorises.
        for (((y, &x), &l), &u) in y.iter_mut().zip(x).zip(l).zip(u) {
            *y = x * pick(x, l, u);
        }
    });
    y
}

/// `Σ term(x_i, c_i)` in 8 interleaved partial sums (vectorisable, and more accurate than one
/// running float32 sum).
#[inline(always)]
fn dot_lanes<E: Float>(x: &[E], c: &[E], term: impl Fn(E, E) -> E) -> E {
    let mut lanes = [E::default(); 8];
    let (xs, cs) = (x.chunks_exact(8), c.chunks_exact(8));
    let (x_tail, c_tail) = (xs.remainder(), cs.remainder());
    for (x, c) in xs.zip(cs) {
        for ((lane, &x), &c) in lanes.iter_mut().zip(x).zip(c) {
            *lane += term(x, c);
        }
    }
    for ((lane, &x), &c) in lanes.iter_mut().zip(x_tail).zip(c_tail) {
        *lane += term(x, c);
    }
    let [l0, l1, l2, l3, l4, l5, l6, l7] = lanes;
    ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))
}

/// `out[b, k] = (Σ min(a, 0)·c, Σ max(a, 0)·c)`, rows in parallel.
fn intercepts_forward<E: Float>([a, c]: [&[E]; 2], [da, dc]: [Dims; 2]) -> Vec<E> {
    let [nb, nk] = out_dims(&[da, dc]);
    let zero = E::default();
    let mut y = vec![zero; nb * nk * 2];
    y.par_chunks_mut(2).enumerate().for_each(|(r, y)| {
        let (b, k) = (r / nk, r % nk);
        let (x, c) = (row(a, da, b, k), row(c, dc, b, k));
        y[0] = dot_lanes(x, c, |x, c| pick(x, zero, x) * c);
        y[1] = dot_lanes(x, c, |x, c| pick(x, x, zero) * c);
    });
    y
}

/// The gradient of an operand of dims `d`: for each of its rows (in parallel), the sum over
/// the output rows `(b, k)` that read it of what `add(b, k, row)` adds onto the row. The
/// output rows are visited in a fixed order, so the result does not depend on the threads.
fn gradient<E: Float>(d: Dims, [nb, nk]: [usize; 2], add: impl Fn(usize, usize, &mut [E]) + Sync) -> Vec<E> {
    let mut g = vec![E::default(); d.iter().product()];
    g.par_chunks_mut(d[2]).enumerate().for_each(|(r, acc)| {
        let (b0, k0) = (r / d[1], r % d[1]);
        let batches = if d[0] == 1 { 0..nb } else { b0..b0 + 1 };
        for b in batches {
            let rows = if d[1] == 1 { 0..nk } else { k0..k0 + 1 };
            for k in rows {
                add(b, k, acc);
            }
        }
    });
    g
}

/// The row of output gradient `g` (`[nb, nk, width]`) at (b, k).
#[inline(always)]
fn grad_row<E>(g: &[E], nk: usize, width: usize, b: usize, k: usize) -> &[E] {
    &g[(b * nk + k) * width..][..width]
}

/// The gradient of one operand of `relu_row_lines` (dims `d`): the sum over the output rows
/// that read it of `g · term(a, lower, upper)`.
fn lines_gradient<E: Float>(d: Dims, [g, a, lo, up]: [&[E]; 4], [da, dl, du]: [Dims; 3], term: impl Fn(E, E, E) -> E + Sync) -> Vec<E> {
    let (out, f) = (out_dims(&[da, dl, du]), da[2]);
    gradient(d, out, |b, k, acc: &mut [E]| {
        let (g, x, l, u) = (grad_row(g, out[1], f, b, k), row(a, da, b, k), row(lo, dl, b, k), row(up, du, b, k));
        for ((((acc, &g), &x), &l), &u) in acc.iter_mut().zip(g).zip(x).zip(l).zip(u) {
            *acc += g * term(x, l, u);
        }
    })
}

/// Gradients of `relu_row_lines` for the operands `wanted` marks: `a`, `lower`, `upper`. With
/// `parallel` (both lines are one tensor: DeepZ, hBox) the lower line's gradient is the whole
/// of that tensor's, in one pass, and the upper's is not computed.
fn lines_backward<E: Float>(v: [&[E]; 4], d: [Dims; 3], wanted: [bool; 3], parallel: bool) -> [Option<Vec<E>>; 3] {
    let zero = E::default();
    [
        wanted[0].then(|| lines_gradient(d[0], v, d, |x, l, u| pick(x, l, u))),
        wanted[1].then(|| match parallel {
            true => lines_gradient(d[1], v, d, |x, _, _| x),
            false => lines_gradient(d[1], v, d, |x, _, _| pick(x, x, zero)),
        }),
        (wanted[2] && !parallel).then(|| lines_gradient(d[2], v, d, |x, _, _| pick(x, zero, x))),
    ]
}

/// The gradient of one operand of `relu_row_intercepts` (dims `d`): the sum over the output
/// rows that read it of `term(a, intercept)` times the row's gradient for a's sign.
fn intercepts_gradient<E: Float>(d: Dims, [g, a, c]: [&[E]; 3], [da, dc]: [Dims; 2], term: impl Fn(E, E) -> E + Sync) -> Vec<E> {
    let out = out_dims(&[da, dc]);
    gradient(d, out, |b, k, acc: &mut [E]| {
        let (gr, x, c) = (grad_row(g, out[1], 2, b, k), row(a, da, b, k), row(c, dc, b, k));
        let (g_neg, g_pos) = (gr[0], gr[1]);
        for ((acc, &x), &c) in acc.iter_mut().zip(x).zip(c) {
            *acc += pick(x, g_pos, g_neg) * term(x, c);
        }
    })
}

/// Gradients of `relu_row_intercepts` for `a` and `intercept`, where `wanted`.
fn intercepts_backward<E: Float>(v: [&[E]; 3], d: [Dims; 2], wanted: [bool; 2]) -> [Option<Vec<E>>; 2] {
    [wanted[0].then(|| intercepts_gradient(d[0], v, d, |_, c| c)), wanted[1].then(|| intercepts_gradient(d[1], v, d, |x, _| x))]
}

fn lines_flex(a: &FlexTensor, lower: &FlexTensor, upper: &FlexTensor) -> FlexTensor {
    let d = [dims(a), dims(lower), dims(upper)];
    let [nb, nk] = out_dims(&d);
    let shape = [nb, nk, d[0][2]];
    typed([a, lower, upper], |v| TensorData::new(lines_forward(v, d), shape), |v| TensorData::new(lines_forward(v, d), shape))
}

fn intercepts_flex(a: &FlexTensor, intercept: &FlexTensor) -> FlexTensor {
    let d = [dims(a), dims(intercept)];
    let [nb, nk] = out_dims(&d);
    typed([a, intercept], |v| TensorData::new(intercepts_forward(v, d), [nb, nk, 2]), |v| TensorData::new(intercepts_forward(v, d), [nb, nk, 2]))
}

impl ReluRowOps for Flex {
    fn relu_row_lines(a: FlexTensor, lower: FlexTensor, upper: FlexTensor) -> FlexTensor {
        lines_flex(&contiguous(a), &contiguous(lower), &contiguous(upper))
    }

    fn relu_row_intercepts(a: FlexTensor, intercept: FlexTensor) -> FlexTensor {
        intercepts_flex(&contiguous(a), &contiguous(intercept))
    }
}

/// Registers each wanted gradient with its operand's node.
fn register<const N: usize>(grads: &mut Gradients, nodes: [Option<NodeId>; N], values: [Option<TensorData>; N]) {
    for (node, data) in nodes.into_iter().zip(values) {
        if let (Some(node), Some(data)) = (node, data) {
            grads.register::<Flex>(node, FlexTensor::from_data(data));
        }
    }
}

/// Vectors into tensor data of the given shapes.
fn data<E: Float, const N: usize>(values: [Option<Vec<E>>; N], shapes: [Dims; N]) -> [Option<TensorData>; N] {
    let mut shapes = shapes.into_iter();
    values.map(|v| {
        let shape = shapes.next().unwrap_or_else(|| unreachable!("one shape per operand"));
        v.map(|v| TensorData::new(v, shape))
    })
}

#[derive(Debug)]
struct LinesBackward;

impl Backward<Flex, 3> for LinesBackward {
    type State = [FlexTensor; 3];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let g = contiguous(grads.consume::<Flex>(&ops.node));
        let [a, lo, up] = ops.state;
        let d = [dims(&a), dims(&lo), dims(&up)];
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let parallel = matches!(&ops.parents[1..], [Some(l), Some(u)] if l.id == u.id);
        let values = match a.dtype() {
            DType::F64 => data(lines_backward([g.storage::<f64>(), a.storage(), lo.storage(), up.storage()], d, wanted, parallel), d),
            _ => data(lines_backward([g.storage::<f32>(), a.storage(), lo.storage(), up.storage()], d, wanted, parallel), d),
        };
        register(grads, ops.parents.map(|p| p.map(|node| node.id)), values);
    }
}

#[derive(Debug)]
struct InterceptsBackward;

impl Backward<Flex, 2> for InterceptsBackward {
    type State = [FlexTensor; 2];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let g = contiguous(grads.consume::<Flex>(&ops.node));
        let [a, c] = ops.state;
        let d = [dims(&a), dims(&c)];
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let values = match a.dtype() {
            DType::F64 => data(intercepts_backward([g.storage::<f64>(), a.storage(), c.storage()], d, wanted), d),
            _ => data(intercepts_backward([g.storage::<f32>(), a.storage(), c.storage()], d, wanted), d),
        };
        register(grads, ops.parents.map(|p| p.map(|node| node.id)), values);
    }
}

impl<C: CheckpointStrategy> ReluRowOps for Autodiff<Flex, C> {
    fn relu_row_lines(a: FloatTensor<Self>, lower: FloatTensor<Self>, upper: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = LinesBackward.prepare::<C>([a.node(), lower.node(), upper.node()]).compute_bound().stateful();
        let inputs = [a, lower, upper].map(|t| contiguous(t.into_primitive()));
        let out = lines_flex(&inputs[0], &inputs[1], &inputs[2]);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(inputs, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn relu_row_intercepts(a: FloatTensor<Self>, intercept: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = InterceptsBackward.prepare::<C>([a.node(), intercept.node()]).compute_bound().stateful();
        let inputs = [a, intercept].map(|t| contiguous(t.into_primitive()));
        let out = intercepts_flex(&inputs[0], &inputs[1]);
        match prep {
            OpsKind::Tracked(prep) => prep.finish(inputs, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Whether the fused kernels take these operands: on the CPU, one float dtype, 3-D shapes
/// that broadcast against `a` (same features, each batch and row axis 1 or the largest).
fn fused(a: &Tensor<3>, others: &[&Tensor<3>]) -> bool {
    let d: Vec<Dims> = std::iter::once(a).chain(others.iter().copied()).map(|t| t.dims()).collect();
    let [nb, nk] = out_dims(&d);
    let fits = |x: &Dims| x[2] == d[0][2] && (x[0] == 1 || x[0] == nb) && (x[1] == 1 || x[1] == nk);
    let dtype = a.dtype();
    on_cpu() && matches!(dtype, DType::F32 | DType::F64) && others.iter().all(|t| t.dtype() == dtype) && d.iter().all(fits) && d[0][1] == nk
}

/// `max(a, 0)·lower + min(a, 0)·upper` (`[B, K, F]`, broadcasting as burn does), differentiable
/// in all three; with `lower = upper` this is `a·lower`.
pub fn relu_lines(a: Tensor<3>, lower: Tensor<3>, upper: Tensor<3>) -> Tensor<3> {
    if !fused(&a, &[&lower, &upper]) {
        return pos(a.clone()) * lower + neg(a) * upper;
    }
    Tensor::from_dispatch(<Dispatch as ReluRowOps>::relu_row_lines(a.into_dispatch(), lower.into_dispatch(), upper.into_dispatch()))
}

/// `(Σ_F min(a, 0)·intercept, Σ_F max(a, 0)·intercept)` as `[B, K, 2]`, differentiable in both.
pub fn relu_intercepts(a: Tensor<3>, intercept: Tensor<3>) -> Tensor<3> {
    if !fused(&a, &[&intercept]) {
        let dot = |t: Tensor<3>| (t * intercept.clone()).sum_dim(2);
        return Tensor::cat(vec![dot(neg(a.clone())), dot(pos(a))], 2);
    }
    Tensor::from_dispatch(<Dispatch as ReluRowOps>::relu_row_intercepts(a.into_dispatch(), intercept.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{default_device, to_vec64};
    use burn::tensor::Distribution;

    /// Values with exact zeros among them (the tie that picks the upper line).
    fn random(shape: Dims, dtype: DType) -> Tensor<3> {
        let d = default_device();
        let t = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &d).cast(dtype);
        let zeros = Tensor::<3>::random(shape, Distribution::Uniform(0.0, 1.0), &d).lower_elem(0.1);
        t.mask_fill(zeros, 0.0)
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f64 {
        let scale = to_vec64(b.clone().abs().max())[0].max(1.0);
        to_vec64((a - b).abs().max())[0] / scale
    }

    /// The fused operations equal the element-wise formulas they replace, in value and in every
    /// operand's gradient, under each broadcast back-substitution meets (a form shared by all
    /// samples meeting per-sample lines, per-row alpha slopes, one sample), in float32 and
    /// float64.
    #[test]
    fn fused_relu_rows_match_the_elementwise_formulas_and_their_gradients() {
        let cases: [[Dims; 4]; 4] = [
            [[4, 3, 37], [4, 1, 37], [4, 1, 37], [4, 1, 37]],
            [[1, 5, 19], [3, 1, 19], [3, 1, 19], [3, 1, 19]],
            [[2, 3, 8], [2, 3, 8], [2, 1, 8], [2, 1, 8]],
            [[1, 2, 5], [1, 1, 5], [1, 1, 5], [1, 1, 5]],
        ];
        for [da, dl, du, dc] in cases {
            for dtype in [DType::F32, DType::F64] {
                let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
                let operands = [random(da, dtype), random(dl, dtype), random(du, dtype), random(dc, dtype)];
                let track = || operands.clone().map(|t| t.autodiff().require_grad());
                let ([a1, l1, u1, c1], [a2, l2, u2, c2]) = (track(), track());
                assert!(fused(&a1, &[&l1, &u1]) && fused(&a1, &[&c1]), "{da:?}");

                let lines = relu_lines(a1.clone(), l1.clone(), u1.clone());
                let reference = pos(a2.clone()) * l2.clone() + neg(a2.clone()) * u2.clone();
                assert!(max_diff(lines.clone().without_autodiff(), reference.clone().without_autodiff()) < tol);
                let consts = relu_intercepts(a1.clone(), c1.clone());
                let dot = |t: Tensor<3>| (t * c2.clone()).sum_dim(2);
                let consts_ref = Tensor::cat(vec![dot(neg(a2.clone())), dot(pos(a2.clone()))], 2);
                assert!(max_diff(consts.clone().without_autodiff(), consts_ref.clone().without_autodiff()) < tol);

                let (gl, gc) = (random(lines.dims(), dtype), random(consts.dims(), dtype));
                let loss = |lines: Tensor<3>, consts: Tensor<3>| (lines * gl.clone()).sum() + (consts * gc.clone()).sum();
                let (g1, g2) = (loss(lines, consts).backward(), loss(reference, consts_ref).backward());
                for (name, x1, x2) in [("a", &a1, &a2), ("lower", &l1, &l2), ("upper", &u1, &u2), ("intercept", &c1, &c2)] {
                    let (Some(got), Some(want)) = (x1.grad(&g1), x2.grad(&g2)) else { panic!("{name}: no gradient") };
                    assert!(max_diff(got, want) < tol, "{name} {da:?} {dtype:?}");
                }
            }
        }
    }

    /// One tensor as both lines (DeepZ's and hBox's parallel lines): its gradient is `a`'s
    /// product with the output gradient, summed over what it broadcasts over, counted once.
    #[test]
    fn one_tensor_as_both_lines_gets_its_whole_gradient_once() {
        let a = random([3, 4, 9], DType::F64).autodiff().require_grad();
        let s = random([3, 1, 9], DType::F64).autodiff().require_grad();
        let g = random([3, 4, 9], DType::F64);
        let grads = (relu_lines(a.clone(), s.clone(), s.clone()) * g.clone()).sum().backward();
        let want = (a.clone().without_autodiff() * g).sum_dim(1);
        assert!(max_diff(s.grad(&grads).unwrap_or_else(|| panic!("no gradient")), want) < 1e-12);
    }

    /// Untracked operands (the float-sound pass, detached lines) take the same kernels.
    #[test]
    fn untracked_operands_give_the_same_values() {
        let a = random([3, 4, 11], DType::F32);
        let (l, u) = (random([3, 1, 11], DType::F32), random([3, 1, 11], DType::F32));
        let want = to_vec64(pos(a.clone()) * l.clone() + neg(a.clone()) * u.clone());
        assert_eq!(to_vec64(relu_lines(a.clone(), l.clone(), u.clone())), want);
        let tracked = relu_lines(a.autodiff(), l.autodiff().require_grad(), u.autodiff());
        assert_eq!(to_vec64(tracked.without_autodiff()), want);
    }
}
