//! 2-d convolution with stride and zero padding. Back-substitution uses the transposed
//! convolution, so the linear forms over a conv layer's input are never built as dense
//! matrices (DM-large on 3x32x32 stays in bounded memory).

use super::{AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::{conv2d, conv_transpose2d, ops, DType, Patches, Tensor};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, kh, kw]`, PyTorch layout.
    pub weight: Tensor<4>,
    /// `[out_channels]`.
    pub bias: Tensor<1>,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Conv2d {
    pub fn new(weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Self {
        Conv2d { weight, bias, stride, padding }
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn kernel(&self) -> [usize; 2] {
        let d = self.weight.dims();
        [d[2], d[3]]
    }

    /// The geometry of the CPU kernels (tensor/patches.rs) for this layer on inputs of
    /// `[n, c, h, w]` and `dtype`, when they apply: on the CPU, float32 or float64 input and weights, the
    /// kernel fitting, and at most 2^31 patch elements (index arithmetic stays in range). The
    /// GPU and everything else keep burn's convolutions.
    fn patches(&self, [n, c, h, w]: [usize; 4], dtype: DType, ones_column: bool) -> Option<Patches> {
        let float = matches!(dtype, DType::F32 | DType::F64) && self.weight.dtype() == dtype;
        if !float || !crate::tensor::on_cpu() {
            return None;
        }
        let [kh, kw] = self.kernel();
        let output = [self.out_size(h, 0)?, self.out_size(w, 1)?];
        let p = Patches { input: [c, h, w], kernel: [kh, kw], stride: self.stride, padding: self.padding, output, ones_column };
        n.checked_mul(p.width() * p.positions()).filter(|&e| e <= 1 << 31).map(|_| p)
    }

    /// `weight * x`, plus `bias` if given: GEMM over the input's patches,
    /// `patches(x) · [W | b]^T`, forward and backward, where the kernels apply; burn-flex's
    /// convolution reached ~3 and ~31 GFLOP/s on DM-small's layers against ~140 for a GEMM.
    fn convolve(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let Some(patches) = self.patches(x.dims(), x.dtype(), bias.is_some()) else {
            return ops::conv2d(x, weight, bias, self.options());
        };
        let cout = self.out_channels();
        let mut w = weight.reshape([cout, patches.width() - usize::from(patches.ones_column)]);
        if let Some(b) = bias {
            w = Tensor::cat(vec![w, b.reshape([cout, 1])], 1);
        }
        conv2d(x, w, patches)
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(self.stride, self.padding, [1, 1], 1)
    }

    /// Output size along `dim`, `None` when the kernel does not fit, the stride or kernel is
    /// 0, or the padded size overflows (all reachable from a hostile model file).
    fn out_size(&self, input: usize, dim: usize) -> Option<usize> {
        let padded = self.padding[dim].checked_mul(2)?.checked_add(input)?;
        let (k, s) = (self.kernel()[dim], self.stride[dim]);
        (k > 0 && s > 0 && padded >= k).then(|| (padded - k) / s + 1)
    }
}

impl AffineLayer for Conv2d {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input[0] != self.in_channels() {
            return Err(Error::input(format!(
                "conv2d layer expects {} input channels, got {}",
                self.in_channels(),
                input[0]
            )));
        }
        match (self.out_size(input[1], 0), self.out_size(input[2], 1)) {
            (Some(h), Some(w)) => Ok([self.out_channels(), h, w]),
            _ => Err(Error::input(format!(
                "conv2d kernel {:?} with stride {:?} and padding {:?} does not fit input {}x{} (kernel and stride must be >= 1)",
                self.kernel(),
                self.stride,
                self.padding,
                input[1],
                input[2]
            ))),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, self.weight.clone(), Some(self.bias.clone()))
    }

    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, self.weight.clone(), None)
    }

    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        self.convolve(r, self.weight.clone().abs(), None)
    }

    /// Forward: C_in k_h k_w products and the bias; transposed: at most C_out k_h k_w products
    /// (the GEMM's sums, then col2im's overlaps, a summation tree no taller than that).
    fn max_terms(&self, _input: &Shape) -> usize {
        let k = self.kernel();
        self.in_channels().max(self.out_channels()) * k[0] * k[1] + 1
    }

    fn transpose_terms(&self, _input: &Shape) -> usize {
        let k = self.kernel();
        self.out_channels() * k[0] * k[1]
    }

    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4> {
        let [rows, _, ho, wo] = a.dims();
        let patches = self.patches([rows, input[0], input[1], input[2]], a.dtype(), false).filter(|p| p.output == [ho, wo]);
        if let Some(patches) = patches {
            let w = self.weight.clone().reshape([self.out_channels(), patches.width()]);
            return conv_transpose2d(a, w, patches);
        }
        let k = self.kernel();
        // The transposed convolution of an [ho, wo] map covers (ho-1)*s - 2p + k input rows;
        // rows the forward convolution never read (stride remainder) get zero coefficients.
        let covered = |o: usize, d: usize| ((o - 1) * self.stride[d] + k[d]).saturating_sub(2 * self.padding[d]);
        let extra = [input[1].saturating_sub(covered(ho, 0)), input[2].saturating_sub(covered(wo, 1))];
        if extra[0] < self.stride[0] && extra[1] < self.stride[1] {
            let options = ConvTransposeOptions::new(self.stride, self.padding, extra, [1, 1], 1);
            return ops::conv_transpose2d(a, self.weight.clone(), None, options);
        }
        // Large remainders cannot be expressed as output padding: pad explicitly.
        let options = ConvTransposeOptions::new(self.stride, self.padding, [0, 0], [1, 1], 1);
        let t = ops::conv_transpose2d(a, self.weight.clone(), None, options);
        let [r, c, h, w] = t.dims();
        let full = Tensor::zeros([r, c, input[1], input[2]], (&t.device(), t.dtype()));
        full.slice_assign([0..r, 0..c, 0..h, 0..w], t)
    }

    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>> {
        let [rows, c, h, w] = a.dims();
        let per_channel = a.clone().reshape([rows, c, h * w]).sum_dim(2).reshape([rows, c]);
        Some(per_channel.matmul(self.bias.clone().reshape([c, 1])).reshape([rows]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{default_device, to_vec};
    use burn::tensor::Distribution;

    /// The largest difference, relative to the largest magnitude of `b` (at least 1): float32
    /// sums of many products differ by rounding in proportion to their size.
    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = to_vec(b.clone().abs().max())[0].max(1.0);
        to_vec((a - b).abs().max())[0] / scale
    }

    /// The GEMM-over-patches convolution equals burn's in value and in the gradients of
    /// input, weights and bias, with stride, padding and a non-square kernel, with and without
    /// a bias, in float32 and float64.
    #[test]
    fn patch_gemm_convolution_matches_burns_convolution_and_its_gradients() {
        let d = default_device();
        let small = ([5, 3, 11, 9], [4, 3, 3, 2]);
        // 120 samples of 8x12x12 under a 3x3 kernel span several of the kernels' chunks.
        let chunked = ([120, 8, 12, 12], [6, 8, 3, 3]);
        // Output rows of 3 and of 5 elements (the row copies' short paths).
        let narrow = ([3, 2, 5, 4], [2, 2, 2, 2]);
        let cases = [
            (narrow, [1, 1], [0, 0], true),
            (narrow, [1, 1], [1, 1], false),
            (small, [2, 2], [0, 0], true),
            (small, [1, 2], [1, 2], false),
            (small, [3, 1], [2, 0], true),
            (small, [1, 1], [0, 0], true),
            (chunked, [1, 1], [1, 1], true),
        ];
        for ((x_shape, w_shape), stride, padding, with_bias) in cases {
            for dtype in [DType::F32, DType::F64] {
                let x = Tensor::<4>::random(x_shape, Distribution::Normal(0.0, 1.0), &d).cast(dtype);
                let weight = Tensor::<4>::random(w_shape, Distribution::Normal(0.0, 1.0), &d).cast(dtype);
                let bias = Tensor::<1>::random([w_shape[0]], Distribution::Normal(0.0, 1.0), &d).cast(dtype);
                let track = |t: Tensor<4>| t.autodiff().require_grad();
                let (x1, w1, b1) = (track(x.clone()), track(weight.clone()), bias.clone().autodiff().require_grad());
                let layer = Conv2d::new(w1.clone(), b1.clone(), stride, padding);
                let y = match with_bias {
                    true => layer.forward(x1.clone()),
                    false => layer.linear(x1.clone()),
                };
                let options = ConvOptions::new(stride, padding, [1, 1], 1);
                let (x2, w2, b2) = (track(x), track(weight), bias.autodiff().require_grad());
                let reference = ops::conv2d(x2.clone(), w2.clone(), with_bias.then(|| b2.clone()), options);
                assert_eq!(y.dims(), reference.dims());
                let forward_diff = max_diff(y.clone().without_autodiff(), reference.clone().without_autodiff());
                assert!(forward_diff < 1e-5, "{x_shape:?} {stride:?} {dtype:?}: {forward_diff}");
                let g = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &d).cast(dtype);
                let (ga, gb) = ((y * g.clone()).sum().backward(), (reference * g).sum().backward());
                assert!(max_diff(x1.grad(&ga).unwrap(), x2.grad(&gb).unwrap()) < 1e-5);
                assert!(max_diff(w1.grad(&ga).unwrap(), w2.grad(&gb).unwrap()) < 1e-5);
                if with_bias {
                    let (bias_a, bias_b) = (b1.grad(&ga).unwrap(), b2.grad(&gb).unwrap());
                    assert!(max_diff(bias_a, bias_b) < 1e-5);
                } else {
                    assert!(b1.grad(&ga).is_none());
                }
            }
        }
    }

    /// The patch kernels' transposed convolution (back-substitution) equals burn's, including
    /// input rows the stride never reaches, in value and in the gradients of the coefficients
    /// and the weights.
    #[test]
    fn patch_transpose_matches_burns_transposed_convolution_and_its_gradients() {
        let d = default_device();
        // 12x11 input, 3x3 kernel, stride 2: the last input row and column are never read.
        for (input, stride, padding) in [([3, 12, 11], [2, 2], [0, 0]), ([3, 9, 9], [1, 1], [1, 1]), ([3, 10, 10], [3, 2], [1, 0])] {
            let weight = Tensor::<4>::random([5, 3, 3, 3], Distribution::Normal(0.0, 1.0), &d);
            let probe = Conv2d::new(weight.clone(), Tensor::zeros([5], &d), stride, padding);
            let out = probe.output_shape(&input).unwrap();
            let a = Tensor::<4>::random([7, out[0], out[1], out[2]], Distribution::Normal(0.0, 1.0), &d);
            let (a1, w1) = (a.clone().autodiff().require_grad(), weight.clone().autodiff().require_grad());
            let t = Conv2d::new(w1.clone(), Tensor::zeros([5], &d), stride, padding).transpose(a1.clone(), &input);
            assert_eq!(t.dims(), [7, input[0], input[1], input[2]]);
            let extra = [input[1] - ((out[1] - 1) * stride[0] + 3 - 2 * padding[0]), input[2] - ((out[2] - 1) * stride[1] + 3 - 2 * padding[1])];
            let options = ConvTransposeOptions::new(stride, padding, extra, [1, 1], 1);
            let (a2, w2) = (a.autodiff().require_grad(), weight.autodiff().require_grad());
            let reference = ops::conv_transpose2d(a2.clone(), w2.clone(), None, options);
            assert!(max_diff(t.clone().without_autodiff(), reference.clone().without_autodiff()) < 1e-5, "{input:?} {stride:?}");
            let g = Tensor::<4>::random(t.dims(), Distribution::Normal(0.0, 1.0), &d);
            let (ga, gb) = ((t * g.clone()).sum().backward(), (reference * g).sum().backward());
            assert!(max_diff(a1.grad(&ga).unwrap(), a2.grad(&gb).unwrap()) < 1e-5);
            assert!(max_diff(w1.grad(&ga).unwrap(), w2.grad(&gb).unwrap()) < 1e-5);
        }
    }
}
