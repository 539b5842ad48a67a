//! Times one training pass (forward, backward, input and weight gradients) of DM-small's two
//! convolutions on a shard of ROWS rows, two ways: burn's convolution, and the `Conv2d` layer
//! (im2col/col2im + GEMM per L2-sized chunk of samples, `tensor/patches.rs`); also the three
//! GEMMs of the second layer alone through burn's matmul, one small product per sample against
//! one large product over all rows (why the kernels multiply whole chunks). `cargo run --release --example convprobe -p ironbound [ROWS]`;
//! `RAYON_NUM_THREADS=1` for one thread, `MIMALLOC_PURGE_DELAY=-1` as the `ironbound` binary sets it.

use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;
use ironbound::net::{AffineLayer, Conv2d};
use ironbound::tensor::{default_device, ops, to_vec, Tensor};
use std::time::Instant;

// The allocator of the `ironbound` binary: with the system one, every large tensor is a
// fresh mapping the kernel zero-fills, which dominates these timings.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// One layer: input `[rows, c, h, w]`, weight `[cout, c, k, k]`, `stride`; the input is tracked
/// when `input_grad`.
fn layer(rows: usize, c: usize, h: usize, cout: usize, k: usize, stride: usize, input_grad: bool) {
    let d = default_device();
    let x = Tensor::<4>::random([rows, c, h, h], Distribution::Uniform(0.0, 1.0), &d);
    let weight = Tensor::<4>::random([cout, c, k, k], Distribution::Normal(0.0, 0.3), &d);
    let bias = Tensor::<1>::zeros([cout], &d);
    let out = (h - k) / stride + 1;
    let g = Tensor::<4>::random([rows, cout, out, out], Distribution::Normal(0.0, 1.0), &d);
    let pass = |conv: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>| {
        let w = weight.clone().autodiff().require_grad();
        let x = match input_grad {
            true => x.clone().autodiff().require_grad(),
            false => x.clone(),
        };
        let grads = (conv(x.clone(), w.clone()) * g.clone()).sum().backward();
        let _ = to_vec(w.grad(&grads).unwrap().sum());
        if input_grad {
            let _ = to_vec(x.grad(&grads).unwrap().sum());
        }
    };
    let options = ConvOptions::new([stride, stride], [0, 0], [1, 1], 1);
    let burn_ms = median_ms(|| pass(&|x, w| ops::conv2d(x, w, Some(bias.clone()), options.clone())));
    let layer_ms = median_ms(|| pass(&|x, w| Conv2d::new(w, bias.clone(), [stride, stride], [0, 0]).forward(x)));
    println!("{c}->{cout} {k}x{k}/{stride} on {h}x{h}, {rows} rows: burn conv2d {burn_ms:.2} ms, Conv2d {layer_ms:.2} ms");
}

/// The second layer's three GEMMs (forward, weight and patch gradients): per sample against
/// one product over all rows (K = c k k + 1 patch rows, P positions).
fn gemms(rows: usize, cout: usize, kk: usize, p: usize) {
    let d = default_device();
    let w = Tensor::<3>::random([1, cout, kk], Distribution::Normal(0.0, 1.0), &d);
    let cols = Tensor::<3>::random([rows, kk, p], Distribution::Normal(0.0, 1.0), &d);
    let gy = Tensor::<3>::random([rows, cout, p], Distribution::Normal(0.0, 1.0), &d);
    let batched = median_ms(|| {
        let _ = w.clone().matmul(cols.clone());
        let _ = gy.clone().matmul(cols.clone().swap_dims(1, 2)).sum_dim(0);
        let _ = w.clone().swap_dims(1, 2).matmul(gy.clone());
    });
    let w2 = Tensor::<2>::random([kk, cout], Distribution::Normal(0.0, 1.0), &d);
    let cols2 = Tensor::<2>::random([rows * p, kk], Distribution::Normal(0.0, 1.0), &d);
    let gy2 = Tensor::<2>::random([rows * p, cout], Distribution::Normal(0.0, 1.0), &d);
    let large = median_ms(|| {
        let _ = cols2.clone().matmul(w2.clone());
        let _ = cols2.clone().transpose().matmul(gy2.clone());
        let _ = gy2.clone().matmul(w2.clone().transpose());
    });
    let gflop = 3.0 * 2.0 * (rows * cout * kk * p) as f64 / 1e9;
    println!(
        "second-layer GEMMs ({gflop:.2} GFLOP): per sample {batched:.2} ms ({:.0} GFLOP/s), all rows at once {large:.2} ms ({:.0} GFLOP/s)",
        gflop / batched * 1e3,
        gflop / large * 1e3
    );
}

fn main() {
    let rows: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    layer(rows, 1, 28, 16, 4, 2, false);
    layer(rows, 16, 13, 32, 4, 1, true);
    gemms(rows, 32, 257, 100);
}
