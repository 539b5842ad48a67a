//! Fully connected layer y = W x + b on the flattened input (row-major over C, H, W, as
//! PyTorch's `flatten` followed by `nn.Linear`).

use super::{numel, AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`, PyTorch layout.
    pub weight: Tensor<2>,
    /// `[out]`.
    pub bias: Tensor<1>,
}

impl Linear {
    pub fn new(weight: Tensor<2>, bias: Tensor<1>) -> Self {
        Linear { weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    fn matmul(&self, x: Tensor<4>, weight: Tensor<2>) -> Tensor<4> {
        let rows = x.dims()[0];
        let out = self.out_features();
        x.reshape([rows, self.in_features()]).matmul(weight.transpose()).reshape([rows, out, 1, 1])
    }
}

impl AffineLayer for Linear {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if numel(input) != self.in_features() {
            return Err(Error::input(format!(
                "linear layer expects {} input features, got {} ({}x{}x{})",
                self.in_features(),
                numel(input),
                input[0],
                input[1],
                input[2]
            )));
        }
        Ok([self.out_features(), 1, 1])
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.out_features();
        self.linear(x) + self.bias.clone().reshape([1, out, 1, 1])
    }

    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        self.matmul(x, self.weight.clone())
    }

    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        self.matmul(r, self.weight.clone().abs())
    }

    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4> {
        let rows = a.dims()[0];
        a.reshape([rows, self.out_features()])
            .matmul(self.weight.clone())
            .reshape([rows, input[0], input[1], input[2]])
    }

    fn max_terms(&self, _input: &Shape) -> usize {
        self.in_features().max(self.out_features()) + 1
    }

    fn transpose_terms(&self, _input: &Shape) -> usize {
        self.out_features()
    }

    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>> {
        let rows = a.dims()[0];
        let out = self.out_features();
        Some(a.clone().reshape([rows, out]).matmul(self.bias.clone().reshape([out, 1])).reshape([rows]))
    }
}
