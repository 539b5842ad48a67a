//! 2-d convolution with stride and zero padding. Back-substitution uses the transposed
//! convolution, so the linear forms over a conv layer's input are never built as dense
//! matrices (DM-large on 3x32x32 stays in bounded memory).

use super::{AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::{ops, Tensor};
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
        ops::conv2d(x, self.weight.clone(), Some(self.bias.clone()), self.options())
    }

    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        ops::conv2d(x, self.weight.clone(), None, self.options())
    }

    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        ops::conv2d(r, self.weight.clone().abs(), None, self.options())
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
        let [_, _, ho, wo] = a.dims();
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
