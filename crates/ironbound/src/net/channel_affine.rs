//! Per-channel affine map y = scale[c] * x + shift[c]: the arithmetic shared by `Normalize`
//! and inference-mode `BatchNorm`, which differ only in how they are parametrised.

use super::Shape;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(crate) fn check_shape(channels: usize, input: &Shape, what: &str) -> Result<Shape> {
    if input[0] != channels {
        return Err(Error::input(format!("{what} has {channels} channels, input has {}", input[0])));
    }
    Ok(*input)
}

fn per_channel(v: &Tensor<1>) -> Tensor<4> {
    let c = v.dims()[0];
    v.clone().reshape([1, c, 1, 1])
}

pub(crate) fn forward(x: Tensor<4>, scale: &Tensor<1>, shift: &Tensor<1>) -> Tensor<4> {
    x * per_channel(scale) + per_channel(shift)
}

pub(crate) fn linear(x: Tensor<4>, scale: &Tensor<1>) -> Tensor<4> {
    x * per_channel(scale)
}

pub(crate) fn abs_linear(r: Tensor<4>, scale: &Tensor<1>) -> Tensor<4> {
    r * per_channel(scale).abs()
}

pub(crate) fn bias_term(a: &Tensor<4>, shift: &Tensor<1>) -> Tensor<1> {
    let [rows, c, h, w] = a.dims();
    let per_channel = a.clone().reshape([rows, c, h * w]).sum_dim(2).reshape([rows, c]);
    per_channel.matmul(shift.clone().reshape([c, 1])).reshape([rows])
}
