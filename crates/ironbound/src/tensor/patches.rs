//! Convolution on the CPU as GEMM over patches (im2col), forward and backward, as one
//! differentiable burn operation.
//!
//! `y = [W | b] · patches(x)`, with `patches(x)` of shape `[c·kh·kw (+1), ho·wo]` per sample
//! (one row per kernel offset, plus a row of ones that carries the bias). burn-flex's own
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
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::cpu::{contiguous, typed, Float};

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
    /// The weight matrix has a last column, the bias: append a row of ones to the patch matrix.
    pub ones_column: bool,
}

impl Patches {
    /// Rows of a patch matrix (kernel offsets): c·kh·kw, plus the ones row (the weight matrix's
    /// columns: the flattened kernel, then the bias).
    pub fn width(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1] + usize::from(self.ones_column)
    }

    /// Columns of one sample's patch matrix (output positions).
    pub fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Samples per chunk: as many as keep the chunk's patch matrix within `CHUNK_ELEMENTS`,
    /// rounded down (when that leaves any) to a multiple that makes the chunk's columns
    /// (samples · positions) a multiple of 16. The GEMM then reads the patch matrix in place:
    /// `gemm` copies ("packs") an operand whose rows do not fill its 16-lane blocks.
    fn chunk(&self) -> usize {
        let most = (CHUNK_ELEMENTS / (self.width() * self.positions()).max(1)).max(1);
        let multiple = 16 / gcd(self.positions(), 16);
        match most >= multiple {
            true => most / multiple * multiple,
            false => most,
        }
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

    /// Calls `visit(row, padded_offset)` for every kernel offset `(ci, ky, kx)` (its row of the
    /// patch matrix) with where its window's first element lies in the padded input; the
    /// window's other elements follow at `window_strides()`.
    #[inline(always)]
    fn for_each_kernel_offset(&self, mut visit: impl FnMut(usize, usize)) {
        let [kh, kw] = self.kernel;
        let [hp, wp] = self.padded();
        for ci in 0..self.input[0] {
            for ky in 0..kh {
                for kx in 0..kw {
                    visit((ci * kh + ky) * kw + kx, (ci * hp + ky) * wp + kx);
                }
            }
        }
    }

    /// Strides in the padded input between output rows and between output columns.
    fn window_strides(&self) -> [usize; 2] {
        [self.stride[0] * self.padded()[1], self.stride[1]]
    }
}

fn gcd(a: usize, b: usize) -> usize {
    match b {
        0 => a.max(1),
        _ => gcd(b, a % b),
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

/// Copies one sample's input into its zero-padded copy `out` (whose border stays zero).
fn pad_into<E: Float>(src: &[E], out: &mut [E], p: &Patches) {
    let w = p.input[2];
    p.for_each_image_row(|at, padded_at| out[padded_at..padded_at + w].copy_from_slice(&src[at..at + w]));
}

/// Whether `rows` rows of `len` elements, `stride` apart (elements `step` apart within a
/// row), lie inside a slice of `available` elements.
fn rows_fit(available: usize, rows: usize, len: usize, [stride, step]: [usize; 2]) -> bool {
    rows == 0 || len == 0 || (rows - 1) * stride + (len - 1) * step < available
}

/// Copies `len` elements from `src` to `dst`. Image rows are short (4 to 32 elements), and
/// a copy of unknown length is a `memmove` call costing more than the copy: this one is
/// vector moves of 8 (or 4) elements, the last one overlapping the one before.
///
/// # Safety
/// `src` and `dst` must be valid for `len` elements and not overlap.
#[inline(always)]
unsafe fn copy_run<E: Copy>(dst: *mut E, src: *const E, len: usize) {
    // SAFETY (all blocks): every block starts at `i >= 0` and ends at or before `len`.
    unsafe {
        if len >= 8 {
            let mut i = 0;
            while i + 8 < len {
                std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), 8);
                i += 8;
            }
            std::ptr::copy_nonoverlapping(src.add(len - 8), dst.add(len - 8), 8);
        } else if len >= 4 {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(len - 4), dst.add(len - 4), 4);
        } else {
            for i in 0..len {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

/// Adds `len` elements of `src` onto `dst`, 8 at a time as arrays (vector adds).
///
/// # Safety
/// As `copy_run`.
#[inline(always)]
unsafe fn add_run<E: Float>(dst: *mut E, src: *const E, len: usize) {
    const B: usize = 8;
    let mut i = 0;
    // SAFETY: every block and tail element lies below `len`; unaligned reads and writes.
    unsafe {
        while i + B <= len {
            let (d, s) = (dst.add(i) as *mut [E; B], src.add(i) as *const [E; B]);
            let (mut a, b) = (d.read_unaligned(), s.read_unaligned());
            for j in 0..B {
                a[j] += b[j];
            }
            d.write_unaligned(a);
            i += B;
        }
        while i < len {
            *dst.add(i) += *src.add(i);
            i += 1;
        }
    }
}

/// Copies `rows` rows of `len` elements, `strides[0]` apart in `src` (elements `strides[1]`
/// apart within a row), into the contiguous `dst` (`rows * len` long).
#[inline(always)]
fn gather_rows<E: Float>(dst: &mut [E], src: &[E], rows: usize, len: usize, strides: [usize; 2]) {
    let [stride, step] = strides;
    assert!(dst.len() >= rows * len && rows_fit(src.len(), rows, len, strides), "patch rows out of bounds");
    for r in 0..rows {
        let (d, s) = (&mut dst[r * len..(r + 1) * len], &src[r * stride..]);
        match step {
            // SAFETY: `d` holds `len` elements and `s` at least `len` (asserted above).
            1 => unsafe { copy_run(d.as_mut_ptr(), s.as_ptr(), len) },
            _ => d.iter_mut().zip(s.iter().step_by(step)).for_each(|(d, s)| *d = *s),
        }
    }
}

/// Adds the contiguous `src` (`rows * len`) onto `rows` rows of `dst` laid out as in
/// `gather_rows` (its transpose).
#[inline(always)]
fn scatter_add_rows<E: Float>(dst: &mut [E], src: &[E], rows: usize, len: usize, strides: [usize; 2]) {
    let [stride, step] = strides;
    assert!(src.len() >= rows * len && rows_fit(dst.len(), rows, len, strides), "patch rows out of bounds");
    for r in 0..rows {
        let (d, s) = (&mut dst[r * stride..], &src[r * len..(r + 1) * len]);
        match step {
            // SAFETY: `s` holds `len` elements and `d` at least `len` (asserted above).
            1 => unsafe { add_run(d.as_mut_ptr(), s.as_ptr(), len) },
            _ => d.iter_mut().step_by(step).zip(s).for_each(|(d, s)| *d += *s),
        }
    }
}

/// The patch matrix of `samples` consecutive input samples into `cols`, laid out
/// `[width, samples · positions]`: one row per kernel offset (then the ones row), one column
/// per sample and output position. In this layout a row's window for one output row is a
/// contiguous run of the input (stride 1), and the GEMM's result comes out channel-major,
/// so that it reaches NCHW by copies of whole channels rather than by a transpose.
fn unfold_into<E: Float>(x: &[E], samples: usize, p: &Patches, cols: &mut [E]) {
    let (width, positions, len) = (p.width(), p.positions(), p.input_len());
    let span = samples * positions;
    let [ho, wo] = p.output;
    let mut padded = vec![E::default(); if p.padding == [0, 0] { 0 } else { p.padded_len() }];
    for (s, src) in x.chunks_exact(len).take(samples).enumerate() {
        let image: &[E] = match padded.is_empty() {
            true => src,
            false => {
                pad_into(src, &mut padded, p);
                &padded
            }
        };
        p.for_each_kernel_offset(|row, at| {
            let seg = &mut cols[row * span + s * positions..][..positions];
            gather_rows(seg, &image[at..], ho, wo, p.window_strides());
        });
        if p.ones_column {
            cols[(width - 1) * span + s * positions..][..positions].fill(E::ONE);
        }
    }
}

/// `unfold_into` a new matrix.
#[cfg(test)]
fn unfold<E: Float>(x: &[E], samples: usize, p: &Patches) -> Vec<E> {
    let mut cols = vec![E::default(); p.width() * samples * p.positions()];
    unfold_into(x, samples, p, &mut cols);
    cols
}

/// Adds the patch matrix `cols` (laid out as `unfold_into`'s) back onto its input samples
/// `dx` (col2im; the ones row, a constant, is dropped).
fn fold<E: Float>(cols: &[E], dx: &mut [E], p: &Patches) {
    let (positions, len, w) = (p.positions(), p.input_len(), p.input[2]);
    let samples = dx.len() / len;
    let span = samples * positions;
    let [ho, wo] = p.output;
    let mut padded = vec![E::default(); if p.padding == [0, 0] { 0 } else { p.padded_len() }];
    for (s, dst) in dx.chunks_exact_mut(len).enumerate() {
        let add_sample = |target: &mut [E]| {
            p.for_each_kernel_offset(|row, at| {
                let seg = &cols[row * span + s * positions..][..positions];
                scatter_add_rows(&mut target[at..], seg, ho, wo, p.window_strides());
            })
        };
        if padded.is_empty() {
            add_sample(dst);
        } else {
            padded.fill(E::default());
            add_sample(&mut padded);
            p.for_each_image_row(|at, padded_at| dst[at..at + w].iter_mut().zip(&padded[padded_at..padded_at + w]).for_each(|(d, s)| *d += *s));
        }
    }
}

/// `[samples, channels, positions]` (NCHW) -> `[channels, samples · positions]` (a GEMM
/// operand), by copies of whole channels.
fn channels_first<E: Float>(y: &[E], t: &mut [E], channels: usize, positions: usize) {
    let span = y.len() / channels;
    for (s, sample) in y.chunks_exact(channels * positions).enumerate() {
        for (c, src) in sample.chunks_exact(positions).enumerate() {
            t[c * span + s * positions..][..positions].copy_from_slice(src);
        }
    }
}

/// The inverse of `channels_first`.
fn samples_first<E: Float>(t: &[E], y: &mut [E], channels: usize, positions: usize) {
    let span = y.len() / channels;
    for (s, sample) in y.chunks_exact_mut(channels * positions).enumerate() {
        for (c, dst) in sample.chunks_exact_mut(positions).enumerate() {
            dst.copy_from_slice(&t[c * span + s * positions..][..positions]);
        }
    }
}

thread_local! {
    /// Two working buffers per thread (a patch matrix and a channel-major matrix), kept
    /// between calls: allocating and zeroing 1 MiB per chunk cost more than a chunk's copies.
    /// Every use overwrites the part it reads.
    static SCRATCH: [std::cell::RefCell<Vec<f64>>; 2] = Default::default();
}

/// Runs `f` on two working slices of `a` and `b` elements (stale values, to be overwritten).
fn with_scratch<E: Float, R>(a: usize, b: usize, f: impl FnOnce(&mut [E], &mut [E]) -> R) -> R {
    let words = |n: usize| (n * std::mem::size_of::<E>()).div_ceil(8);
    SCRATCH.with(|[sa, sb]| match (sa.try_borrow_mut(), sb.try_borrow_mut()) {
        (Ok(mut va), Ok(mut vb)) => {
            for (v, n) in [(&mut *va, a), (&mut *vb, b)] {
                if v.len() < words(n) {
                    v.resize(words(n), 0.0);
                }
            }
            let ea: &mut [E] = bytemuck::cast_slice_mut(&mut va[..words(a)]);
            let eb: &mut [E] = bytemuck::cast_slice_mut(&mut vb[..words(b)]);
            f(&mut ea[..a], &mut eb[..b])
        }
        // Re-entered on this thread (a rayon worker stealing another chunk): fresh buffers.
        _ => f(&mut vec![E::default(); a], &mut vec![E::default(); b]),
    })
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
    let out = Operand { values: &[] as &[E], rows: lhs.rows, cols: rhs.cols, row_stride: dst_stride, col_stride: 1 };
    gemm_strided(dst, out, lhs, rhs);
}

/// `dst = lhs · rhs`, `dst` column-major with column stride `dst_stride`, on this thread.
fn gemm_col_major<E: Float>(dst: &mut [E], dst_stride: usize, lhs: Operand<E>, rhs: Operand<E>) {
    let out = Operand { values: &[] as &[E], rows: lhs.rows, cols: rhs.cols, row_stride: 1, col_stride: dst_stride };
    gemm_strided(dst, out, lhs, rhs);
}

/// `dst = lhs · rhs` with `dst` addressed by `out`'s shape and strides.
fn gemm_strided<E: Float>(dst: &mut [E], out: Operand<E>, lhs: Operand<E>, rhs: Operand<E>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
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
            out.col_stride as isize,
            out.row_stride as isize,
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

/// One chunk's convolution from its patch matrix `cols`: `w · cols` into the chunk's NCHW
/// output `y`, through the scratch `t`.
fn forward_chunk<E: Float>(cols: &[E], t: &mut [E], w: &[E], y: &mut [E], cout: usize, p: &Patches) {
    let (width, span) = (p.width(), y.len() / cout);
    let lhs = Operand { values: w, rows: cout, cols: width, row_stride: width, col_stride: 1 };
    let rhs = Operand { values: cols, rows: width, cols: span, row_stride: span, col_stride: 1 };
    gemm_into(t, span, lhs, rhs);
    samples_first(t, y, cout, p.positions());
}

/// `y [n, cout, positions] = w · patches(x)`, chunk by chunk in parallel.
fn forward<E: Float>(x: &[E], w: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    let mut y = vec![E::default(); n * cout * positions];
    y.par_chunks_mut(chunk * cout * positions).enumerate().for_each(|(c, y)| {
        let span = y.len() / cout;
        with_scratch(width * span, cout * span, |cols: &mut [E], t: &mut [E]| {
            unfold_into(&x[c * chunk * len..], span / positions, p, cols);
            forward_chunk(cols, t, w, y, cout, p);
        });
    });
    y
}

/// The input gradient `[n, c, h, w]`: fold(w^T · dy), chunk by chunk in parallel.
fn input_grad<E: Float>(dy: &[E], w: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    // The ones row's gradient is never needed: the GEMM leaves it out.
    let kernel_width = width - usize::from(p.ones_column);
    let mut dx = vec![E::default(); n * len];
    dx.par_chunks_mut(chunk * len).enumerate().for_each(|(c, dx)| {
        let span = dx.len() / len * positions;
        with_scratch(width * span, cout * span, |cols: &mut [E], t: &mut [E]| {
            channels_first(&dy[c * chunk * cout * positions..][..cout * span], t, cout, positions);
            let lhs = Operand { values: w, rows: kernel_width, cols: cout, row_stride: 1, col_stride: width };
            let rhs = Operand { values: &*t, rows: cout, cols: span, row_stride: span, col_stride: 1 };
            gemm_into(&mut cols[..kernel_width * span], span, lhs, rhs);
            fold(cols, dx, p);
        });
    });
    dx
}

/// One chunk's part of the weight gradient from its patch matrix `cols` and its NCHW output
/// gradient `dy`: `dy · cols^T`, column-major `[cout, width]` (`gemm` then reads the patch
/// matrix in place: it copies a right-hand side only when its rows are not contiguous),
/// through the scratch `t`.
fn weight_partial<E: Float>(cols: &[E], t: &mut [E], dy: &[E], cout: usize, p: &Patches) -> Vec<E> {
    let (width, span) = (p.width(), dy.len() / cout);
    channels_first(dy, t, cout, p.positions());
    let mut g = vec![E::default(); cout * width];
    let lhs = Operand { values: &*t, rows: cout, cols: span, row_stride: span, col_stride: 1 };
    let rhs = Operand { values: cols, rows: span, cols: width, row_stride: 1, col_stride: span };
    gemm_col_major(&mut g, cout, lhs, rhs);
    g
}

/// The chunks' column-major partial weight gradients summed in chunk order (so that the
/// result does not depend on the threads), transposed once to the row-major `[cout, width]`.
fn sum_partials<E: Float>(partial: Vec<Vec<E>>, cout: usize, width: usize) -> Vec<E> {
    let mut sum = vec![E::default(); cout * width];
    for g in partial {
        sum.iter_mut().zip(g).for_each(|(s, g)| *s += g);
    }
    let mut row_major = vec![E::default(); cout * width];
    for (kk, column) in sum.chunks_exact(cout).enumerate() {
        row_major.iter_mut().skip(kk).step_by(width).zip(column).for_each(|(d, s)| *d = *s);
    }
    row_major
}

/// The weight gradient `[cout, width]`: dy · patches(x)^T, the chunks' partial products
/// computed in parallel.
fn weight_grad<E: Float>(x: &[E], dy: &[E], n: usize, cout: usize, p: &Patches) -> Vec<E> {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    let partial: Vec<Vec<E>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let span = chunk.min(n - c * chunk) * positions;
            with_scratch(width * span, cout * span, |cols: &mut [E], t: &mut [E]| {
                unfold_into(&x[c * chunk * len..], span / positions, p, cols);
                weight_partial(cols, t, &dy[c * chunk * cout * positions..][..cout * span], cout, p)
            })
        })
        .collect();
    sum_partials(partial, cout, width)
}

/// `forward(x, w)` and `weight_grad(x, dy)` from one unfold of each chunk of `x`: the backward
/// pass of a transposed convolution (back-substitution's) needs both, and the unfold of its
/// `[rows · samples]`-long output gradient is the larger part of either.
fn forward_and_weight_grad<E: Float>(x: &[E], w: &[E], dy: &[E], n: usize, cout: usize, p: &Patches) -> (Vec<E>, Vec<E>) {
    let (width, positions, len, chunk) = (p.width(), p.positions(), p.input_len(), p.chunk());
    let mut y = vec![E::default(); n * cout * positions];
    let partial: Vec<Vec<E>> = y
        .par_chunks_mut(chunk * cout * positions)
        .enumerate()
        .map(|(c, y)| {
            let span = y.len() / cout;
            with_scratch(width * span, cout * span, |cols: &mut [E], t: &mut [E]| {
                unfold_into(&x[c * chunk * len..], span / positions, p, cols);
                forward_chunk(cols, t, w, y, cout, p);
                weight_partial(cols, t, &dy[c * chunk * cout * positions..][..cout * span], cout, p)
            })
        })
        .collect();
    (y, sum_partials(partial, cout, width))
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

/// `conv_flex(x, weight)` and `weight_flex(x, y)` in one pass over `x`'s patches.
fn conv_and_weight_flex(x: &FlexTensor, weight: &FlexTensor, y: &FlexTensor, p: &Patches) -> (FlexTensor, FlexTensor) {
    let (n, cout) = (x.layout().shape()[0], weight.layout().shape()[0]);
    let (shape, w_shape) = ([n, cout, p.output[0], p.output[1]], [cout, p.width()]);
    fn pair<E: Float>((a, b): (Vec<E>, Vec<E>), shape: [usize; 4], w_shape: [usize; 2]) -> (FlexTensor, FlexTensor) {
        (FlexTensor::from_data(TensorData::new(a, shape)), FlexTensor::from_data(TensorData::new(b, w_shape)))
    }
    match x.dtype() {
        DType::F64 => pair(forward_and_weight_grad(x.storage::<f64>(), weight.storage(), y.storage(), n, cout, p), shape, w_shape),
        _ => pair(forward_and_weight_grad(x.storage::<f32>(), weight.storage(), y.storage(), n, cout, p), shape, w_shape),
    }
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
        if let (true, Some(input_node), Some(weight_node)) = (self.transpose, &input_node, &weight_node) {
            let (back, dw) = conv_and_weight_flex(&d, &weight, &input, &p);
            grads.register::<Flex>(input_node.id, back);
            grads.register::<Flex>(weight_node.id, dw);
            return;
        }
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
        // `unfold` lays the matrix out transposed: one row per kernel offset.
        let transposed: Vec<f32> = (0..80).map(|i| expected[(i % 16) * 5 + i / 16]).collect();
        assert_eq!(unfold(&x, 1, &p), transposed);
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
                true => c[(p.width() - 1) * samples * p.positions()..].iter().sum(),
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
        let (cols, span) = (unfold(&x, n, &p), n * p.positions());
        let dy_at = |i: usize, co: usize| dy[((i / p.positions()) * cout + co) * p.positions() + i % p.positions()];
        for co in 0..cout {
            for r in 0..p.width() {
                let direct: f64 = (0..span).map(|i| dy_at(i, co) as f64 * cols[r * span + i] as f64).sum();
                let got = a[co * p.width() + r] as f64;
                assert!((got - direct).abs() < 1e-3 * direct.abs().max(1.0), "{co},{r}: {got} vs {direct}");
            }
        }
    }
}
