//! Input normalisation (x - mean[c]) / std[c], as in torchvision's `Normalize` and the
//! Sub/Div nodes of exported models.

use super::{channel_affine as ca, AffineLayer, Shape};
use crate::error::Result;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Normalize {
    pub mean: Tensor<1>,
    pub std: Tensor<1>,
}

impl Normalize {
    pub fn new(mean: Tensor<1>, std: Tensor<1>) -> Self {
        Normalize { mean, std }
    }

    fn scale(&self) -> Tensor<1> {
        self.std.clone().recip()
    }

    fn shift(&self) -> Tensor<1> {
        self.mean.clone().neg() / self.std.clone()
    }
}

impl AffineLayer for Normalize {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        ca::check_shape(self.mean.dims()[0], input, "normalize")
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
