//! Float-sound bounds (`bounds/sound.rs`) against the real-valued network: on networks built to
//! make float32 rounding matter, plain float32 bounds miss the network's real extremes and the
//! float-sound ones never do; on ordinary networks the two are nearly equal.
//!
//! The reference is the network evaluated in f64 (`Stages::forward`, whose affine maps are the
//! float32 weights materialised exactly): its rounding error is ~1e-16 relative, nine orders
//! below the float32 errors the tests are about, and the tests allow for it explicitly.

use ironbound::bounds::{input_region, output_bounds, output_bounds_with_labels, sound, Interval, Method, Relaxation};
use ironbound::net::init::SplitMix64;
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec, Param};
use ironbound::tensor::{default_device, from_vec, to_vec};
use ironbound::verify::lp::stages;

/// Every relaxation of the engines.
const METHODS: [Method; 10] = Method::ALL;

fn node(name: &str, op: OpSpec, input: usize) -> NodeSpec {
    NodeSpec { name: name.into(), op, inputs: vec![input] }
}

/// A fully connected ReLU net `d -> h -> h -> k`, seeded.
fn fc(d: usize, h: usize, k: usize, seed: u64) -> Network {
    let fc = |i, o| OpSpec::Linear { in_features: i, out_features: o };
    let nodes = vec![
        node("fc1", fc(d, h), 0),
        node("relu1", OpSpec::Relu, 1),
        node("fc2", fc(h, h), 2),
        node("relu2", OpSpec::Relu, 3),
        node("fc3", fc(h, k), 4),
    ];
    NetSpec { input_shape: [d, 1, 1], nodes }.init(seed, &default_device()).expect("fc net")
}

/// A small convolutional net on 1x8x8 inputs.
fn conv(seed: u64) -> Network {
    let nodes = vec![
        node("conv1", OpSpec::Conv2d { in_channels: 1, out_channels: 4, kernel: [3, 3], stride: [1, 1], padding: [1, 1] }, 0),
        node("relu1", OpSpec::Relu, 1),
        node("conv2", OpSpec::Conv2d { in_channels: 4, out_channels: 4, kernel: [4, 4], stride: [2, 2], padding: [0, 0] }, 2),
        node("relu2", OpSpec::Relu, 3),
        node("flatten", OpSpec::Flatten, 4),
        node("fc", OpSpec::Linear { in_features: 36, out_features: 3 }, 5),
    ];
    NetSpec { input_shape: [1, 8, 8], nodes }.init(seed, &default_device()).expect("conv net")
}

/// The real network's outputs at points of the region `x0 +- eps` (exact decimal eps, in f64):
/// per output, the two corners its central differences point to (the exact minimum and
/// maximum where the network is linear on the region), then random corners and interior
/// points. Returns per sample and output the smallest and largest value seen.
fn sampled_extremes(net: &Network, x0: &[f32], n: usize, eps: f64, points: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let st = stages::extract(net).expect("stages");
    let d = x0.len() / n;
    let k = net.num_outputs();
    let mut rng = SplitMix64::new(seed);
    let (mut lo, mut hi) = (vec![f64::INFINITY; n * k], vec![f64::NEG_INFINITY; n * k]);
    for i in 0..n {
        let centre: Vec<f64> = x0[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect();
        let mut seen = |x: &[f64]| {
            for (o, y) in st.forward(x).into_iter().enumerate() {
                lo[i * k + o] = lo[i * k + o].min(y);
                hi[i * k + o] = hi[i * k + o].max(y);
            }
        };
        // slope[j][o]: the sign of output o's central difference along input j.
        let slope: Vec<Vec<f64>> = (0..d)
            .map(|j| {
                let at = |t: f64| {
                    let mut x = centre.clone();
                    x[j] += t * eps;
                    st.forward(&x)
                };
                at(1.0).iter().zip(at(-1.0)).map(|(a, b)| (a - b).signum()).collect()
            })
            .collect();
        for o in 0..k {
            for dir in [-1.0, 1.0] {
                let x: Vec<f64> = (0..d).map(|j| centre[j] + dir * slope[j][o] * eps).collect();
                seen(&x);
            }
        }
        for p in 0..points {
            let x: Vec<f64> = (0..d)
                .map(|j| {
                    let t = if p % 2 == 0 { if rng.uniform() < 0.5 { -1.0 } else { 1.0 } } else { 2.0 * rng.uniform() - 1.0 };
                    centre[j] + t * eps
                })
                .collect();
            seen(&x);
        }
    }
    (lo, hi)
}

/// Bounds `[n, k]` of `method` on the region, float-sound or not (sound mode on the outward-
/// rounded region, as `certify` does).
fn bounds(net: &Network, x: &[f32], n: usize, eps: f64, method: Method, sound_mode: bool) -> (Vec<f32>, Vec<f32>) {
    let device = default_device();
    let s = net.input_shape();
    let xt = from_vec(x.to_vec(), [n, s[0], s[1], s[2]], &device);
    let region: Interval = if sound_mode { sound::input_region(&xt, eps, None) } else { input_region(&xt, eps, None) };
    let relaxation: Relaxation = method.relaxation().with_sound(sound_mode);
    let (lo, hi) = if method.needs_labels() {
        output_bounds_with_labels(net, &region, &relaxation, &vec![0; n]).expect("bounds")
    } else {
        output_bounds(net, &region, &relaxation).expect("bounds")
    };
    (to_vec(lo), to_vec(hi))
}

/// The same function computed through large values: the `first` layer's biases shifted up by
/// 4096 (every neuron of the ReLU after it becomes active) and the `second` layer's biases
/// shifted down by what that adds. Float32 rounds the first layer's outputs to ~5e-4, as much as their
/// variation over the region, so plain float32 bounds of such a network are wrong.
fn shifted(net: &Network, first: &str, second: &str) -> Network {
    const SHIFT: f32 = 4096.0;
    let params = net.named_params();
    let w2 = params.iter().find(|(k, _)| k == &format!("{second}.weight")).map(|(_, p)| p.clone()).expect("second weight");
    // Per output unit of the second layer: the sum of its weights (over every input and, for a
    // convolution without padding, every kernel position: each output sees the full kernel).
    let sums: Vec<f32> = match w2 {
        Param::D2(w) => {
            let [o, i] = w.dims();
            let v = to_vec(w);
            (0..o).map(|r| v[r * i..(r + 1) * i].iter().sum()).collect()
        }
        Param::D4(w) => {
            let [o, i, kh, kw] = w.dims();
            let v = to_vec(w);
            let per = i * kh * kw;
            (0..o).map(|r| v[r * per..(r + 1) * per].iter().sum()).collect()
        }
        Param::D1(_) => unreachable!("weights are 2-d or 4-d"),
    };
    let device = default_device();
    // map_params names a parameter within its layer only; it visits them in named_params' order.
    let at = |key: String| params.iter().position(|(k, _)| *k == key).expect("bias");
    let (first, second) = (at(format!("{first}.bias")), at(format!("{second}.bias")));
    let mut index = 0;
    net.map_params(&mut |_, p| {
        index += 1;
        match p {
            Param::D1(b) if index - 1 == first => Param::D1(b + SHIFT as f64),
            Param::D1(b) if index - 1 == second => Param::D1(b - from_vec(sums.iter().map(|s| s * SHIFT).collect(), [sums.len()], &device)),
            p => p,
        }
    })
}

/// Inputs on the grid of 1/256 in [0, 1]: with a radius of 1/128 the region's ends are exact in
/// float32, so what goes wrong is the network's arithmetic, not the region.
fn grid_inputs(n: usize, d: usize, seed: u64) -> Vec<f32> {
    SplitMix64::new(seed).uniforms(n * d).into_iter().map(|u| (u * 256.0).floor() / 256.0).collect()
}

/// The f64 reference's own error allowance: far below float32's rounding.
fn slack(v: f64) -> f64 {
    1e-9 * (1.0 + v.abs())
}

#[test]
fn sound_bounds_hold_where_float32_bounds_miss_the_real_network() {
    let (n, eps) = (4, 1.0 / 128.0);
    let mut fast_misses = 0usize;
    for seed in 0..3u64 {
        // Both hidden layers shifted: every ReLU is active, the network is affine on the region,
        // so CROWN's and DeepZ's bounds are exact in real arithmetic and the corners of the
        // central differences are the real extremes: only rounding separates them.
        let fc_net = shifted(&shifted(&fc(16, 24, 5, seed), "fc1", "fc2"), "fc2", "fc3");
        let conv_net = shifted(&shifted(&conv(seed), "conv1", "conv2"), "conv2", "fc");
        for (name, net) in [("fc", fc_net), ("conv", conv_net)] {
            let d: usize = net.input_shape().iter().product();
            let x = grid_inputs(n, d, 100 + seed);
            let (real_lo, real_hi) = sampled_extremes(&net, &x, n, eps, 64, seed);
            for method in METHODS {
                let (lo, hi) = bounds(&net, &x, n, eps, method, true);
                for i in 0..lo.len() {
                    assert!(
                        lo[i] as f64 <= real_lo[i] + slack(real_lo[i]) && hi[i] as f64 >= real_hi[i] - slack(real_hi[i]),
                        "{name} seed {seed} {method} entry {i}: sound [{}, {}] misses real values [{}, {}]",
                        lo[i],
                        hi[i],
                        real_lo[i],
                        real_hi[i]
                    );
                }
                let (flo, fhi) = bounds(&net, &x, n, eps, method, false);
                fast_misses += (0..flo.len()).filter(|&i| flo[i] as f64 > real_lo[i] + slack(real_lo[i]) || (fhi[i] as f64) < real_hi[i] - slack(real_hi[i])).count();
            }
        }
    }
    // The networks do what they are built for: plain float32 bounds are wrong on them.
    assert!(fast_misses > 0, "no float32 bound missed the real network: the test networks are not adversarial");
}

#[test]
fn sound_bounds_are_nearly_the_float32_ones_on_ordinary_inputs() {
    let (n, eps) = (3, 0.02);
    let net = fc(32, 40, 6, 7);
    let x: Vec<f32> = SplitMix64::new(5).uniforms(n * 32);
    let (real_lo, real_hi) = sampled_extremes(&net, &x, n, eps, 200, 3);
    for method in METHODS {
        let (lo, hi) = bounds(&net, &x, n, eps, method, true);
        let (flo, fhi) = bounds(&net, &x, n, eps, method, false);
        for i in 0..lo.len() {
            assert!(lo[i] as f64 <= real_lo[i] + slack(real_lo[i]) && hi[i] as f64 >= real_hi[i] - slack(real_hi[i]), "{method} entry {i}");
            // Looser, by little: worst-case rounding bounds of sums of up to 40 products.
            let scale = 1.0 + flo[i].abs().max(fhi[i].abs());
            assert!(lo[i] <= flo[i] + 1e-6 * scale && hi[i] >= fhi[i] - 1e-6 * scale, "{method} entry {i}: sound is tighter than float32");
            assert!(flo[i] - lo[i] <= 1e-3 * scale && hi[i] - fhi[i] <= 1e-3 * scale, "{method} entry {i}: sound [{}, {}] vs float32 [{}, {}]", lo[i], hi[i], flo[i], fhi[i]);
        }
    }
}

#[test]
fn the_sound_region_contains_the_exact_decimal_ball() {
    let device = default_device();
    let x = [0.0f32, 0.3, 0.7, 1.0, 0.123_456_79, 0.999_999_94];
    let xt = from_vec(x.to_vec(), [1, 6, 1, 1], &device);
    for (eps, clip) in [(0.1, Some((0.0, 1.0))), (0.3, None), (1.0 / 3.0, Some((0.1, 0.9))), (0.0, None)] {
        let r = sound::input_region(&xt, eps, clip);
        let (lo, hi) = (to_vec(r.lo), to_vec(r.hi));
        for (j, &v) in x.iter().enumerate() {
            // The exact region's ends, computed in f64 (exact for these magnitudes to 1e-16).
            let (mut l, mut h) = (v as f64 - eps, v as f64 + eps);
            if let Some((a, b)) = clip {
                (l, h) = (l.max(a).min(b), h.max(a).min(b));
            }
            assert!((lo[j] as f64) <= l && (hi[j] as f64) >= h, "eps {eps} clip {clip:?} x {v}: [{}, {}] misses [{l}, {h}]", lo[j], hi[j]);
            assert!(l - lo[j] as f64 <= 1e-6 && hi[j] as f64 - h <= 1e-6, "eps {eps} x {v}: rounded by more than a few ulps");
        }
    }
}

/// Points per region of the sweep below: `IRONBOUND_SWEEP_POINTS` (the total over all regions)
/// scales it up for a long run (`scripts/soundness_sweep.sh` runs 10^6).
fn sweep_points(regions: usize) -> usize {
    let total: usize = std::env::var("IRONBOUND_SWEEP_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(24_000);
    (total / regions).max(2)
}

#[test]
fn sweep_every_sound_bound_against_the_real_network() {
    // Ordinary and shifted networks, radii from tiny to large, inputs on and off the grid.
    let cases: Vec<(String, Network, f64)> = (0..2u64)
        .flat_map(|seed| {
            [
                (format!("fc seed {seed}"), fc(12, 20, 4, 40 + seed), 0.05),
                (format!("fc wide eps seed {seed}"), fc(12, 20, 4, 50 + seed), 0.5),
                (format!("conv seed {seed}"), conv(60 + seed), 0.02),
                (format!("shifted fc seed {seed}"), shifted(&fc(12, 20, 4, 70 + seed), "fc1", "fc2"), 1.0 / 128.0),
            ]
        })
        .collect();
    let n = 3;
    let points = sweep_points(cases.len() * n);
    let mut checked = 0usize;
    for (case, (name, net, eps)) in cases.iter().enumerate() {
        let d: usize = net.input_shape().iter().product();
        let x = if name.starts_with("shifted") { grid_inputs(n, d, case as u64) } else { SplitMix64::new(case as u64).uniforms(n * d) };
        let (real_lo, real_hi) = sampled_extremes(net, &x, n, *eps, points, 1000 + case as u64);
        for method in METHODS {
            let (lo, hi) = bounds(net, &x, n, *eps, method, true);
            for i in 0..lo.len() {
                assert!(lo[i] as f64 <= real_lo[i] + slack(real_lo[i]) && hi[i] as f64 >= real_hi[i] - slack(real_hi[i]), "{name} {method} entry {i}: [{}, {}] vs real [{}, {}]", lo[i], hi[i], real_lo[i], real_hi[i]);
            }
            checked += 1;
        }
    }
    eprintln!("sweep: {} regions x {points} points, {checked} (network, method) pairs, every sound bound held", cases.len() * n);
}
