//! COLT's layerwise training: the latent adversarial point is a point of the DeepZ zonotope at
//! every PGD step (equal to `a + A e` from the zonotope's own generators), the layers before the
//! latent layer stay bit-identical through a phase, a run resumed at a phase boundary equals an
//! uninterrupted one, and bad COLT keys are one-line errors naming the key.

mod common;

use common::{convnet, dev, mlp, small_run, synthetic};
use ironbound::bounds::{input_region, zonotope, Interval};
use ironbound::data::Split;
use ironbound::net::init::SplitMix64;
use ironbound::net::{Network, Op, ReluLower};
use ironbound::tensor::{from_vec, to_vec, Tensor};
use ironbound::train::batches::{self, TrainData};
use ironbound::train::colt::{self, Region};
use ironbound::train::{run, Outcome, Resolved, RunOptions, Silent, Sources, TrainConfig};
use ironbound::loss::one_hot;
use std::path::PathBuf;

fn batch(net: &Network, n: usize, seed: u64) -> Tensor<4> {
    let [c, h, w] = net.input_shape();
    let mut rng = SplitMix64::new(seed);
    from_vec(rng.uniforms(n * c * h * w), [n, c, h, w], &dev())
}

/// `center + sum_g e_g gen_g` from the exact zonotope of `prefix`, with the symbols taken from
/// the noise `e` as `Region::random_noise` lays it out: every input element, then per ReLU the
/// neurons with a gap (l < 0 < u) in some sample, in order.
fn explicit_point(prefix: &Network, input: &Interval, e: &[Tensor<4>]) -> Vec<f32> {
    let (z, pre) = zonotope::propagate(prefix, input, ReluLower::Parallel).unwrap();
    let n = z.center.dims()[0];
    let f: usize = z.center.dims()[1..].iter().product();
    let mut coeffs: Vec<Vec<f32>> = vec![Vec::new(); n];
    let e0 = to_vec(e[0].clone());
    let m0 = e0.len() / n;
    for s in 0..n {
        coeffs[s].extend_from_slice(&e0[s * m0..(s + 1) * m0]);
    }
    let mut k = 1;
    for node in prefix.nodes() {
        if !matches!(node.op, Op::Relu) {
            continue;
        }
        let b = pre[node.inputs[0]].as_ref().unwrap();
        let (lo, hi) = (to_vec(b.lo.clone()), to_vec(b.hi.clone()));
        let width = lo.len() / n;
        let cols: Vec<usize> = (0..width).filter(|&j| (0..n).any(|s| lo[s * width + j] < 0.0 && hi[s * width + j] > 0.0)).collect();
        let ek = to_vec(e[k].clone());
        k += 1;
        for s in 0..n {
            coeffs[s].extend(cols.iter().map(|&j| ek[s * width + j]));
        }
    }
    let center = to_vec(z.center.clone());
    let gens = to_vec(z.gens.clone());
    assert_eq!(coeffs[0].len(), z.num_gens, "one coefficient per generator");
    let mut out = center.clone();
    for s in 0..n {
        for g in 0..z.num_gens {
            let row = &gens[(s * z.num_gens + g) * f..(s * z.num_gens + g + 1) * f];
            for j in 0..f {
                out[s * f + j] += coeffs[s][g] * row[j];
            }
        }
    }
    out
}

#[test]
fn latent_points_stay_in_their_zonotope_at_every_pgd_step() {
    for (name, net) in [("mlp", mlp(5, &[6, 12, 10, 8, 4])), ("convnet", convnet(2))] {
        let relus = net.nodes().iter().filter(|n| matches!(n.op, Op::Relu)).count();
        for latent in 1..=relus {
            let v = colt::latent_value(&net, latent).unwrap();
            let (prefix, suffix) = colt::split(&net, v).unwrap();
            let x = batch(&net, 3, 11 + latent as u64);
            let input = input_region(&x, 0.2, Some((0.0, 1.0)));
            let region = Region::new(&prefix, &input, 0, 0).unwrap();
            let hull = zonotope::propagate(&prefix, &input, ReluLower::Parallel).unwrap().0.interval();
            let (lo, hi) = (to_vec(hull.lo), to_vec(hull.hi));
            let targets = one_hot(&[0, 1, 2], net.num_outputs(), &dev());
            let mut steps = 0;
            let mut check = |e: &[Tensor<4>]| {
                steps += 1;
                for t in e {
                    assert!(to_vec(t.clone()).iter().all(|v| (-1.0..=1.0).contains(v)), "{name} latent {latent}: a noise symbol left [-1, 1]");
                }
                let point = to_vec(region.point(&prefix, e));
                let want = explicit_point(&prefix, &input, e);
                for (j, (&p, &w)) in point.iter().zip(&want).enumerate() {
                    assert!((p - w).abs() <= 1e-4 * (1.0 + w.abs()), "{name} latent {latent}: point {p} != a + A e = {w} at {j}");
                    assert!(p >= lo[j] - 1e-4 && p <= hi[j] + 1e-4, "{name} latent {latent}: point {p} outside the zonotope's box [{}, {}]", lo[j], hi[j]);
                }
            };
            let mut rng = SplitMix64::new(7);
            colt::attack(&prefix, &suffix, &region, &targets, 5, 0.3, &mut rng, &mut check);
            assert_eq!(steps, 6, "the start and each of the 5 steps are checked");
        }
    }
}

#[test]
fn the_latent_attack_raises_the_loss() {
    let net = mlp(9, &[6, 16, 12, 4]);
    let v = colt::latent_value(&net, 1).unwrap();
    let (prefix, suffix) = colt::split(&net, v).unwrap();
    let x = batch(&net, 8, 3);
    let input = input_region(&x, 0.3, Some((0.0, 1.0)));
    let region = Region::new(&prefix, &input, 0, 0).unwrap();
    let targets = one_hot(&[0, 1, 2, 3, 0, 1, 2, 3], 4, &dev());
    let loss = |e: &[Tensor<4>]| ironbound::loss::cross_entropy(suffix.forward(region.point(&prefix, e)), targets.clone()).into_scalar::<f32>();
    let start = region.random_noise(&prefix, &mut SplitMix64::new(4));
    let found = colt::attack(&prefix, &suffix, &region, &targets, 10, 0.25, &mut SplitMix64::new(4), &mut |_| {});
    assert!(loss(&found) > loss(&start), "PGD did not increase the loss: {} -> {}", loss(&start), loss(&found));
}

fn config(extra: &[(&str, &str)]) -> TrainConfig {
    let mut keys = vec![
        ("method", "\"colt\""),
        ("epochs", "3"),
        ("seed", "3"),
        ("colt_phase_epochs", "[1, 2]"),
        ("colt_pgd_steps", "3"),
        ("l1", "1e-5"),
        ("relu_stability", "0.01"),
    ];
    keys.extend_from_slice(extra);
    small_run(&keys)
}

fn train(name: &str, r: &Resolved, stops: &[usize]) -> Vec<Outcome> {
    let dir: PathBuf = std::env::temp_dir().join(format!("ironbound-colt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data: TrainData = batches::prepare(r, synthetic(64, 1, Split::Train), Some(synthetic(20, 2, Split::Test)));
    let mut outs = Vec::new();
    for &m in stops {
        outs.push(run(r, &data, &dir, &RunOptions { max_epochs_this_run: Some(m) }, &mut Silent).unwrap());
    }
    outs.push(run(r, &data, &dir, &RunOptions::default(), &mut Silent).unwrap());
    outs
}

fn params_of(net: &Network, nodes: std::ops::Range<usize>) -> Vec<(String, Vec<f32>)> {
    let names: Vec<String> = net.nodes()[nodes].iter().map(|n| format!("{}.", n.name)).collect();
    net.named_params().into_iter().filter(|(k, _)| names.iter().any(|p| k.starts_with(p))).map(|(k, p)| (k, p.to_vec())).collect()
}

#[test]
fn frozen_layers_stay_bit_identical_and_a_resume_at_the_phase_boundary_changes_nothing() {
    let r = config(&[]).resolve(&Sources::default()).unwrap();
    let plan = r.colt.clone().unwrap();
    assert_eq!(plan.phases.iter().map(|p| p.latent).collect::<Vec<_>>(), vec![0, 1], "fc-small: the input, then after its first ReLU");
    // Stopped after phase 0 (epoch 1), then resumed to the end.
    let outs = train("phases", &r, &[1]);
    let (after0, end) = (&outs[0], &outs[1]);
    assert!(end.completed);
    let v = colt::latent_value(&end.net, 1).unwrap();
    assert!(v > 0);
    assert!(!params_of(&end.net, 0..v).is_empty(), "the frozen layers have parameters");
    assert_eq!(params_of(&after0.net, 0..v), params_of(&end.net, 0..v), "phase 1 changed a layer before its latent layer");
    let n = end.net.nodes().len();
    assert_ne!(params_of(&after0.net, v..n), params_of(&end.net, v..n), "phase 1 trained nothing");
    // Phase 0 trains every layer.
    let init = r.arch.init(3, &dev()).unwrap();
    assert_ne!(params_of(&init, 0..v), params_of(&after0.net, 0..v));

    let phases: Vec<u64> = end.metrics.iter().map(|m| m.extra["colt_phase"].as_u64().unwrap()).collect();
    assert_eq!(phases, vec![1, 2, 2]);
    let eps: Vec<f64> = end.metrics.iter().map(|m| m.eps).collect();
    for (e, p) in eps.iter().zip(&phases) {
        let want = 0.05 * plan.phases[*p as usize - 1].eps_factor;
        assert!((e - want).abs() < 1e-12, "eps {e}, want {want}");
    }
    assert!(end.metrics.iter().all(|m| m.robust_loss.is_some_and(f64::is_finite)));
    // The ReLU-stability term acts on the next phase's latent layer: phase 0 only here.
    assert!(end.metrics[0].extra.contains_key("relu_stability_loss"));
    assert!(!end.metrics[2].extra.contains_key("relu_stability_loss"));

    let straight = train("straight", &r, &[]);
    let weights = |o: &Outcome| o.net.named_params().into_iter().map(|(k, p)| (k, p.to_vec())).collect::<Vec<_>>();
    assert_eq!(weights(&straight[0]), weights(end), "resuming at the phase boundary changed the model");
}

#[test]
fn the_relu_stability_weight_grows_by_its_factor_per_phase() {
    let weights = |extra: &[(&str, &str)]| {
        let plan = config(extra).resolve(&Sources::default()).unwrap().colt.unwrap();
        plan.phases.iter().map(|p| p.stability_weight).collect::<Vec<_>>()
    };
    assert_eq!(weights(&[]), [0.01, 0.01]);
    let grown = weights(&[("colt_stability_growth", "1.5")]);
    assert!((grown[0] - 0.01).abs() < 1e-15 && (grown[1] - 0.015).abs() < 1e-15, "{grown:?}");
}

#[test]
fn bad_colt_keys_are_errors_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("colt_layers", "[0, 3]")], "colt_layers"),
        (&[("colt_layers", "[1, 0]"), ("colt_phase_epochs", "[1, 2]")], "colt_layers"),
        (&[("colt_phase_epochs", "[1, 1]")], "colt_phase_epochs"),
        (&[("colt_eps_factors", "[1.0]")], "colt_eps_factors"),
        (&[("colt_pgd_step", "0.0")], "colt_pgd_step"),
        (&[("relu_stability", "-1.0")], "relu_stability"),
        (&[("colt_stability_growth", "0")], "colt_stability_growth"),
    ];
    for (extra, key) in cases {
        let e = config(extra).resolve(&Sources::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")) && !e.contains('\n'), "{extra:?}: {e}");
    }
    let mut c = config(&[]);
    c.set_str("method=\"ibp\"").unwrap();
    let e = c.resolve(&Sources::default()).unwrap_err().to_string();
    assert!(e.contains("`colt_phase_epochs`") && e.contains("colt"), "{e}");
}
