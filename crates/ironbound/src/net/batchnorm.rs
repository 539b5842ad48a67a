//! Batch normalisation in inference mode: y = gamma (x - mean) / sqrt(var + eps) + beta,
//! a per-channel affine map. It can be folded into a preceding convolution or linear layer.

use super::{channel_affine as ca, AffineLayer, Shape};
use crate::error::Result;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
    pub eps: f64,
}

impl BatchNorm {
    pub fn scale(&self) -> Tensor<1> {
        self.gamma.clone() / (self.running_var.clone() + self.eps).sqrt()
    }

    pub fn shift(&self) -> Tensor<1> {
        self.beta.clone() - self.running_mean.clone() * self.scale()
    }
}

impl AffineLayer for BatchNorm {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        ca::check_shape(self.gamma.dims()[0], input, "batchnorm")
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        ca::forward(x, &self.scale(), &self.shift())
    }
    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        ca::linear(x, &self.scale())
    }
    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        ca::abs_linear(r, &self.scale())
    }
    fn transpose(&self, a: Tensor<4>, _input: &Shape) -> Tensor<4> {
        ca::linear(a, &self.scale())
    }
    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>> {
        Some(ca::bias_term(a, &self.shift()))
    }
    fn is_elementwise(&self) -> bool {
        true
    }
}
