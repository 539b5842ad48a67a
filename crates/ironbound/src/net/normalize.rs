//! Input normalisation (x - mean[c]) / std[c], as in torchvision's `Normalize` and the
//! Sub/Div nodes of exported models.

use super::channel_affine::PerChannel;
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
}

impl PerChannel for Normalize {
    const KIND: &'static str = "normalize";
    fn channels(&self) -> usize {
        self.mean.dims()[0]
    }
    fn scale(&self) -> Tensor<1> {
        self.std.clone().recip()
    }
    fn shift(&self) -> Tensor<1> {
        self.mean.clone().neg() / self.std.clone()
    }
}

