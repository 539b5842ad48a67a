//! Batch normalisation in inference mode: y = gamma (x - mean) / sqrt(var + eps) + beta,
//! a per-channel affine map. It can be folded into a preceding convolution or linear layer.

use super::channel_affine::PerChannel;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
    pub eps: f64,
}

impl PerChannel for BatchNorm {
    const KIND: &'static str = "batchnorm";
    fn channels(&self) -> usize {
        self.gamma.dims()[0]
    }
    fn scale(&self) -> Tensor<1> {
        self.gamma.clone() / (self.running_var.clone() + self.eps).sqrt()
    }
    fn shift(&self) -> Tensor<1> {
        self.beta.clone() - self.running_mean.clone() * self.scale()
    }
}

