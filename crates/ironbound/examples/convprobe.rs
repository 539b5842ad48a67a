//! Times one training pass (forward, backward, weight gradient) of DM-small's first layer
//! (1 channel, 16 filters 4x4 stride 2, a 128-row shard) two ways: burn's convolution, and the
//! `Conv2d` layer, whose training path for an untracked input is im2col + GEMM (see
//! `Conv2d::convolve`). `cargo run --release --example convprobe -p ironbound [ROWS]`;
//! `RAYON_NUM_THREADS=1` for one thread.

use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;
use ironbound::net::{AffineLayer, Conv2d};
use ironbound::tensor::{default_device, ops, to_vec, Tensor};
use std::time::Instant;

/// Median wall time of 15 runs after one warm-up, in ms.
fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let d = default_device();
    let rows: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let x = Tensor::<4>::random([rows, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &d);
    let weight = Tensor::<4>::random([16, 1, 4, 4], Distribution::Normal(0.0, 0.3), &d);
    let bias = Tensor::<1>::zeros([16], &d);
    let g = Tensor::<4>::random([rows, 16, 13, 13], Distribution::Normal(0.0, 1.0), &d);
    let burn_ms = median_ms(|| {
        let w = weight.clone().autodiff().require_grad();
        let y = ops::conv2d(x.clone(), w.clone(), Some(bias.clone()), ConvOptions::new([2, 2], [0, 0], [1, 1], 1));
        let _ = to_vec(w.grad(&(y * g.clone()).sum().backward()).unwrap().sum());
    });
    let layer_ms = median_ms(|| {
        let w = weight.clone().autodiff().require_grad();
        let y = Conv2d::new(w.clone(), bias.clone(), [2, 2], [0, 0]).forward(x.clone());
        let _ = to_vec(w.grad(&(y * g.clone()).sum().backward()).unwrap().sum());
    });
    println!("first-layer training pass, {rows} rows: burn conv2d {burn_ms:.2} ms, Conv2d (im2col + GEMM) {layer_ms:.2} ms");
}
