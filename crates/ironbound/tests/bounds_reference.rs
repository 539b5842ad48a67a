//! Every method's bounds agree with the independent dense f64 reference of `common`.

mod common;

use common::*;
use ironbound::bounds::{input_region, lower_bound, output_bounds, Engine, LowerLine, Method, Relaxation, Spec};
use ironbound::net::{Network, ReluLower};
use ironbound::tensor::{to_vec, Tensor};

/// Relative + absolute tolerance for f32 engine results against the f64 reference.
const TOL: f64 = 1e-4;

struct Case<'a> {
    name: &'a str,
    net: &'a Network,
    x: Tensor<4>,
    xv: Vec<f32>,
    eps: f64,
    clip: Option<(f64, f64)>,
}

impl Case<'_> {
    fn batch(&self) -> usize {
        self.x.dims()[0]
    }

    fn labels(&self) -> Vec<usize> {
        (0..self.batch()).map(|i| (i * 2 + 1) % self.net.num_outputs()).collect()
    }

    fn boxes(&self) -> Vec<Bounds> {
        let f = self.net.input_shape().iter().product();
        (0..self.batch()).map(|i| box_of(&self.xv, f, i, self.eps, self.clip)).collect()
    }

    /// Compares `relaxation` with the reference passes (margins and output bounds).
    fn check(&self, what: &str, relaxation: &Relaxation, inter: Pass, fin: Pass) {
        let d = dense(self.net);
        let k = self.net.num_outputs();
        let labels = self.labels();
        let region = input_region(&self.x, self.eps, self.clip);
        let spec = Spec::margins(&labels, k, &dev()).unwrap();
        let lb = lower_bound(self.net, &region, &spec, relaxation).unwrap();
        assert_eq!(lb.dims(), [self.batch(), k - 1]);
        let boxes = self.boxes();
        let want: Vec<Vec<f64>> =
            boxes.iter().zip(&labels).map(|((lo, hi), &y)| reference_lower(&d, lo, hi, inter, fin, &margin_rows(y, k))).collect();
        assert_close_rows(&format!("{} {what} margins", self.name), &rows2(lb), &want, TOL);

        let (lo, up) = output_bounds(self.net, &region, relaxation).unwrap();
        let want: Vec<Bounds> = boxes.iter().map(|(l, h)| reference_output(&d, l, h, inter, fin)).collect();
        let (wl, wu): (Vec<_>, Vec<_>) = want.into_iter().unzip();
        assert_close_rows(&format!("{} {what} lower", self.name), &rows2(lo), &wl, TOL);
        assert_close_rows(&format!("{} {what} upper", self.name), &rows2(up), &wu, TOL);
    }

    /// Every preset against its reference; alpha-CROWN between CROWN and the sampled minimum.
    fn check_all_methods(&self) {
        let d = dense(self.net);
        // The case must exercise both stable and unstable neurons in every sample.
        for (i, (lo, hi)) in self.boxes().iter().enumerate() {
            let (unstable, total) = stability(&intermediate(&d, lo, hi, Some(Rule::Adaptive)));
            assert!(unstable > 0 && unstable < total, "{} sample {i}: {unstable} of {total} ReLUs unstable", self.name);
        }
        for m in Method::ALL {
            if let Some((inter, fin)) = reference_of(m) {
                self.check(m.name(), &m.relaxation(), inter, fin);
            }
        }
        // alpha-CROWN: never below the CROWN reference, never above the true minimum of the
        // margins over the box corners and a few random points.
        let k = self.net.num_outputs();
        let labels = self.labels();
        let region = input_region(&self.x, self.eps, self.clip);
        let spec = Spec::margins(&labels, k, &dev()).unwrap();
        let alpha = rows2(lower_bound(self.net, &region, &spec, &Method::AlphaCrown.relaxation()).unwrap());
        let mut rng = ironbound::net::init::SplitMix64::new(7);
        for (n, ((lo, hi), &y)) in self.boxes().iter().zip(&labels).enumerate() {
            let rows = margin_rows(y, k);
            let crown = reference_lower(&d, lo, hi, Pass::Backsub(Rule::Adaptive), Pass::Backsub(Rule::Adaptive), &rows);
            let (lo32, hi32): (Vec<f32>, Vec<f32>) = (lo.iter().map(|&v| v as f32).collect(), hi.iter().map(|&v| v as f32).collect());
            let logits = forward_points(self.net, &sample_box(&lo32, &hi32, 500, &mut rng));
            for (r, c) in (0..k).filter(|&j| j != y).enumerate() {
                let a = alpha[n][r] as f64;
                assert!(a >= crown[r] - TOL * (1.0 + crown[r].abs()), "{} alpha-crown {a} below crown {}", self.name, crown[r]);
                let min = logits.iter().map(|f| (f[y] - f[c]) as f64).fold(f64::INFINITY, f64::min);
                assert!(a <= min + 1e-5, "{} alpha-crown {a} above the sampled minimum {min}", self.name);
            }
        }
    }
}

fn case<'a>(name: &'a str, net: &'a Network, n: usize, seed: u64, eps: f64, clip: Option<(f64, f64)>) -> Case<'a> {
    let (x, xv) = random_inputs(net, n, seed, 0.0, 1.0);
    Case { name, net, x, xv, eps, clip }
}

#[test]
fn dense_reference_forward_matches_network_forward() {
    for (name, net) in [("mlp", mlp(1, &[6, 8, 8, 3])), ("conv", convnet(2)), ("conv-rem", convnet_remainder(3)), ("norm", normalized_convnet(4))] {
        let d = dense(&net);
        let (x, xv) = random_inputs(&net, 4, 11, -1.0, 1.0);
        let got = rows2(net.forward(x));
        let f = d.n_in;
        let want: Vec<Vec<f64>> = (0..4).map(|i| d.forward(&xv[i * f..(i + 1) * f].iter().map(|&v| v as f64).collect::<Vec<_>>())).collect();
        assert_close_rows(name, &got, &want, 1e-5);
    }
}

#[test]
fn input_region_is_the_clipped_box() {
    let net = mlp(1, &[6, 8, 3]);
    let (x, xv) = random_inputs(&net, 3, 5, 0.0, 1.0);
    for clip in [None, Some((0.0, 1.0)), Some((0.2, 0.7))] {
        let region = input_region(&x, 0.25, clip);
        let (lo, hi) = (to_vec(region.lo), to_vec(region.hi));
        for i in 0..3 {
            let (wl, wh) = box_of(&xv, 6, i, 0.25, clip);
            for j in 0..6 {
                assert!((lo[i * 6 + j] as f64 - wl[j]).abs() < 1e-6 && (hi[i * 6 + j] as f64 - wh[j]).abs() < 1e-6, "{clip:?}");
            }
        }
    }
}

#[test]
fn mlp_6_8_8_3_matches_reference() {
    for seed in [1, 2] {
        let net = mlp(seed, &[6, 8, 8, 3]);
        case("mlp-6-8-8-3", &net, 4, 100 + seed, 0.12, None).check_all_methods();
    }
}

#[test]
fn deeper_mlp_matches_reference() {
    let net = mlp(3, &[5, 7, 7, 7, 4]);
    case("mlp-5-7-7-7-4", &net, 3, 200, 0.1, None).check_all_methods();
}

#[test]
fn strided_padded_convnet_matches_reference() {
    let net = convnet(4);
    case("convnet", &net, 3, 300, 0.04, None).check_all_methods();
}

#[test]
fn convnet_with_stride_remainder_matches_reference() {
    let net = convnet_remainder(5);
    case("convnet-remainder", &net, 3, 400, 0.08, None).check_all_methods();
}

#[test]
fn normalize_layer_matches_reference() {
    let net = normalized_convnet(6);
    case("normalized", &net, 3, 500, 0.05, None).check_all_methods();
}

#[test]
fn rectangular_convolutions_match_reference() {
    let net = rect_convnet(9);
    case("rect-convnet", &net, 3, 800, 0.1, None).check_all_methods();
}

#[test]
fn stacked_affine_layers_match_reference() {
    let net = stacked_affine(10, false);
    case("fc-fc", &net, 3, 900, 0.4, None).check_all_methods();
    let net = stacked_affine(11, true);
    case("conv-conv", &net, 3, 901, 0.3, None).check_all_methods();
}

#[test]
fn arbitrary_linear_specs_match_reference() {
    // Dense random C, shared by the batch ([1, 4, K]) and per sample ([N, 2, K]).
    let net = mlp(12, &[6, 8, 8, 3]);
    let c = case("spec", &net, 3, 1000, 0.12, None);
    let d = dense(&net);
    let k = net.num_outputs();
    let mut rng = ironbound::net::init::SplitMix64::new(99);
    for (b, rows) in [(1usize, 4usize), (3, 2)] {
        let cv: Vec<f32> = (0..b * rows * k).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
        let spec = Spec::new(ironbound::tensor::from_vec(cv.clone(), [b, rows, k], &dev()));
        for m in Method::ALL.into_iter().filter(|m| reference_of(*m).is_some() || *m == Method::AlphaCrown) {
            let got = rows2(lower_bound(&net, &input_region(&c.x, c.eps, None), &spec, &m.relaxation()).unwrap());
            let want: Vec<Vec<f64>> = c
                .boxes()
                .iter()
                .enumerate()
                .map(|(n, (lo, hi))| {
                    let base = if b == 1 { 0 } else { n * rows * k };
                    let cr: Vec<Vec<f64>> = (0..rows).map(|r| (0..k).map(|j| cv[base + r * k + j] as f64).collect()).collect();
                    match reference_of(m) {
                        Some((inter, fin)) => reference_lower(&d, lo, hi, inter, fin, &cr),
                        // alpha-CROWN: checked against CROWN below
                        None => reference_lower(&d, lo, hi, Pass::Backsub(Rule::Adaptive), Pass::Backsub(Rule::Adaptive), &cr),
                    }
                })
                .collect();
            if m == Method::AlphaCrown {
                for (g, w) in got.iter().zip(&want) {
                    for (a, b) in g.iter().zip(w) {
                        assert!(*a as f64 >= b - TOL * (1.0 + b.abs()), "alpha-crown {a} below crown {b}");
                    }
                }
            } else {
                assert_close_rows(&format!("{m} spec B={b}"), &got, &want, TOL);
            }
        }
    }
}

#[test]
fn clipped_input_box_matches_reference() {
    let net = mlp(7, &[6, 8, 8, 3]);
    let c = case("clipped", &net, 4, 600, 0.3, Some((0.0, 1.0)));
    // the clip must actually cut the box of every sample, at both ends somewhere in the batch
    let boxes = c.boxes();
    assert!(boxes.iter().all(|(lo, hi)| lo.iter().any(|&v| v == 0.0) || hi.iter().any(|&v| v == 1.0)));
    assert!(boxes.iter().any(|(lo, _)| lo.iter().any(|&v| v == 0.0)) && boxes.iter().any(|(_, hi)| hi.iter().any(|&v| v == 1.0)));
    c.check_all_methods();
}

#[test]
fn non_preset_relaxations_match_reference() {
    let net = mlp(8, &[6, 8, 8, 3]);
    let c = case("custom", &net, 3, 700, 0.12, None);
    let r = |intermediate, final_pass, lower: ReluLower| Relaxation { intermediate, final_pass, intermediate_lower: lower, final_lower: LowerLine::Fixed(lower), sound: false };
    use Engine::*;
    // DeepZ computed entirely by zonotopes
    c.check("deepz-zonotope", &r(Zonotope, Zonotope, ReluLower::Parallel), Pass::Zonotope(Rule::Parallel), Pass::Zonotope(Rule::Parallel));
    // hBox by back-substitution equals the hBox zonotope
    c.check("hbox-backsub", &r(BackSubstitution, BackSubstitution, ReluLower::Box), Pass::Zonotope(Rule::Box), Pass::Zonotope(Rule::Box));
    // CROWN-0 final pass on CROWN intermediate bounds
    let mixed = Relaxation {
        intermediate: BackSubstitution,
        final_pass: BackSubstitution,
        intermediate_lower: ReluLower::Adaptive,
        final_lower: LowerLine::Fixed(ReluLower::Zero),
        sound: false,
    };
    let d = dense(&net);
    let k = net.num_outputs();
    let region = input_region(&c.x, c.eps, None);
    let spec = Spec::margins(&c.labels(), k, &dev()).unwrap();
    let got = rows2(lower_bound(&net, &region, &spec, &mixed).unwrap());
    let want: Vec<Vec<f64>> = c
        .boxes()
        .iter()
        .zip(c.labels())
        .map(|((lo, hi), y)| {
            let pre = intermediate(&d, lo, hi, Some(Rule::Adaptive));
            backsub(&d, d.layers.len(), &margin_rows(y, k), &pre, Rule::Zero, lo, hi)
        })
        .collect();
    assert_close_rows("crown-0 on crown intermediates", &got, &want, TOL);
}
