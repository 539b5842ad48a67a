//! Convolution on the CPU as GEMM over patches (im2col), forward and backward, as one
//! differentiable burn operation.
//!
//! `y = patches(x) · [W | b]^T`, with `patches(x)` of shape `[ho·wo, c·kh·kw (+1)]` per sample
//! (one row per output position, plus a column of ones that carries the bias). burn-flex's own
//! convolution reached ~3 and ~31 GFLOP/s on DM-small's two layers against ~140 for a large
//! GEMM, and its backward (a dilated convolution for the weights, a transposed one for the
//! input) was the largest cost of a training step. Here each direction is im2col or col2im plus
//! one GEMM (the `gemm` crate burn-flex uses) per chunk of samples, the chunk sized so that its
//! patch matrix stays in the core's L2 cache: materialising the patches of a whole 256-row
//! batch (26 MB on DM-small's second layer) made unfold and fold a third of a PGD step. The
//! operation is registered through burn's backend extension with a hand-written backward; the
//! weight gradient sums the chunks' partial products in chunk order, so results do not depend
//! on the number of threads.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex};
use burn::tensor::{DType, Element, Tensor, TensorData};
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
    /// Append a column of ones to the patch matrix (multiplied by the bias).
    pub ones_column: bool,
}

impl Patches {
    /// Columns of a patch matrix: c·kh·kw, plus the ones column.
    pub fn width(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1] + usize::from(self.ones_column)
    }

    /// Rows of one sample's patch matrix (output positions).
    pub fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Samples per chunk: as many as keep the chunk's patch matrix within `CHUNK_ELEMENTS`.
    fn chunk(&self) -> usize {
        (CHUNK_ELEMENTS / (self.width() * self.positions()).max(1)).max(1)
    }

    fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// The zero-padded input's height and width.
    fn padded(&self) -> [usize; 2] {
        [self.input[1] + 2 * self.padding[0], self.input[2] + 2 * self.padding[1]]
    }

    fn padded_len(&self) -> usize {
        let [hp, wp] = self.padded();
        self.input[0] * hp * wp
    }

    /// Calls `visit(offset, padded_offset)` for the start of every image row (w elements) of
    /// one sample, in its input and in its zero-padded copy.
    fn for_each_image_row(&self, mut visit: impl FnMut(usize, usize)) {
        let [c, h, w] = self.input;
        let [hp, wp] = self.padded();
        for ci in 0..c {
            for y in 0..h {
                visit((ci * h + y) * w, (ci * hp + y + self.padding[0]) * wp + self.padding[1]);
            }
        }
    }

    /// Calls `visit(patch_offset, padded_input_offset)` for every kernel row (kw contiguous
    /// elements in both) of one sample's patch matrix `[positions, width]`.
    #[inline(always)]
    fn for_each_kernel_row(&self, mut visit: impl FnMut(usize, usize)) {
        let [c, width] = [self.input[0], self.width()];
        let [kh, kw] = self.kernel;
        let [ho, wo] = self.output;
        let [hp, wp] = self.padded();
        for oy in 0..ho {
            for ox in 0..wo {
                let row = (oy * wo + ox) * width;
                for ci in 0..c {
                    for ky in 0..kh {
                        visit(row + (ci * kh + ky) * kw, (ci * hp + oy * self.stride[0] + ky) * wp + ox * self.stride[1]);
                    }
                }
            }
        }
    }
}

/// The operation, on the CPU backend with and without autodiff.
#[backend_extension(Flex, Autodiff)]
pub trait PatchOps: Backend {
    /// `x` `[n, c, h, w]`, `weight` `[cout, width]` (the kernel flattened, then the bias when
    /// `patches.ones_column`) -> `[n, cout, ho, wo]`.
    fn conv_patches(x: FloatTensor<Self>, weight: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self>;
    /// The transpose: `y` `[n, cout, ho, wo]` -> `[n, c, h, w]` (back-substitution through the
    /// layer, and the convolution's input gradient); `weight` as above, its ones column unused.
    fn conv_transpose_patches(y: FloatTensor<Self>, weight: FloatTensor<Self>, patches: Patches) -> FloatTensor<Self>;
}

/// Patch-matrix elements per chunk of samples: 1 MiB of float32, an L2-sized block.
const CHUNK_ELEMENTS: usize = 1 << 18;

/// The element types of the kernels (float32 training, float64 float-sound bounds).
trait Float: bytemuck::Pod + Default + Send + Sync + Element + std::ops::AddAssign + 'static {
    const ONE: Self;
}

impl Float for f32 {
    const ONE: f32 = 1.0;
}

impl Float for f64 {
    const ONE: f64 = 1.0;
}

/// One sample's input, zero-padded (borrowed as it is when there is no padding).
fn pad<'a, E: Float>(src: &'a [E], p: &Patches) -> std::borrow::Cow<'a, [E]> {
    if p.padding == [0, 0] {
        return std::borrow::Cow::Borrowed(src);
    }
    let w = p.input[2];
    let mut out = vec![E::default(); p.padded_len()];
    p.for_each_image_row(|at, padded_at| out[padded_at..padded_at + w].copy_from_slice(&src[at..at + w]));
    std::borrow::Cow::Owned(out)
}

/// One sample's patch matrix from its padded input. `KW` is the kernel width when it is one
/// of the common ones, else 0 (then read from `p`): a copy of constant length compiles to a
/// few vector moves, one of unknown length to a `memmove` call whose overhead on 4-element
/// rows was most of the unfold's time.
fn unfold_sample<E: Float, const KW: usize>(padded: &[E], dst: &mut [E], p: &Patches) {
    let kw = if KW == 0 { p.kernel[1] } else { KW };
    p.for_each_kernel_row(|o, i| dst[o..o + kw].copy_from_slice(&padded[i..i + kw]));
}

/// Adds one sample's patch matrix onto its padded input gradient (as `unfold_sample`).
fn fold_sample<E: Float, const KW: usize>(cols: &[E], padded: &mut [E], p: &Patches) {
    if KW == 0 {
        let kw = p.kernel[1];
        return p.for_each_kernel_row(|o, i| padded[i..i + kw].iter_mut().zip(&cols[o..o + kw]).for_each(|(d, s)| *d += *s));
    }
    // As arrays, the KW additions become one vector add instead of KW scalar ones.
    p.for_each_kernel_row(|o, i| {
        if let (Ok(d), Ok(s)) = (<&mut [E; KW]>::try_from(&mut padded[i..i + KW]), <&[E; KW]>::try_from(&cols[o..o + KW])) {
            for j in 0..KW {
                d[j] += s[j];
            }
        }
    });
}

/// The patch matrices `[samples · positions, width]` of `samples` consecutive input samples.
fn unfold<E: Float>(x: &[E], samples: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len) = (p.width(), p.positions(), p.input_len());
    let mut cols = vec![E::default(); samples * positions * width];
    for (src, dst) in x.chunks(len).zip(cols.chunks_mut(positions * width)) {
        let padded = pad(src, p);
        match p.kernel[1] {
            3 => unfold_sample::<E, 3>(&padded, dst, p),
            4 => unfold_sample::<E, 4>(&padded, dst, p),
            5 => unfold_sample::<E, 5>(&padded, dst, p),
            _ => unfold_sample::<E, 0>(&padded, dst, p),
        }
        if p.ones_column {
            dst.iter_mut().skip(width - 1).step_by(width).for_each(|v| *v = E::ONE);
        }
    }
    cols
}

/// Adds the patch matrices `cols` back onto their input samples `dx` (col2im; the ones
/// column, a constant, is dropped).
fn fold<E: Float>(cols: &[E], dx: &mut [E], p: &Patches) {
    let (width, positions, len, w) = (p.width(), p.positions(), p.input_len(), p.input[2]);
    let mut padded = match p.padding == [0, 0] {
        true => Vec::new(),
        false => vec![E::default(); p.padded_len()],
    };
    for (src, dst) in cols.chunks(positions * width).zip(dx.chunks_mut(len)) {
        let target: &mut [E] = match p.padding == [0, 0] {
            true => dst,
            false => {
                padded.fill(E::default());
                &mut padded
            }
        };
        match p.kernel[1] {
            3 => fold_sample::<E, 3>(src, target, p),
            4 => fold_sample::<E, 4>(src, target, p),
            5 => fold_sample::<E, 5>(src, target, p),
            _ => fold_sample::<E, 0>(src, target, p),
        }
        if p.padding != [0, 0] {
            p.for_each_image_row(|at, padded_at| dst[at..at + w].iter_mut().zip(&padded[padded_at..padded_at + w]).for_each(|(d, s)| *d += *s));
        }
    }
}

/// `[samples, cout, positions]` (NCHW) <-> `[samples · positions, cout]` (the GEMM's rows).
fn to_rows<E: Float>(y: &[E], cout: usize, positions: usize) -> Vec<E> {
    let mut t = vec![E::default(); y.len()];
    for (sample, dst) in y.chunks(cout * positions).zip(t.chunks_mut(cout * positions)) {
        for (co, src) in sample.chunks(positions).enumerate() {
            dst.iter_mut().skip(co).step_by(cout).zip(src).for_each(|(d, s)| *d = *s);
        }
    }
    t
}

fn from_rows<E: Float>(t: &[E], y: &mut [E], cout: usize, positions: usize) {
    for (src, sample) in t.chunks(cout * positions).zip(y.chunks_mut(cout * positions)) {
        for (co, dst) in sample.chunks_mut(positions).enumerate() {
            dst.iter_mut().zip(src.iter().skip(co).step_by(cout)).for_each(|(d, s)| *d = *s);
        }
    }
}

/// A matrix operand: values, rows, columns and their strides.
struct Operand<'a, E> {
    values: &'a [E],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<E> Operand<'_, E> {
    /// Whether every element the strides address lies inside `values` (checked before the
    /// unchecked GEMM reads them).
    fn fits(&self, len: usize) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < len
    }
}

/// `dst = lhs · rhs`, `dst` row-major with row stride `dst_stride`, on this thread.
fn gemm_into<E: Float>(dst: &mut [E], dst_stride: usize, lhs: Operand<E>, rhs: Operand<E>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let out = Operand { values: &[] as &[E], rows: m, cols: n, row_stride: dst_stride, col_stride: 1 };
    assert!(rhs.rows == k && lhs.fits(lhs.values.len()) && rhs.fits(rhs.values.len()) && out.fits(dst.len()), "gemm operands out of bounds");
    // SAFETY: the three operands' strides address only elements inside their slices (asserted
    // above), `dst` is borrowed mutably and cannot alias the inputs, and the element type is
    // f32 or f64, which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            false,
            lhs.values.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.values.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            E::default(),
            E::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `y [n, cout, positions] = patches(x) · w^T`, chunk by chunk in parallel.
fn forward<E: Float>(x: &[E], w: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    let mut y = vec![E::default(); n * cout * positions];
    y.par_chunks_mut(chunk * cout * positions).enumerate().for_each(|(c, y)| {
        let samples = y.len() / (cout * positions);
        let cols = unfold(&x[c * chunk * len..(c * chunk + samples) * len], samples, p);
        let mut t = vec![E::default(); samples * positions * cout];
        let lhs = Operand { values: &cols, rows: samples * positions, cols: width, row_stride: width, col_stride: 1 };
        let rhs = Operand { values: w, rows: width, cols: cout, row_stride: 1, col_stride: width };
        gemm_into(&mut t, cout, lhs, rhs);
        from_rows(&t, y, cout, positions);
    });
    y
}

/// The input gradient `[n, c, h, w]`: fold(dy · w), chunk by chunk in parallel.
fn input_grad<E: Float>(dy: &[E], w: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    // The ones column's gradient is never needed: the GEMM leaves it zero.
    let kernel_width = width - usize::from(p.ones_column);
    let mut dx = vec![E::default(); n * len];
    dx.par_chunks_mut(chunk * len).enumerate().for_each(|(c, dx)| {
        let samples = dx.len() / len;
        let t = to_rows(&dy[c * chunk * cout * positions..(c * chunk + samples) * cout * positions], cout, positions);
        let mut cols = vec![E::default(); samples * positions * width];
        let lhs = Operand { values: &t, rows: samples * positions, cols: cout, row_stride: cout, col_stride: 1 };
        let rhs = Operand { values: w, rows: cout, cols: kernel_width, row_stride: width, col_stride: 1 };
        gemm_into(&mut cols, width, lhs, rhs);
        fold(&cols, dx, p);
    });
    dx
}

/// The weight gradient `[cout, width]`: dy^T · patches(x), the chunks' partial products
/// computed in parallel and summed in chunk order.
fn weight_grad<E: Float>(x: &[E], dy: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    let partial: Vec<Vec<E>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let samples = chunk.min(n - c * chunk);
            let cols = unfold(&x[c * chunk * len..(c * chunk + samples) * len], samples, p);
            let t = to_rows(&dy[c * chunk * cout * positions..(c * chunk + samples) * cout * positions], cout, positions);
            let mut g = vec![E::default(); cout * width];
            let lhs = Operand { values: &t, rows: cout, cols: samples * positions, row_stride: 1, col_stride: cout };
            let rhs = Operand { values: &cols, rows: samples * positions, cols: width, row_stride: width, col_stride: 1 };
            gemm_into(&mut g, width, lhs, rhs);
            g
        })
        .collect();
    let mut sum = vec![E::default(); cout * width];
    for g in partial {
        sum.iter_mut().zip(g).for_each(|(s, g)| *s += g);
    }
    sum
}

/// The tensor's values in row-major order from offset 0 (a copy only for a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    match t.is_contiguous() && t.layout().start_offset() == 0 {
        true => t,
        false => t.to_contiguous(),
    }
}

/// Runs `f` on the float32 or float64 values of `tensors` (the caller has checked the dtype).
fn typed<const N: usize>(tensors: [&FlexTensor; N], f32s: impl FnOnce([&[f32]; N]) -> TensorData, f64s: impl FnOnce([&[f64]; N]) -> TensorData) -> FlexTensor {
    let data = match tensors[0].dtype() {
        DType::F64 => f64s(tensors.map(|t| t.storage::<f64>())),
        _ => f32s(tensors.map(|t| t.storage::<f32>())),
    };
    FlexTensor::from_data(data)
}

/// The convolution `[n, cout, ho, wo]` of `x` `[n, c, h, w]`.
fn conv_flex(x: &FlexTensor, weight: &FlexTensor, p: &Patches) -> FlexTensor {
    let (n, cout) = (x.layout().shape()[0], weight.layout().shape()[0]);
    let shape = [n, cout, p.output[0], p.output[1]];
    typed([x, weight], |[x, w]| TensorData::new(forward(x, w, n, cout, p), shape), |[x, w]| TensorData::new(forward(x, w, n, cout, p), shape))
}

/// The transposed convolution `[n, c, h, w]` of `y` `[n, cout, ho, wo]` (the input gradient).
fn conv_transpose_flex(y: &FlexTensor, weight: &FlexTensor, p: &Patches) -> FlexTensor {
    let (n, cout) = (y.layout().shape()[0], weight.layout().shape()[0]);
    let shape = [n, p.input[0], p.input[1], p.input[2]];
    typed([y, weight], |[y, w]| TensorData::new(input_grad(y, w, n, cout, p), shape), |[y, w]| TensorData::new(input_grad(y, w, n, cout, p), shape))
}

/// `[cout, width]`: the sum over samples of `y`'s rows times the patches of `x`.
fn weight_flex(x: &FlexTensor, y: &FlexTensor, p: &Patches) -> FlexTensor {
    let (n, cout) = (x.layout().shape()[0], y.layout().shape()[1]);
    let shape = [cout, p.width()];
    typed([x, y], |[x, y]| TensorData::new(weight_grad(x, y, n, cout, p), shape), |[x, y]| TensorData::new(weight_grad(x, y, n, cout, p), shape))
}

impl PatchOps for Flex {
    fn conv_patches(x: FlexTensor, weight: FlexTensor, p: Patches) -> FlexTensor {
        conv_flex(&contiguous(x), &contiguous(weight), &p)
    }

    fn conv_transpose_patches(y: FlexTensor, weight: FlexTensor, p: Patches) -> FlexTensor {
        conv_transpose_flex(&contiguous(y), &contiguous(weight), &p)
    }
}

/// The backward step of a convolution (`transpose` false: input `x`, output `y`) or of its
/// transpose (input `y`, output `x`). Either way the input's gradient is the other operation
/// applied to the output's gradient with the same weights, and the weights' gradient pairs
/// the `y`-side tensor with the patches of the `x`-side one.
#[derive(Debug)]
struct PatchBackward {
    transpose: bool,
}

impl Backward<Flex, 2> for PatchBackward {
    type State = (FlexTensor, FlexTensor, Patches);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [input_node, weight_node] = ops.parents;
        let d = contiguous(grads.consume::<Flex>(&ops.node));
        let (input, weight, p) = ops.state;
        if let Some(node) = input_node {
            let back = match self.transpose {
                false => conv_transpose_flex(&d, &weight, &p),
                true => conv_flex(&d, &weight, &p),
            };
            grads.register::<Flex>(node.id, back);
        }
        if let Some(node) = weight_node {
            let dw = match self.transpose {
                false => weight_flex(&input, &d, &p),
                true => weight_flex(&d, &input, &p),
            };
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// Runs `op` on the inner tensors and, when either input is tracked, records its backward.
fn recorded<C: CheckpointStrategy>(
    input: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    p: Patches,
    transpose: bool,
    op: fn(&FlexTensor, &FlexTensor, &Patches) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    match (PatchBackward { transpose }).prepare::<C>([input.node(), weight.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (input, weight) = (contiguous(input.into_primitive()), contiguous(weight.into_primitive()));
            let out = op(&input, &weight, &p);
            prep.finish((input, weight, p), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(op(&contiguous(input.into_primitive()), &contiguous(weight.into_primitive()), &p)),
    }
}

impl<C: CheckpointStrategy> PatchOps for Autodiff<Flex, C> {
    fn conv_patches(x: FloatTensor<Self>, weight: FloatTensor<Self>, p: Patches) -> FloatTensor<Self> {
        recorded::<C>(x, weight, p, false, conv_flex)
    }

    fn conv_transpose_patches(y: FloatTensor<Self>, weight: FloatTensor<Self>, p: Patches) -> FloatTensor<Self> {
        recorded::<C>(y, weight, p, true, conv_transpose_flex)
    }
}

/// `weight · x` over `patches` on the CPU backend, differentiable in both. The caller checks
/// `on_cpu()`, that both are float32 or both float64, and that `patches` matches the shapes:
/// `x` `[n, c, h, w]`, `weight` `[cout, patches.width()]`.
pub fn conv2d(x: Tensor<4>, weight: Tensor<2>, patches: Patches) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as PatchOps>::conv_patches(x.into_dispatch(), weight.into_dispatch(), patches))
}

/// The transpose of `conv2d` (same conditions; `y` `[n, cout, ho, wo]` -> `[n, c, h, w]`),
/// differentiable in both.
pub fn conv_transpose2d(y: Tensor<4>, weight: Tensor<2>, patches: Patches) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as PatchOps>::conv_transpose_patches(y.into_dispatch(), weight.into_dispatch(), patches))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patches(input: [usize; 3], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ones_column: bool) -> Patches {
        let out = |d: usize| (input[d + 1] + 2 * padding[d] - kernel[d]) / stride[d] + 1;
        Patches { input, kernel, stride, padding, output: [out(0), out(1)], ones_column }
    }

    /// A 1x3x3 image, 2x2 kernel, stride 1, padding 1 (written out by hand): row (oy, ox) holds
    /// the 2x2 window at (oy - 1, ox - 1), zeros over the padding, then the bias's one.
    #[test]
    fn unfold_reads_each_kernel_offset_with_zero_padding() {
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let p = patches([1, 3, 3], [2, 2], [1, 1], [1, 1], true);
        assert_eq!((p.width(), p.positions()), (5, 16));
        #[rustfmt::skip]
        let expected: [f32; 80] = [
            0., 0., 0., 1., 1.,
            0., 0., 1., 2., 1.,
            0., 0., 2., 3., 1.,
            0., 0., 3., 0., 1.,
            0., 1., 0., 4., 1.,
            1., 2., 4., 5., 1.,
            2., 3., 5., 6., 1.,
            3., 0., 6., 0., 1.,
            0., 4., 0., 7., 1.,
            4., 5., 7., 8., 1.,
            5., 6., 8., 9., 1.,
            6., 0., 9., 0., 1.,
            0., 7., 0., 0., 1.,
            7., 8., 0., 0., 1.,
            8., 9., 0., 0., 1.,
            9., 0., 0., 0., 1.,
        ];
        assert_eq!(unfold(&x, 1, &p), expected);
    }

    /// A deterministic pseudo-random vector (the test needs no distribution, only variety).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n as u64).map(|i| ((i * 2654435761 + seed * 40503) % 1009) as f64 / 1009.0 - 0.5).collect()
    }

    /// <unfold(x), c> = <x, fold(c)> for varied x and c (fold is unfold's transpose; the ones
    /// column pairs with c's last column, a constant fold drops), on strided, padded,
    /// non-square cases with several samples.
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        let cases = [
            patches([2, 7, 6], [3, 2], [2, 1], [1, 0], true),
            patches([3, 5, 5], [1, 1], [1, 1], [0, 0], false),
            patches([1, 9, 8], [4, 4], [3, 2], [2, 3], false),
        ];
        for p in cases {
            let samples = 3;
            let x = values(samples * p.input_len(), 1);
            let c = values(samples * p.positions() * p.width(), 2);
            let lhs: f64 = unfold(&x, samples, &p).iter().zip(&c).map(|(a, b)| a * b).sum();
            let mut folded = vec![0.0; x.len()];
            fold(&c, &mut folded, &p);
            let ones: f64 = match p.ones_column {
                true => c.iter().skip(p.width() - 1).step_by(p.width()).sum(),
                false => 0.0,
            };
            let rhs = x.iter().zip(&folded).map(|(a, b)| a * b).sum::<f64>() + ones;
            assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{p:?}: {lhs} vs {rhs}");
        }
    }

    /// The chunked, parallel weight gradient does not depend on the chunk boundaries' thread
    /// placement: two runs agree bit for bit, and agree with one unchunked product.
    #[test]
    fn weight_gradient_is_deterministic_and_matches_one_product() {
        let p = patches([3, 9, 9], [3, 3], [1, 1], [1, 1], true);
        // Enough samples for several chunks.
        let n = 2 * p.chunk() + 1;
        let cout = 4;
        let x: Vec<f32> = values(n * p.input_len(), 3).into_iter().map(|v| v as f32).collect();
        let dy: Vec<f32> = values(n * cout * p.positions(), 4).into_iter().map(|v| v as f32).collect();
        let a = weight_grad(&x, &dy, n, cout, &p);
        assert_eq!(a, weight_grad(&x, &dy, n, cout, &p));
        let (cols, t) = (unfold(&x, n, &p), to_rows(&dy, cout, p.positions()));
        for co in 0..cout {
            for r in 0..p.width() {
                let direct: f64 = (0..n * p.positions()).map(|i| t[i * cout + co] as f64 * cols[i * p.width() + r] as f64).sum();
                let got = a[co * p.width() + r] as f64;
                assert!((got - direct).abs() < 1e-3 * direct.abs().max(1.0), "{co},{r}: {got} vs {direct}");
            }
        }
    }
}
