//! Per-channel affine map y = scale[c] * x + shift[c]: the arithmetic shared by `Normalize`
//! and inference-mode `BatchNorm`, which differ only in how they are parametrised.

use super::{AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A layer that is a per-channel affine map; it gets every `AffineLayer` rule from here.
pub trait PerChannel {
    /// Name used in shape errors.
    const KIND: &'static str;
    fn channels(&self) -> usize;
    fn scale(&self) -> Tensor<1>;
    fn shift(&self) -> Tensor<1>;
}

impl<T: PerChannel> AffineLayer for T {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        check_shape(self.channels(), input, T::KIND)
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        forward(x, &self.scale(), &self.shift())
    }
    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        linear(x, &self.scale())
    }
    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        abs_linear(r, &self.scale())
    }
    fn transpose(&self, a: Tensor<4>, _input: &Shape) -> Tensor<4> {
        linear(a, &self.scale())
    }
    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>> {
        Some(bias_term(a, &self.shift()))
    }
    fn is_elementwise(&self) -> bool {
        true
    }
    /// One product, plus the few roundings that derive the scale from the parameters
    /// (batch norm: gamma / sqrt(var + eps), three).
    fn max_terms(&self, _input: &Shape) -> usize {
        8
    }
}

fn check_shape(channels: usize, input: &Shape, what: &str) -> Result<Shape> {
    if input[0] != channels {
        return Err(Error::input(format!("{what} has {channels} channels, input has {}", input[0])));
    }
    Ok(*input)
}

fn per_channel(v: &Tensor<1>) -> Tensor<4> {
    let c = v.dims()[0];
    v.clone().reshape([1, c, 1, 1])
}

fn forward(x: Tensor<4>, scale: &Tensor<1>, shift: &Tensor<1>) -> Tensor<4> {
    x * per_channel(scale) + per_channel(shift)
}

fn linear(x: Tensor<4>, scale: &Tensor<1>) -> Tensor<4> {
    x * per_channel(scale)
}

fn abs_linear(r: Tensor<4>, scale: &Tensor<1>) -> Tensor<4> {
    r * per_channel(scale).abs()
}

fn bias_term(a: &Tensor<4>, shift: &Tensor<1>) -> Tensor<1> {
    let [rows, c, h, w] = a.dims();
    let per_channel = a.clone().reshape([rows, c, h * w]).sum_dim(2).reshape([rows, c]);
    per_channel.matmul(shift.clone().reshape([c, 1])).reshape([rows])
}
