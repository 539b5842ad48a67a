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


/// Per-channel normalisation constants for `channels` input channels: one value serves every
/// channel; every value must be finite and every std > 0. `origin` names them in errors.
pub fn per_channel(mean: &[f32], std: &[f32], channels: usize, origin: &str) -> Result<(Vec<f32>, Vec<f32>), String> {
    let widen = |v: &[f32]| if v.len() == 1 { vec![v[0]; channels] } else { v.to_vec() };
    let (m, s) = (widen(mean), widen(std));
    if m.len() != channels || s.len() != channels {
        return Err(format!("{origin} has {} mean and {} std values but the input has {channels} channel(s)", mean.len(), std.len()));
    }
    if m.iter().any(|v| !v.is_finite()) || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(format!("{origin} needs finite means and std values > 0"));
    }
    Ok((m, s))
}
