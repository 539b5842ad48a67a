//! im2col and its adjoint on the CPU, as a differentiable burn operation.
//!
//! A convolution becomes one batched GEMM over the patches of its input:
//! `y[n] = [W | b] · patches(x)[n]`, with `patches(x)` of shape `[n, c·kh·kw (+1), ho·wo]`
//! (PyTorch's `unfold` layout, plus an optional row of ones that carries the bias). The GEMMs are
//! burn's (strided, on the `gemm` crate); what burn lacks is a fast unfold whose gradient is the
//! matching fold (col2im): burn-flex's own convolution backward runs a dilated convolution for
//! the weights and a transposed convolution for the input, at a fraction of the GEMM rate, and
//! a `select`-based unfold has a scatter-add backward slower still. So both directions are
//! plain loops here, registered through burn's backend extension with a hand-written backward.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// Where a convolution's kernel reads its input: everything an unfold or a fold needs besides
/// the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patches {
    /// Input channels, height and width.
    pub input: [usize; 3],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Output height and width (the caller has checked that the kernel fits).
    pub output: [usize; 2],
    /// Append a row of ones (the bias's column of the GEMM).
    pub ones_row: bool,
}

impl Patches {
    /// Rows of one sample's patch matrix.
    pub fn rows(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1] + usize::from(self.ones_row)
    }

    /// Columns of one sample's patch matrix (output positions).
    pub fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// The input row read by kernel row `k` at output row `o` along `dim`, if inside the image.
    fn source(&self, dim: usize, o: usize, k: usize) -> Option<usize> {
        (o * self.stride[dim] + k).checked_sub(self.padding[dim]).filter(|&i| i < self.input[dim + 1])
    }

    /// Calls `visit(patch_row_offset, input_offset)` for every (patch element, input element)
    /// pair of one sample, a contiguous run of output columns at a time when the stride is 1.
    /// Elements over the padding are not visited (they read zero).
    fn for_each_run(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let [c, h, w] = self.input;
        let [kh, kw] = self.kernel;
        let [ho, wo] = self.output;
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = ((ci * kh + ky) * kw + kx) * ho * wo;
                    // Output columns whose input column lies inside the image.
                    let first = (0..wo).find(|&ox| self.source(1, ox, kx).is_some());
                    let Some(first) = first else { continue };
                    let last = (0..wo).rev().find(|&ox| self.source(1, ox, kx).is_some()).unwrap_or(first);
                    for oy in 0..ho {
                        let Some(iy) = self.source(0, oy, ky) else { continue };
                        let ix = self.source(1, first, kx).unwrap_or(0);
                        let src = (ci * h + iy) * w + ix;
                        visit(row + oy * wo + first, src, last - first + 1);
                    }
                }
            }
        }
    }
}

/// The two kernels, on every backend the CPU build runs (Flex, and Flex under autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait PatchOps: Backend {
    /// `[n, c, h, w]` -> `[n, rows, positions]`.
    fn unfold_patches(x: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self>;
    /// The adjoint: `[n, rows, positions]` -> `[n, c, h, w]`, summing overlapping patches
    /// (the ones row, a constant, is dropped).
    fn fold_patches(cols: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self>;
}

/// Parallel over samples only when a sample's work amortises rayon's hand-off.
const PARALLEL_ELEMENTS: usize = 1 << 15;

fn unfold_typed<E: bytemuck::Pod + Default + Send + Sync + burn::tensor::Element>(x: &[E], one: E, n: usize, p: Patches) -> TensorData {
    let (rows, positions, len) = (p.rows(), p.positions(), p.input_len());
    let mut out = vec![E::default(); n * rows * positions];
    let fill = |(sample, dst): (usize, &mut [E])| {
        let src = &x[sample * len..(sample + 1) * len];
        if p.stride[1] == 1 {
            p.for_each_run(|o, i, run| dst[o..o + run].copy_from_slice(&src[i..i + run]));
        } else {
            p.for_each_run(|o, i, run| (0..run).for_each(|j| dst[o + j] = src[i + j * p.stride[1]]));
        }
        if p.ones_row {
            dst[(rows - 1) * positions..].fill(one);
        }
    };
    if rows * positions >= PARALLEL_ELEMENTS {
        out.par_chunks_mut(rows * positions).enumerate().for_each(fill);
    } else {
        out.chunks_mut(rows * positions).enumerate().for_each(fill);
    }
    TensorData::new(out, [n, rows, positions])
}

fn fold_typed<E: bytemuck::Pod + Default + Send + Sync + std::ops::AddAssign + burn::tensor::Element>(
    cols: &[E],
    n: usize,
    p: Patches,
) -> TensorData {
    let (rows, positions, len) = (p.rows(), p.positions(), p.input_len());
    let mut out = vec![E::default(); n * len];
    let add = |(sample, dst): (usize, &mut [E])| {
        let src = &cols[sample * rows * positions..(sample + 1) * rows * positions];
        let step = p.stride[1];
        p.for_each_run(|o, i, run| (0..run).for_each(|j| dst[i + j * step] += src[o + j]));
    };
    if rows * positions >= PARALLEL_ELEMENTS {
        out.par_chunks_mut(len).enumerate().for_each(add);
    } else {
        out.chunks_mut(len).enumerate().for_each(add);
    }
    TensorData::new(out, [n, p.input[0], p.input[1], p.input[2]])
}

/// The tensor's values in row-major order (a copy only when it is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    match t.is_contiguous() && t.layout().start_offset() == 0 {
        true => t,
        false => t.to_contiguous(),
    }
}

impl PatchOps for Flex {
    fn unfold_patches(x: FlexTensor, patches: Patches) -> FlexTensor {
        let x = contiguous(x);
        let n = x.layout().shape()[0];
        let data = match x.dtype() {
            DType::F64 => unfold_typed::<f64>(x.storage(), 1.0, n, patches),
            _ => unfold_typed::<f32>(x.storage(), 1.0, n, patches),
        };
        FlexTensor::from_data(data)
    }

    fn fold_patches(cols: FlexTensor, patches: Patches) -> FlexTensor {
        let cols = contiguous(cols);
        let n = cols.layout().shape()[0];
        let data = match cols.dtype() {
            DType::F64 => fold_typed::<f64>(cols.storage(), n, patches),
            _ => fold_typed::<f32>(cols.storage(), n, patches),
        };
        FlexTensor::from_data(data)
    }
}

/// Unfold and fold are each other's adjoint, so each one's backward is the other.
#[derive(Debug)]
struct Adjoint {
    unfold: bool,
}

impl<B: Backend + PatchOps> Backward<B, 1> for Adjoint {
    type State = Patches;

    fn backward(self, ops: Ops<Patches, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            let back = match self.unfold {
                true => B::fold_patches(grad, ops.state),
                false => B::unfold_patches(grad, ops.state),
            };
            grads.register::<B>(node.id, back);
        }
    }
}

fn differentiable<B: Backend + PatchOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    patches: Patches,
    unfold: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let run = |t| match unfold {
        true => B::unfold_patches(t, patches),
        false => B::fold_patches(t, patches),
    };
    match (Adjoint { unfold }).prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(patches, run(x.into_primitive())),
        OpsKind::UnTracked(prep) => prep.finish(run(x.into_primitive())),
    }
}

impl<B: Backend + PatchOps, C: CheckpointStrategy> PatchOps for Autodiff<B, C> {
    fn unfold_patches(x: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self> {
        differentiable::<B, C>(x, patches, true)
    }

    fn fold_patches(cols: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self> {
        differentiable::<B, C>(cols, patches, false)
    }
}

/// `[n, c, h, w]` -> `[n, rows, positions]` on the CPU backend (the caller checks `on_cpu()`
/// and that `patches` matches `x`'s shape), differentiable when `x` is tracked.
pub fn unfold(x: Tensor<4>, patches: Patches) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PatchOps>::unfold_patches(x.into_dispatch(), patches))
}

/// The adjoint of `unfold`.
pub fn fold(cols: Tensor<3>, patches: Patches) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as PatchOps>::fold_patches(cols.into_dispatch(), patches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{default_device, from_vec, to_vec, to_vec64};
    use burn::tensor::Distribution;

    fn patches(input: [usize; 3], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ones_row: bool) -> Patches {
        let out = |d: usize| (input[d + 1] + 2 * padding[d] - kernel[d]) / stride[d] + 1;
        Patches { input, kernel, stride, padding, output: [out(0), out(1)], ones_row }
    }

    /// A 1x3x3 image, 2x2 kernel, stride 1, padding 1 (written out by hand): each patch row is
    /// the image shifted, zeros over the padding, then the ones row.
    #[test]
    fn unfold_reads_each_kernel_offset_with_zero_padding() {
        let d = default_device();
        let x = from_vec((1..=9).map(|v| v as f32).collect(), [1, 1, 3, 3], &d);
        let p = patches([1, 3, 3], [2, 2], [1, 1], [1, 1], true);
        assert_eq!((p.rows(), p.positions()), (5, 16));
        let cols = to_vec(unfold(x, p));
        #[rustfmt::skip]
        let expected: [f32; 80] = [
            0., 0., 0., 0.,  0., 1., 2., 3.,  0., 4., 5., 6.,  0., 7., 8., 9.,
            0., 0., 0., 0.,  1., 2., 3., 0.,  4., 5., 6., 0.,  7., 8., 9., 0.,
            0., 1., 2., 3.,  0., 4., 5., 6.,  0., 7., 8., 9.,  0., 0., 0., 0.,
            1., 2., 3., 0.,  4., 5., 6., 0.,  7., 8., 9., 0.,  0., 0., 0., 0.,
            1., 1., 1., 1.,  1., 1., 1., 1.,  1., 1., 1., 1.,  1., 1., 1., 1.,
        ];
        assert_eq!(cols, expected);
    }

    /// <unfold(x), c> = <x, fold(c)> for random x and c (fold is unfold's transpose), on
    /// strided, padded, non-square cases, in float64 so that the sums compare tightly.
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        let d = default_device();
        let cases = [
            patches([2, 7, 6], [3, 2], [2, 1], [1, 0], true),
            patches([3, 5, 5], [1, 1], [1, 1], [0, 0], false),
            patches([1, 9, 8], [4, 4], [3, 2], [2, 3], false),
        ];
        for p in cases {
            let x = Tensor::<4>::random([3, p.input[0], p.input[1], p.input[2]], Distribution::Normal(0.0, 1.0), &d).cast(DType::F64);
            let c = Tensor::<3>::random([3, p.rows(), p.positions()], Distribution::Normal(0.0, 1.0), &d).cast(DType::F64);
            let lhs = to_vec64((unfold(x.clone(), p) * c.clone()).sum())[0];
            // The ones row pairs with c's last row, a constant that fold drops.
            let rows = p.rows();
            let ones = match p.ones_row {
                true => to_vec64(c.clone().slice([0..3, rows - 1..rows]).sum())[0],
                false => 0.0,
            };
            let rhs = to_vec64((x * fold(c, p)).sum())[0] + ones;
            assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{p:?}: {lhs} vs {rhs}");
        }
    }
}
