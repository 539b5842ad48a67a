//! Average pooling (zero padding counted, PyTorch's default `count_include_pad=True`),
//! expressed as a depthwise convolution with weights 1/(kh*kw) so that its transpose is the
//! transposed depthwise convolution.

use super::{AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::{ops, Tensor};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

#[derive(Clone, Debug)]
pub struct AvgPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl AvgPool2d {
    fn weight(&self, channels: usize, like: &Tensor<4>) -> Tensor<4> {
        let [kh, kw] = self.kernel;
        Tensor::ones([channels, 1, kh, kw], (&like.device(), like.dtype())) / ((kh * kw) as f64)
    }

    fn pool(&self, x: Tensor<4>) -> Tensor<4> {
        let c = x.dims()[1];
        let w = self.weight(c, &x);
        ops::conv2d(x, w, None, ConvOptions::new(self.stride, self.padding, [1, 1], c))
    }
}

impl AffineLayer for AvgPool2d {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        // Checked: kernel, stride and padding come from model files.
        let out = |d: usize| {
            let padded = self.padding[d].checked_mul(2)?.checked_add(input[d + 1])?;
            let (k, s) = (self.kernel[d], self.stride[d]);
            (k > 0 && s > 0 && padded >= k).then(|| (padded - k) / s + 1)
        };
        match (out(0), out(1)) {
            (Some(h), Some(w)) => Ok([input[0], h, w]),
            _ => Err(Error::input(format!(
                "avgpool kernel {:?} with stride {:?} and padding {:?} does not fit input {:?} (kernel and stride must be >= 1)",
                self.kernel, self.stride, self.padding, input
            ))),
        }
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool(x)
    }
    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool(x)
    }
    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        self.pool(r)
    }
    /// k_h k_w products, plus the rounding of the weight 1 / (k_h k_w) itself.
    fn max_terms(&self, _input: &Shape) -> usize {
        self.kernel[0] * self.kernel[1] + 2
    }
    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4> {
        let [_, c, ho, wo] = a.dims();
        let covered = |o: usize, d: usize| ((o - 1) * self.stride[d] + self.kernel[d]).saturating_sub(2 * self.padding[d]);
        let extra = [input[1].saturating_sub(covered(ho, 0)), input[2].saturating_sub(covered(wo, 1))];
        let w = self.weight(c, &a);
        let t = ops::conv_transpose2d(a, w, None, ConvTransposeOptions::new(self.stride, self.padding, [0, 0], [1, 1], c));
        if extra == [0, 0] {
            return t;
        }
        let [r, c, h, w] = t.dims();
        Tensor::zeros([r, c, input[1], input[2]], (&t.device(), t.dtype())).slice_assign([0..r, 0..c, 0..h, 0..w], t)
    }
    fn bias_term(&self, _a: &Tensor<4>) -> Option<Tensor<1>> {
        None
    }
}
