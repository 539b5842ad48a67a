//! Flatten `[C, H, W]` to `[C*H*W, 1, 1]`, row-major like PyTorch.

use super::{numel, AffineLayer, Shape};
use crate::error::Result;
use crate::tensor::Tensor;

#[derive(Clone, Debug, Default)]
pub struct Flatten;

impl AffineLayer for Flatten {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        Ok([numel(input), 1, 1])
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.linear(x)
    }
    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        let [r, c, h, w] = x.dims();
        x.reshape([r, c * h * w, 1, 1])
    }
    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        self.linear(r)
    }
    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4> {
        let rows = a.dims()[0];
        a.reshape([rows, input[0], input[1], input[2]])
    }
    fn bias_term(&self, _a: &Tensor<4>) -> Option<Tensor<1>> {
        None
    }
    fn is_elementwise(&self) -> bool {
        true
    }
    /// A reshape: nothing is rounded.
    fn max_terms(&self, _input: &Shape) -> usize {
        1
    }
}
