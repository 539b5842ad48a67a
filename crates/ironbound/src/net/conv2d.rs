//! 2-d convolution with stride and zero padding. Back-substitution uses the transposed
//! convolution, so the linear forms over a conv layer's input are never built as dense
//! matrices (DM-large on 3x32x32 stays in bounded memory).

use super::{AffineLayer, Shape};
use crate::error::{Error, Result};
use crate::tensor::{ops, Int, Tensor, TensorData};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, kh, kw]`, PyTorch layout.
    pub weight: Tensor<4>,
    /// `[out_channels]`.
    pub bias: Tensor<1>,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Conv2d {
    pub fn new(weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Self {
        Conv2d { weight, bias, stride, padding }
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn kernel(&self) -> [usize; 2] {
        let d = self.weight.dims();
        [d[2], d[3]]
    }

    /// `weight * x`, plus `bias` if given. In training, where the weights carry gradients and the
    /// input does not (the first layer, fed the data or an input region's centre and radius),
    /// on the CPU: im2col by one gather and a single GEMM, whose weight gradient is one more
    /// GEMM. burn-flex's convolution computes that gradient as a convolution of the swapped
    /// batch with a dilated output-sized kernel, which on DM-small's first layer (1 channel,
    /// 4x4 stride 2) took 6-7 ms of a 128-row shard against ~1.8 ms this way
    /// (`examples/convprobe.rs`). Everything else keeps burn's convolution: a tracked input
    /// would need im2col's transpose (a scatter-add), which is slower than burn's.
    fn convolve(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let [cout, _, kh, kw] = weight.dims();
        let out = [self.out_size(h, 0), self.out_size(w, 1)];
        let cols = out[0].zip(out[1]).map(|(ho, wo)| n * ho * wo * c * kh * kw);
        let gather = crate::tensor::on_cpu() && weight.is_tracked() && !x.is_tracked() && cols.is_some_and(|e| e <= 1 << 26);
        let (Some(ho), Some(wo), true) = (out[0], out[1], gather) else {
            return ops::conv2d(x, weight, bias, self.options());
        };
        // Column j of a row of `cols` reads input element index[j], or the appended zero
        // (index c*h*w) where the kernel overlaps the padding.
        let zero = c * h * w;
        let (ckk, positions) = (c * kh * kw, ho * wo);
        let mut index = Vec::with_capacity(positions * ckk);
        for oy in 0..ho {
            for ox in 0..wo {
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * self.stride[0] + ky).checked_sub(self.padding[0]).filter(|&i| i < h);
                            let ix = (ox * self.stride[1] + kx).checked_sub(self.padding[1]).filter(|&i| i < w);
                            index.push(iy.zip(ix).map_or(zero, |(iy, ix)| (ci * h + iy) * w + ix) as i64);
                        }
                    }
                }
            }
        }
        let device = x.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [positions * ckk]), &device);
        let zeros = Tensor::zeros([n, 1], (&device, x.dtype()));
        let padded = Tensor::cat(vec![x.reshape([n, zero]), zeros], 1);
        let cols = padded.select(1, index).reshape([n * positions, ckk]);
        let y = cols.matmul(weight.reshape([cout, ckk]).transpose());
        let y = y.reshape([n, positions, cout]).swap_dims(1, 2).reshape([n, cout, ho, wo]);
        match bias {
            Some(b) => y + b.reshape([1, cout, 1, 1]),
            None => y,
        }
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(self.stride, self.padding, [1, 1], 1)
    }

    /// Output size along `dim`, `None` when the kernel does not fit, the stride or kernel is
    /// 0, or the padded size overflows (all reachable from a hostile model file).
    fn out_size(&self, input: usize, dim: usize) -> Option<usize> {
        let padded = self.padding[dim].checked_mul(2)?.checked_add(input)?;
        let (k, s) = (self.kernel()[dim], self.stride[dim]);
        (k > 0 && s > 0 && padded >= k).then(|| (padded - k) / s + 1)
    }
}

impl AffineLayer for Conv2d {
    fn output_shape(&self, input: &Shape) -> Result<Shape> {
        if input[0] != self.in_channels() {
            return Err(Error::input(format!(
                "conv2d layer expects {} input channels, got {}",
                self.in_channels(),
                input[0]
            )));
        }
        match (self.out_size(input[1], 0), self.out_size(input[2], 1)) {
            (Some(h), Some(w)) => Ok([self.out_channels(), h, w]),
            _ => Err(Error::input(format!(
                "conv2d kernel {:?} with stride {:?} and padding {:?} does not fit input {}x{} (kernel and stride must be >= 1)",
                self.kernel(),
                self.stride,
                self.padding,
                input[1],
                input[2]
            ))),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, self.weight.clone(), Some(self.bias.clone()))
    }

    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, self.weight.clone(), None)
    }

    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4> {
        self.convolve(r, self.weight.clone().abs(), None)
    }

    /// Forward: C_in k_h k_w products and the bias; transposed: at most C_out k_h k_w products
    /// (the GEMM's sums, then col2im's overlaps, a summation tree no taller than that).
    fn max_terms(&self, _input: &Shape) -> usize {
        let k = self.kernel();
        self.in_channels().max(self.out_channels()) * k[0] * k[1] + 1
    }

    fn transpose_terms(&self, _input: &Shape) -> usize {
        let k = self.kernel();
        self.out_channels() * k[0] * k[1]
    }

    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4> {
        let [_, _, ho, wo] = a.dims();
        let k = self.kernel();
        // The transposed convolution of an [ho, wo] map covers (ho-1)*s - 2p + k input rows;
        // rows the forward convolution never read (stride remainder) get zero coefficients.
        let covered = |o: usize, d: usize| ((o - 1) * self.stride[d] + k[d]).saturating_sub(2 * self.padding[d]);
        let extra = [input[1].saturating_sub(covered(ho, 0)), input[2].saturating_sub(covered(wo, 1))];
        if extra[0] < self.stride[0] && extra[1] < self.stride[1] {
            let options = ConvTransposeOptions::new(self.stride, self.padding, extra, [1, 1], 1);
            return ops::conv_transpose2d(a, self.weight.clone(), None, options);
        }
        // Large remainders cannot be expressed as output padding: pad explicitly.
        let options = ConvTransposeOptions::new(self.stride, self.padding, [0, 0], [1, 1], 1);
        let t = ops::conv_transpose2d(a, self.weight.clone(), None, options);
        let [r, c, h, w] = t.dims();
        let full = Tensor::zeros([r, c, input[1], input[2]], (&t.device(), t.dtype()));
        full.slice_assign([0..r, 0..c, 0..h, 0..w], t)
    }

    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>> {
        let [rows, c, h, w] = a.dims();
        let per_channel = a.clone().reshape([rows, c, h * w]).sum_dim(2).reshape([rows, c]);
        Some(per_channel.matmul(self.bias.clone().reshape([c, 1])).reshape([rows]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{default_device, to_vec};
    use burn::tensor::Distribution;

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        to_vec((a - b).abs().max())[0]
    }

    /// The im2col path of training (tracked weights, untracked input) equals burn's
    /// convolution in value and in the weight and bias gradients, with stride and padding
    /// (the zero column) and a non-square kernel.
    #[test]
    fn im2col_training_path_matches_burns_convolution_and_its_gradients() {
        let d = default_device();
        for (stride, padding) in [([2, 2], [0, 0]), ([1, 2], [1, 2]), ([3, 1], [2, 0])] {
            let x = Tensor::<4>::random([5, 3, 11, 9], Distribution::Normal(0.0, 1.0), &d);
            let weight = Tensor::<4>::random([4, 3, 3, 2], Distribution::Normal(0.0, 1.0), &d);
            let bias = Tensor::<1>::random([4], Distribution::Normal(0.0, 1.0), &d);
            let (w1, b1) = (weight.clone().autodiff().require_grad(), bias.clone().autodiff().require_grad());
            let layer = Conv2d::new(w1.clone(), b1.clone(), stride, padding);
            let y = layer.forward(x.clone());
            let options = ConvOptions::new(stride, padding, [1, 1], 1);
            let (w2, b2) = (weight.autodiff().require_grad(), bias.autodiff().require_grad());
            let reference = ops::conv2d(x, w2.clone(), Some(b2.clone()), options);
            assert_eq!(y.dims(), reference.dims());
            assert!(max_diff(y.clone().without_autodiff(), reference.clone().without_autodiff()) < 1e-5);
            let g = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &d);
            let (ga, gb) = ((y * g.clone()).sum().backward(), (reference * g).sum().backward());
            assert!(max_diff(w1.grad(&ga).unwrap(), w2.grad(&gb).unwrap()) < 1e-4);
            let (bias_a, bias_b) = (b1.grad(&ga).unwrap(), b2.grad(&gb).unwrap());
            assert!(to_vec((bias_a - bias_b).abs().max())[0] < 1e-4);
        }
    }
}
