//! Builders of small random networks and inputs, the sampler, and comparison helpers.

use super::Bounds;
use ironbound::net::arch::{sequential, L};
use ironbound::net::init::SplitMix64;
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec};
use ironbound::tensor::{default_device, from_vec, to_vec, Device, Tensor};

pub fn dev() -> Device {
    default_device()
}

pub fn mlp(seed: u64, widths: &[usize]) -> Network {
    let mut layers = Vec::new();
    for (i, &w) in widths[1..].iter().enumerate() {
        if i > 0 {
            layers.push(L::Relu);
        }
        layers.push(L::Fc(w));
    }
    sequential([widths[0], 1, 1], &layers).init(seed, &dev()).expect("mlp")
}

/// conv 3x3/2 pad 1, conv 2x2/1, two dense layers; 2x5x5 inputs (no stride remainder).
pub fn convnet(seed: u64) -> Network {
    use L::*;
    sequential([2, 5, 5], &[Conv(3, 3, 2, 1), Relu, Conv(4, 2, 1, 0), Relu, Flatten, Fc(6), Relu, Fc(3)]).init(seed, &dev()).expect("convnet")
}

/// conv 3x3/2 pad 1 on 1x4x4 inputs: the stride leaves one input row/column uncovered.
pub fn convnet_remainder(seed: u64) -> Network {
    use L::*;
    sequential([1, 4, 4], &[Conv(3, 3, 2, 1), Relu, Flatten, Fc(5), Relu, Fc(3)]).init(seed, &dev()).expect("convnet")
}

/// A Normalize layer in front of a small convnet (2 channels, 3x3 inputs).
pub fn normalized_convnet(seed: u64) -> Network {
    use L::*;
    let base = sequential([2, 3, 3], &[Conv(3, 2, 1, 1), Relu, Flatten, Fc(6), Relu, Fc(4)]);
    let mut nodes = vec![NodeSpec { name: "norm".into(), op: OpSpec::Normalize { mean: vec![0.4, -0.3], std: vec![0.5, 2.0] }, inputs: vec![0] }];
    for mut n in base.nodes {
        n.inputs = n.inputs.iter().map(|v| v + 1).collect();
        nodes.push(n);
    }
    NetSpec { input_shape: base.input_shape, nodes }.init(seed, &dev()).expect("normalized convnet")
}

/// Rectangular kernels, unequal strides and paddings, and a stride remainder in the second
/// convolution: conv [3,2]/(2,1) pad (1,0), conv [2,2]/(2,2) pad (0,1), dense; 2x5x4 inputs.
pub fn rect_convnet(seed: u64) -> Network {
    let conv = |i, o, kernel, stride, padding| OpSpec::Conv2d { in_channels: i, out_channels: o, kernel, stride, padding };
    let ops = [conv(2, 3, [3, 2], [2, 1], [1, 0]), OpSpec::Relu, conv(3, 4, [2, 2], [2, 2], [0, 1]), OpSpec::Relu, OpSpec::Flatten, OpSpec::Linear { in_features: 8, out_features: 3 }];
    let nodes = ops.into_iter().enumerate().map(|(i, op)| NodeSpec { name: i.to_string(), op, inputs: vec![i] }).collect();
    NetSpec { input_shape: [2, 5, 4], nodes }.init(seed, &dev()).expect("rect convnet")
}

/// Affine layers without a ReLU between them (dense-dense and conv-conv).
pub fn stacked_affine(seed: u64, conv: bool) -> Network {
    use L::*;
    let spec = match conv {
        false => sequential([6, 1, 1], &[Fc(8), Fc(8), Relu, Fc(8), Relu, Fc(3)]),
        true => sequential([1, 5, 5], &[Conv(2, 3, 1, 0), Conv(3, 2, 2, 1), Relu, Flatten, Fc(3)]),
    };
    spec.init(seed, &dev()).expect("stacked affine")
}

/// `n` uniform inputs in [lo, hi) for the network, `[N, C, H, W]` (plus the flat values).
pub fn random_inputs(net: &Network, n: usize, seed: u64, lo: f64, hi: f64) -> (Tensor<4>, Vec<f32>) {
    let [c, h, w] = net.input_shape();
    let mut rng = SplitMix64::new(seed);
    let v: Vec<f32> = (0..n * c * h * w).map(|_| (lo + (hi - lo) * rng.uniform()) as f32).collect();
    (from_vec(v.clone(), [n, c, h, w], &dev()), v)
}

/// The input box of sample `i` as f64 vectors, computed independently of `input_region`.
pub fn box_of(x: &[f32], f: usize, i: usize, eps: f64, clip: Option<(f64, f64)>) -> Bounds {
    let clamp = |v: f64| clip.map_or(v, |(a, b)| v.clamp(a, b));
    let xs = &x[i * f..(i + 1) * f];
    (xs.iter().map(|&v| clamp(v as f64 - eps)).collect(), xs.iter().map(|&v| clamp(v as f64 + eps)).collect())
}

/// `m` points of the box [lo, hi]: every corner when there are at most 256 of them, then half
/// random corners and half uniform points.
pub fn sample_box(lo: &[f32], hi: &[f32], m: usize, rng: &mut SplitMix64) -> Vec<Vec<f32>> {
    let f = lo.len();
    let mut pts = Vec::with_capacity(m);
    if f <= 8 {
        for mask in 0..(1usize << f) {
            pts.push((0..f).map(|j| if mask >> j & 1 == 1 { hi[j] } else { lo[j] }).collect());
        }
    }
    while pts.len() < m {
        let corner = pts.len() % 2 == 0;
        pts.push(
            (0..f)
                .map(|j| {
                    let u = rng.uniform();
                    if corner {
                        if u < 0.5 { lo[j] } else { hi[j] }
                    } else {
                        (lo[j] as f64 + (hi[j] - lo[j]) as f64 * u) as f32
                    }
                })
                .collect(),
        );
    }
    pts
}

/// Logits `[M][K]` of the points, through `Network::forward`.
pub fn forward_points(net: &Network, pts: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let [c, h, w] = net.input_shape();
    let m = pts.len();
    let flat: Vec<f32> = pts.iter().flatten().copied().collect();
    let out = to_vec(net.forward(from_vec(flat, [m, c, h, w], &dev())));
    let k = net.num_outputs();
    out.chunks(k).map(|r| r.to_vec()).collect()
}

/// A `[N, K]` tensor as rows.
pub fn rows2(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, k] = t.dims();
    to_vec(t).chunks(k.max(1)).map(|r| r.to_vec()).collect()
}

/// |a - b| <= tol * (1 + |b|).
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

pub fn assert_close_rows(what: &str, got: &[Vec<f32>], want: &[Vec<f64>], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: batch size");
    for (n, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row length of sample {n}");
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(close(*a as f64, *b, tol), "{what}: sample {n} entry {k}: engine {a} vs reference {b}\nengine    {g:?}\nreference {w:?}");
        }
    }
}

/// input -> hidden -> ReLU -> out with the given weights (row-major) and biases.
pub fn net_from(input: usize, hidden: usize, out: usize, w1: &[f32], b1: &[f32], w2: &[f32], b2: &[f32]) -> Network {
    let spec = NetSpec {
        input_shape: [input, 1, 1],
        nodes: vec![
            NodeSpec { name: "0".into(), op: OpSpec::Linear { in_features: input, out_features: hidden }, inputs: vec![0] },
            NodeSpec { name: "1".into(), op: OpSpec::Relu, inputs: vec![1] },
            NodeSpec { name: "2".into(), op: OpSpec::Linear { in_features: hidden, out_features: out }, inputs: vec![2] },
        ],
    };
    spec.build(&dev(), &mut |name, _| {
        Ok(match name {
            "0.weight" => w1.to_vec(),
            "0.bias" => b1.to_vec(),
            "2.weight" => w2.to_vec(),
            "2.bias" => b2.to_vec(),
            other => panic!("unexpected parameter {other}"),
        })
    })
    .unwrap()
}
