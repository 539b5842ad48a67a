//! The benchmark models, weights and data of shared/bench/WORKLOADS.md, bit-identical to the
//! PyTorch reference (same SplitMix64 streams, Box-Muller normals, per-layer gains).

use crate::error::Result;
use crate::net::arch;
use crate::net::init::SplitMix64;
use crate::net::{Network, OpSpec};
use crate::tensor::{from_vec, Device, Tensor};

/// A benchmark model: architecture name, input shape, stream base and (gain, bias scale) per
/// affine layer.
pub struct BenchModel {
    pub arch: &'static str,
    pub input: [usize; 3],
    pub stream_base: u64,
    pub gains: &'static [(f64, f64)],
}

pub const DM_SMALL: BenchModel =
    BenchModel { arch: "dm-small", input: [1, 28, 28], stream_base: 100, gains: &[(1.29, 1.0), (0.0376, 1.0), (0.035, 1.0), (1.0, 0.0)] };
pub const DM_LARGE: BenchModel = BenchModel {
    arch: "dm-large",
    input: [3, 32, 32],
    stream_base: 200,
    gains: &[(1.0, 0.0), (0.525, 1.0), (0.0788, 1.0), (0.0572, 1.0), (0.0408, 1.0), (0.0125, 1.0), (1.0, 0.0)],
};
pub const FC5: BenchModel =
    BenchModel { arch: "fc5", input: [1, 28, 28], stream_base: 300, gains: &[(0.109, 1.0), (0.714, 1.0), (1.04, 1.0), (0.409, 1.0), (1.0, 0.0)] };
pub const CONV: BenchModel =
    BenchModel { arch: "conv-small", input: [1, 28, 28], stream_base: 400, gains: &[(1.12, 1.0), (0.0809, 1.0), (1.0, 0.0)] };

fn f32s(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

impl BenchModel {
    /// The network with the reference weights.
    pub fn network(&self, device: &Device) -> Result<Network> {
        let spec = arch::named(self.arch, self.input)?;
        // Affine layers in order, with their fan-in, for the weight streams.
        let affine: Vec<(String, usize)> = spec
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                OpSpec::Linear { in_features, .. } => Some((n.name.clone(), *in_features)),
                OpSpec::Conv2d { in_channels, kernel, .. } => Some((n.name.clone(), in_channels * kernel[0] * kernel[1])),
                _ => None,
            })
            .collect();
        spec.build(device, &mut |name, shape| {
            let (node, local) = name.rsplit_once('.').unwrap_or((name, ""));
            let k = affine.iter().position(|(n, _)| n == node).unwrap_or(0);
            let (gain, bias_scale) = self.gains[k.min(self.gains.len() - 1)];
            let n: usize = shape.iter().product();
            let stream = self.stream_base + 2 * k as u64 + u64::from(local == "bias");
            let z = SplitMix64::new(stream).normals_f64(n);
            Ok(if local == "bias" {
                f32s(z.into_iter().map(|v| bias_scale * v).collect())
            } else {
                let scale = gain * (2.0 / affine[k].1 as f64).sqrt();
                f32s(z.into_iter().map(|v| scale * v).collect())
            })
        })
    }
}

/// Inputs `[N, C, H, W]` uniform in [0, 1) from `stream`, labels floor(10 u) from `stream + 1`.
pub fn inputs(n: usize, shape: [usize; 3], stream: u64, device: &Device) -> (Tensor<4>, Vec<usize>) {
    let per: usize = shape.iter().product();
    let x = SplitMix64::new(stream).uniforms(n * per);
    let mut ly = SplitMix64::new(stream + 1);
    let y = (0..n).map(|_| ly.below(10) as usize).collect();
    (from_vec(x, [n, shape[0], shape[1], shape[2]], device), y)
}
