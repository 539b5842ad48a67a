//! Float-sound bounds (`bounds/sound.rs`) against the real-valued network: on networks built to
//! make float32 rounding matter, plain float32 bounds miss the network's real extremes and the
//! float-sound ones never do; on ordinary networks the two are nearly equal.
//!
//! The reference is the network evaluated in f64 (`Stages::forward`, whose affine maps are the
//! float32 weights materialised exactly): its rounding error is ~1e-16 relative, nine orders
//! below the float32 errors the tests are about, and the tests allow for it explicitly.

use ironbound::bounds::{input_region, output_bounds, output_bounds_with_labels, sound, Interval, Method, Relaxation, Spec};
use ironbound::net::init::SplitMix64;
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec, Param};
use ironbound::tensor::{default_device, from_vec, to_vec, to_vec64, DType};
use ironbound::verify::lp::{self, stages, LpRelaxation};

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

/// How `bounds` computes.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Plain float32, as training does.
    Fast,
    /// The same plain arithmetic on the network cast to float64: what the sound bounds would
    /// be without their error terms.
    Fast64,
    /// Float-sound, on the outward-rounded region (as `certify` does).
    Sound,
}

/// Bounds `[n, k]` of `method` on the region, read as f64.
fn bounds(net: &Network, x: &[f32], n: usize, eps: f64, method: Method, mode: Mode) -> (Vec<f64>, Vec<f64>) {
    let device = default_device();
    let s = net.input_shape();
    let xt = from_vec(x.to_vec(), [n, s[0], s[1], s[2]], &device);
    let region: Interval = match mode {
        Mode::Fast => input_region(&xt, eps, None),
        Mode::Fast64 => input_region(&xt.cast(DType::F64), eps, None),
        Mode::Sound => sound::input_region(&xt, eps, None),
    };
    let net64;
    let net = match mode {
        Mode::Fast64 => {
            net64 = net.with_dtype(DType::F64);
            &net64
        }
        _ => net,
    };
    let relaxation: Relaxation = method.relaxation().with_sound(mode == Mode::Sound);
    let (lo, hi) = if method.needs_labels() {
        output_bounds_with_labels(net, &region, &relaxation, &vec![0; n]).expect("bounds")
    } else {
        output_bounds(net, &region, &relaxation).expect("bounds")
    };
    (to_vec64(lo), to_vec64(hi))
}

/// The same function computed through large values: the `first` layer's biases shifted up by
/// 4096 (every neuron of the ReLU after it becomes active) and the `second` layer's biases
/// shifted down by what that adds. Float32 rounds the first layer's outputs to ~5e-4, as much as their
/// variation over the region, so plain float32 bounds of such a network are wrong.
fn shifted(net: &Network, first: &str, second: &str) -> Network {
    shifted_by(net, first, second, 4096.0)
}

/// `shifted` by `shift` (a power of two, so the shifted biases' rounding is the only change).
fn shifted_by(net: &Network, first: &str, second: &str, shift: f32) -> Network {
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
            Param::D1(b) if index - 1 == first => Param::D1(b + shift as f64),
            Param::D1(b) if index - 1 == second => Param::D1(b - from_vec(sums.iter().map(|s| s * shift).collect(), [sums.len()], &device)),
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
                let (lo, hi) = bounds(&net, &x, n, eps, method, Mode::Sound);
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
                let (flo, fhi) = bounds(&net, &x, n, eps, method, Mode::Fast);
                fast_misses += (0..flo.len()).filter(|&i| flo[i] as f64 > real_lo[i] + slack(real_lo[i]) || (fhi[i] as f64) < real_hi[i] - slack(real_hi[i])).count();
            }
        }
    }
    // The networks do what they are built for: plain float32 bounds are wrong on them.
    assert!(fast_misses > 0, "no float32 bound missed the real network: the test networks are not adversarial");
}

/// On ordinary networks the sound bounds are the plain ones up to rounding: within one float32
/// step (their rounding on the way out) plus 1e-9 (their error terms) of the same arithmetic in
/// float64, and within float32's own rounding of plain float32, at most 1e-5 relative.
#[test]
fn sound_bounds_are_nearly_the_float32_ones_on_ordinary_inputs() {
    for (d, h, k, n, eps, seed) in [(32, 40, 6, 3, 0.02, 7), (784, 100, 10, 2, 0.01, 8)] {
        let net = fc(d, h, k, seed);
        let x: Vec<f32> = SplitMix64::new(5).uniforms(n * d);
        let (real_lo, real_hi) = sampled_extremes(&net, &x, n, eps, 200, 3);
        for method in METHODS {
            let (lo, hi) = bounds(&net, &x, n, eps, method, Mode::Sound);
            let (f64_lo, f64_hi) = bounds(&net, &x, n, eps, method, Mode::Fast64);
            let (flo, fhi) = bounds(&net, &x, n, eps, method, Mode::Fast);
            let scale = lo.iter().chain(&hi).fold(1.0f64, |m, v| m.max(v.abs()));
            for i in 0..lo.len() {
                assert!(lo[i] <= real_lo[i] + slack(real_lo[i]) && hi[i] >= real_hi[i] - slack(real_hi[i]), "{method} entry {i}");
                assert!(lo[i] <= f64_lo[i] && hi[i] >= f64_hi[i], "{method} entry {i}: sound is tighter than plain float64");
                // One float32 step of the way out, and 1e-9 for the error terms.
                let step = |v: f64| v.abs() * 2f64.powi(-23) + 1e-9 * scale;
                assert!(f64_lo[i] - lo[i] <= step(f64_lo[i]) && hi[i] - f64_hi[i] <= step(f64_hi[i]), "{method} {d}-{h}-{k} entry {i}: sound [{}, {}] vs float64 [{}, {}]", lo[i], hi[i], f64_lo[i], f64_hi[i]);
                assert!((flo[i] - lo[i]).abs() <= 1e-5 * scale && (hi[i] - fhi[i]).abs() <= 1e-5 * scale, "{method} {d}-{h}-{k} entry {i}: sound [{}, {}] vs float32 [{}, {}]", lo[i], hi[i], flo[i], fhi[i]);
            }
        }
    }
}

/// Exact rationals (the float32 weights and the dyadic region ends are exact in them).
type Q = num_rational::BigRational;

fn q(v: f64) -> Q {
    Q::from_float(v).expect("finite")
}

fn zero() -> Q {
    Q::from_integer(num_bigint::BigInt::from(0))
}

/// Exact real-arithmetic extremes `[n, k]` of a network whose every ReLU is active on the
/// region (checked exactly): there it is one affine map, composed here in rationals, whose
/// extremes over the box are at its corners.
fn exact_extremes(net: &Network, x: &[f32], n: usize, eps: f64) -> (Vec<Q>, Vec<Q>) {
    let st = stages::extract(net).expect("stages");
    let d = st.input_dim();
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (ends_lo, ends_hi): (Vec<Q>, Vec<Q>) = x[i * d..(i + 1) * d].iter().map(|&v| (q(v as f64 - eps), q(v as f64 + eps))).unzip();
        // rows[o] = (coefficients over the input, constant) of the current stage's outputs.
        let mut rows: Vec<(Vec<Q>, Q)> = (0..d).map(|j| ((0..d).map(|t| if t == j { q(1.0) } else { zero() }).collect(), zero())).collect();
        for (k, a) in st.affine.iter().enumerate() {
            rows = a
                .rows
                .iter()
                .zip(&a.bias)
                .map(|(row, b)| {
                    let mut c = vec![zero(); d];
                    let mut c0 = q(*b);
                    for &(j, w) in row {
                        let w = q(w);
                        c0 += &w * &rows[j].1;
                        for (t, v) in rows[j].0.iter().enumerate() {
                            c[t] += &w * v;
                        }
                    }
                    (c, c0)
                })
                .collect();
            let extremes: Vec<(Q, Q)> = rows
                .iter()
                .map(|(c, c0)| {
                    let (mut l, mut h) = (c0.clone(), c0.clone());
                    for ((ct, el), eh) in c.iter().zip(&ends_lo).zip(&ends_hi) {
                        let (a, b) = (ct * el, ct * eh);
                        if a < b {
                            l += a;
                            h += b;
                        } else {
                            l += b;
                            h += a;
                        }
                    }
                    (l, h)
                })
                .collect();
            if k + 1 < st.affine.len() {
                assert!(extremes.iter().all(|(l, _)| *l >= zero()), "sample {i}: a ReLU of stage {k} is not active on the whole region");
            } else {
                for (l, h) in extremes {
                    lo.push(l);
                    hi.push(h);
                }
            }
        }
    }
    (lo, hi)
}

/// Shifted by 2^40, the network computes through values whose float64 rounding (2^-12) is as
/// large as their variation over the region: the same arithmetic in plain float64 misses the
/// exact extremes, while every sound bound holds against exact rational arithmetic.
#[test]
fn sound_bounds_hold_where_float64_arithmetic_misses_the_real_network() {
    let (n, eps) = (3, 1.0 / 128.0);
    let shift = 2f32.powi(40);
    let mut plain_misses = 0usize;
    for seed in 0..2u64 {
        let net = shifted_by(&shifted_by(&fc(12, 16, 4, seed), "fc1", "fc2", shift), "fc2", "fc3", shift);
        let x = grid_inputs(n, 12, 200 + seed);
        let (exact_lo, exact_hi) = exact_extremes(&net, &x, n, eps);
        for method in METHODS {
            let (lo, hi) = bounds(&net, &x, n, eps, method, Mode::Sound);
            for i in 0..lo.len() {
                assert!(q(lo[i]) <= exact_lo[i] && q(hi[i]) >= exact_hi[i], "{method} seed {seed} entry {i}: [{}, {}] misses the exact extremes", lo[i], hi[i]);
            }
            let (plo, phi) = bounds(&net, &x, n, eps, method, Mode::Fast64);
            plain_misses += (0..plo.len()).filter(|&i| q(plo[i]) > exact_lo[i] || q(phi[i]) < exact_hi[i]).count();
        }
    }
    assert!(plain_misses > 0, "plain float64 never missed: the test networks are not adversarial for float64");
}

/// LP bounds `[n, k]` of every output (rows [I; -I]), plain or float-sound.
fn lp_bounds(net: &Network, x: &[f32], n: usize, eps: f64, relaxation: LpRelaxation, sound_mode: bool) -> (Vec<f64>, Vec<f64>) {
    let device = default_device();
    let s = net.input_shape();
    let xt = from_vec(x.to_vec(), [n, s[0], s[1], s[2]], &device);
    let region = if sound_mode { sound::input_region(&xt, eps, None) } else { input_region(&xt, eps, None) };
    let k = net.num_outputs();
    let st = stages::extract(net).expect("stages");
    let lb = to_vec64(lp::lower_bound(net, &st, &region, &Spec::identity_pair(k, &device), relaxation, sound_mode, None).expect("lp"));
    let lo = (0..n * k).map(|e| lb[(e / k) * 2 * k + e % k]).collect();
    let hi = (0..n * k).map(|e| -lb[(e / k) * 2 * k + k + e % k]).collect();
    (lo, hi)
}

/// The LPs on the same float-adversarial networks: float-sound Triangle and Parallelogram
/// bounds hold against exact rational arithmetic where float64 misses (2^40 shift), and
/// against the real network's sampled extremes where float32 misses (4096 shift, also a
/// convnet, whose stages sum products of several layers).
#[test]
fn sound_lp_bounds_hold_on_float_adversarial_networks() {
    let (n, eps) = (3, 1.0 / 128.0);
    for seed in 0..2u64 {
        let net = shifted_by(&shifted_by(&fc(12, 16, 4, seed), "fc1", "fc2", 2f32.powi(40)), "fc2", "fc3", 2f32.powi(40));
        let x = grid_inputs(n, 12, 200 + seed);
        let (exact_lo, exact_hi) = exact_extremes(&net, &x, n, eps);
        for r in [LpRelaxation::Triangle, LpRelaxation::Parallelogram] {
            let (lo, hi) = lp_bounds(&net, &x, n, eps, r, true);
            for i in 0..lo.len() {
                assert!(q(lo[i]) <= exact_lo[i] && q(hi[i]) >= exact_hi[i], "{} seed {seed} entry {i}: [{}, {}] misses the exact extremes", r.name(), lo[i], hi[i]);
            }
        }
        let conv_net = shifted(&shifted(&conv(seed), "conv1", "conv2"), "conv2", "fc");
        let x = grid_inputs(n, 64, 100 + seed);
        let (real_lo, real_hi) = sampled_extremes(&conv_net, &x, n, eps, 64, seed);
        let (lo, hi) = lp_bounds(&conv_net, &x, n, eps, LpRelaxation::Triangle, true);
        for i in 0..lo.len() {
            assert!(lo[i] <= real_lo[i] + slack(real_lo[i]) && hi[i] >= real_hi[i] - slack(real_hi[i]), "conv seed {seed} entry {i}: sound LP [{}, {}] misses real values [{}, {}]", lo[i], hi[i], real_lo[i], real_hi[i]);
        }
    }
}

/// On an ordinary network the sound LP bounds are the plain ones up to rounding.
#[test]
fn sound_lp_bounds_are_nearly_the_plain_ones_on_ordinary_inputs() {
    let (n, eps) = (2, 0.05);
    let net = fc(16, 20, 5, 9);
    let x: Vec<f32> = SplitMix64::new(6).uniforms(n * 16);
    for r in [LpRelaxation::Triangle, LpRelaxation::Parallelogram] {
        let (lo, hi) = lp_bounds(&net, &x, n, eps, r, true);
        let (plo, phi) = lp_bounds(&net, &x, n, eps, r, false);
        let scale = plo.iter().chain(&phi).fold(1.0f64, |m, v| m.max(v.abs()));
        for i in 0..lo.len() {
            assert!((lo[i] - plo[i]).abs() <= 1e-5 * scale && (hi[i] - phi[i]).abs() <= 1e-5 * scale, "{} entry {i}: sound [{}, {}] vs plain [{}, {}]", r.name(), lo[i], hi[i], plo[i], phi[i]);
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
        // Read as float64, the type of sound mode's region.
        let (lo, hi) = (to_vec64(r.lo), to_vec64(r.hi));
        for (j, &v) in x.iter().enumerate() {
            // The exact region's ends, computed in f64 (exact for these magnitudes to 1e-16).
            let (mut l, mut h) = (v as f64 - eps, v as f64 + eps);
            if let Some((a, b)) = clip {
                (l, h) = (l.max(a).min(b), h.max(a).min(b));
            }
            assert!(lo[j] <= l && hi[j] >= h, "eps {eps} clip {clip:?} x {v}: [{}, {}] misses [{l}, {h}]", lo[j], hi[j]);
            assert!(l - lo[j] <= 1e-15 && hi[j] - h <= 1e-15, "eps {eps} x {v}: rounded by more than a few float64 ulps");
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
            let (lo, hi) = bounds(net, &x, n, *eps, method, Mode::Sound);
            for i in 0..lo.len() {
                assert!(lo[i] as f64 <= real_lo[i] + slack(real_lo[i]) && hi[i] as f64 >= real_hi[i] - slack(real_hi[i]), "{name} {method} entry {i}: [{}, {}] vs real [{}, {}]", lo[i], hi[i], real_lo[i], real_hi[i]);
            }
            checked += 1;
        }
    }
    eprintln!("sweep: {} regions x {points} points, {checked} (network, method) pairs, every sound bound held", cases.len() * n);
}

/// Every layer the IR has: normalisation, a strided padded convolution, batch norm, a residual
/// add, average pooling, flatten and a dense layer; 2x6x6 inputs.
fn every_layer(seed: u64) -> Network {
    let conv = |i, o, s, p| OpSpec::Conv2d { in_channels: i, out_channels: o, kernel: [3, 3], stride: [s, s], padding: [p, p] };
    let ops: Vec<(OpSpec, Vec<usize>)> = vec![
        (OpSpec::Normalize { mean: vec![0.3, -0.2], std: vec![0.5, 2.0] }, vec![0]),
        (conv(2, 4, 2, 1), vec![1]),
        (OpSpec::BatchNorm { channels: 4, eps: 1e-5 }, vec![2]),
        (OpSpec::Relu, vec![3]),
        (conv(4, 4, 1, 1), vec![4]),
        (OpSpec::Relu, vec![5]),
        (OpSpec::Add, vec![6, 4]),
        (OpSpec::AvgPool2d { kernel: [2, 2], stride: [1, 1], padding: [0, 0] }, vec![7]),
        (OpSpec::Flatten, vec![8]),
        (OpSpec::Linear { in_features: 16, out_features: 3 }, vec![9]),
    ];
    let nodes = ops.into_iter().enumerate().map(|(i, (op, inputs))| NodeSpec { name: format!("n{i}"), op, inputs }).collect();
    NetSpec { input_shape: [2, 6, 6], nodes }.init(seed, &default_device()).expect("every-layer net")
}

/// Extremes `[n, k]` of the network evaluated in float64 (its float32 weights exactly, ~1e-16
/// relative off the real network) over random corners, uniform points, and the iterates of
/// sign-gradient descents and ascents (PGD) of each output from random starts: the points
/// most likely to break a bound.
fn seen_extremes(net: &Network, x0: &[f32], n: usize, eps: f64, points: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let net64 = net.with_dtype(DType::F64);
    let [c, h, w] = net.input_shape();
    let (d, k) = (c * h * w, net.num_outputs());
    let device = default_device();
    let mut rng = SplitMix64::new(seed);
    let (mut lo, mut hi) = (vec![f64::INFINITY; n * k], vec![f64::NEG_INFINITY; n * k]);
    // Rows of `x` are points of sample `owner[r]`'s region.
    let mut record = |x: ironbound::tensor::Tensor<4>, owner: &[usize]| {
        let y = to_vec64(net64.forward(x));
        for (r, &i) in owner.iter().enumerate() {
            for o in 0..k {
                lo[i * k + o] = lo[i * k + o].min(y[r * k + o]);
                hi[i * k + o] = hi[i * k + o].max(y[r * k + o]);
            }
        }
    };
    let centre = |i: usize, j: usize| x0[i * d + j] as f64;
    let mut draw = |m: usize, corners: bool| -> (Vec<f64>, Vec<usize>) {
        let owner: Vec<usize> = (0..m).map(|r| r % n).collect();
        let v = owner.iter().flat_map(|&i| (0..d).map(move |j| (i, j))).map(|(i, j)| {
            let u = rng.uniform();
            centre(i, j) + eps * if corners { if u < 0.5 { -1.0 } else { 1.0 } } else { 2.0 * u - 1.0 }
        });
        (v.collect(), owner)
    };
    let tensor = |v: Vec<f64>, m: usize| ironbound::tensor::Tensor::<4>::from_data(ironbound::tensor::TensorData::new(v, [m, c, h, w]), (&device, DType::F64));
    for chunk in (0..points).step_by(512) {
        let m = 512.min(points - chunk) * n;
        let (v, owner) = draw(m, chunk / 512 % 2 == 0);
        record(tensor(v, m), &owner);
    }
    // PGD: per sample, output and direction, 4 starts of 16 steps of eps/4, kept in the box.
    let starts = 4;
    let m = n * k * 2 * starts;
    let (v, _) = draw(m, false);
    let owner: Vec<usize> = (0..m).map(|r| r / (k * 2 * starts)).collect();
    let goal: Vec<f64> = (0..m).flat_map(|r| (0..k).map(move |o| if o == r / (2 * starts) % k { if r % 2 == 0 { 1.0 } else { -1.0 } } else { 0.0 })).collect();
    let goal = ironbound::tensor::Tensor::<2>::from_data(ironbound::tensor::TensorData::new(goal, [m, k]), (&device, DType::F64));
    let (box_lo, box_hi): (Vec<f64>, Vec<f64>) = owner.iter().flat_map(|&i| (0..d).map(move |j| (centre(i, j) - eps, centre(i, j) + eps))).unzip();
    let (box_lo, box_hi) = (tensor(box_lo, m), tensor(box_hi, m));
    let mut x = tensor(v, m);
    for _ in 0..16 {
        let tracked = x.clone().autodiff().require_grad();
        let grads = (net64.forward(tracked.clone()) * goal.clone()).sum().backward();
        let g = tracked.grad(&grads).expect("a gradient");
        // Descend goal . y: minimise an output (goal +1) or maximise it (goal -1).
        x = (x - g.sign() * (eps / 4.0)).max_pair(box_lo.clone()).min_pair(box_hi.clone());
        record(x.clone(), &owner);
    }
    (lo, hi)
}

/// Saves a failing case so that it reproduces outside the test: the model, the inputs and the
/// command, under `target/tmp/soundness-failures/`.
fn save_failure(name: &str, net: &Network, x: &[f32], n: usize, eps: f64, method: Method, what: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soundness-failures").join(format!("{}-{method}", name.replace(' ', "-")));
    std::fs::create_dir_all(&dir).expect("failure directory");
    ironbound::io::save_model(net, &dir.join("model.onnx")).expect("save the model");
    let [c, h, w] = net.input_shape();
    ironbound::io::npy::write_npy(&dir.join("x.npy"), &[n, c, h, w], x).expect("save the inputs");
    let command = format!("ironbound bounds --model model.onnx --input x.npy --eps {eps} --method {method} --sound --out b.npz\n{what}\n");
    std::fs::write(dir.join("README.txt"), command).expect("save the command");
    dir
}

#[test]
fn sweep_every_sound_bound_on_every_layer_with_pgd_points() {
    let n = 2;
    let cases: Vec<(String, Network, f64)> = (0..2u64)
        .flat_map(|seed| [(format!("every layer seed {seed}"), every_layer(80 + seed), 0.05), (format!("every layer wide seed {seed}"), every_layer(90 + seed), 0.3)])
        .collect();
    let points = sweep_points(cases.len() * n);
    let mut failures = Vec::new();
    for (case, (name, net, eps)) in cases.iter().enumerate() {
        let d: usize = net.input_shape().iter().product();
        let x = SplitMix64::new(300 + case as u64).uniforms(n * d);
        let (seen_lo, seen_hi) = seen_extremes(net, &x, n, *eps, points, 400 + case as u64);
        for method in METHODS {
            let (lo, hi) = bounds(net, &x, n, *eps, method, Mode::Sound);
            for i in 0..lo.len() {
                if lo[i] > seen_lo[i] + slack(seen_lo[i]) || hi[i] < seen_hi[i] - slack(seen_hi[i]) {
                    let what = format!("entry {i}: bounds [{}, {}], float64 network reached [{}, {}]", lo[i], hi[i], seen_lo[i], seen_hi[i]);
                    failures.push(format!("{name} {method} {what}: {}", save_failure(name, net, &x, n, *eps, method, &what).display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} sound bounds broken, cases saved:\n{}", failures.len(), failures.join("\n"));
    eprintln!("sweep: every-layer networks, {} regions x {points} points plus PGD, every sound bound held", cases.len() * n);
}
