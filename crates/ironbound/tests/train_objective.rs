//! Training objectives and optimiser additions: every method gives a finite differentiable
//! loss, the beta mixture and the spec kinds relate as they should, gradient scaling and
//! optimiser-state restoration are exact.

use ironbound::bounds::Method;
use ironbound::loss::one_hot;
use ironbound::net::{arch, init::SplitMix64, Network};
use ironbound::tensor::{default_device, from_vec, Tensor};
use ironbound::train::config::{SpecKind, TrainMethod};
use ironbound::train::objective::Objective;
use ironbound::train::{Optimizer, OptimizerKind};

fn setup() -> (Network, Tensor<4>, Vec<usize>, Tensor<2>) {
    let dev = default_device();
    let net = arch::named("crown-ibp-a", [1, 28, 28]).unwrap().init(3, &dev).unwrap();
    let mut rng = SplitMix64::new(9);
    let x = from_vec(rng.uniforms(6 * 784), [6, 1, 28, 28], &dev);
    let y: Vec<usize> = (0..6).map(|i| (i * 7) % 10).collect();
    let t = one_hot(&y, 10, &dev);
    (net, x, y, t)
}

fn objective(method: TrainMethod, spec: SpecKind) -> Objective {
    Objective { method, spec, l1: 0.0, pgd_steps: 3, pgd_step_fraction: 0.25, projections: 0, slopes: None, stability: None }
}

fn robust(method: TrainMethod, spec: SpecKind, beta: f64) -> f32 {
    let (net, x, y, t) = setup();
    objective(method, spec).robust(&net, &net, &x, &y, &t, 0.05, beta, 1).unwrap().into_scalar()
}

#[test]
fn every_method_gives_a_finite_loss_with_gradients() {
    let methods = [
        TrainMethod::Natural,
        TrainMethod::Pgd,
        TrainMethod::Bound(Method::Ibp),
        TrainMethod::Bound(Method::Hbox),
        TrainMethod::Bound(Method::Deepz),
        TrainMethod::Bound(Method::Crown),
        TrainMethod::Bound(Method::Crown0),
        TrainMethod::Bound(Method::CrownIbp),
        TrainMethod::Bound(Method::CapIbp),
    ];
    for m in methods {
        for spec in [SpecKind::Diffs, SpecKind::Eye] {
            let (net, x, y, t) = setup();
            let mut opt = Optimizer::new(OptimizerKind::adam(), 1e-3, 0.0);
            let tracked = opt.track(&net);
            let obj = Objective { l1: 1e-4, ..objective(m, spec) };
            let parts = obj.loss(&tracked, &net, &x, &y, &t, 0.05, 0.5, 0.5, false, 4).unwrap();
            let v: f32 = parts.total.clone().into_scalar();
            assert!(v.is_finite() && v > 0.0, "{m} {spec:?}: {v}");
            assert_eq!(parts.robust.is_some(), m != TrainMethod::Natural, "{m}");
            let grads = parts.total.backward();
            let norm = opt.grad_norm(&tracked, &grads);
            assert!(norm.is_finite() && norm > 0.0, "{m} {spec:?}: gradient norm {norm}");
            let next = opt.step(&tracked, &grads).unwrap();
            assert_eq!(next.named_params().len(), net.named_params().len());
        }
    }
}

#[test]
fn beta_mixes_ibp_and_crown_ibp() {
    let ibp = robust(TrainMethod::Bound(Method::Ibp), SpecKind::Diffs, 0.0);
    let cibp = TrainMethod::Bound(Method::CrownIbp);
    assert!((robust(cibp, SpecKind::Diffs, 0.0) - ibp).abs() < 1e-5);
    let pure = robust(cibp, SpecKind::Diffs, 1.0);
    let half = robust(cibp, SpecKind::Diffs, 0.5);
    // The loss is convex in the bound, so the mixture's loss lies below the mean of the ends.
    assert!(half <= 0.5 * (ibp + pure) + 1e-5, "{half} vs {ibp} {pure}");
    assert!(half >= ibp.min(pure) - 1e-5);
}

#[test]
fn elided_margins_are_tighter_than_logit_bounds() {
    for m in [Method::Ibp, Method::Crown, Method::Deepz] {
        let diffs = robust(TrainMethod::Bound(m), SpecKind::Diffs, 1.0);
        let eye = robust(TrainMethod::Bound(m), SpecKind::Eye, 1.0);
        assert!(diffs <= eye + 1e-5, "{m}: {diffs} > {eye}");
    }
}

#[test]
fn warmup_and_kappa_one_use_the_natural_loss_only() {
    let (net, x, y, t) = setup();
    let obj = objective(TrainMethod::Bound(Method::Ibp), SpecKind::Diffs);
    for (kappa, warmup) in [(0.0, true), (1.0, false)] {
        let p = obj.loss(&net, &net, &x, &y, &t, 0.1, kappa, 1.0, warmup, 0).unwrap();
        assert!(p.robust.is_none());
        assert_eq!(p.total.into_scalar::<f32>(), p.natural.into_scalar::<f32>());
    }
    let p = obj.loss(&net, &net, &x, &y, &t, 0.1, 0.25, 1.0, false, 0).unwrap();
    let (tot, nat, rob): (f32, f32, f32) = (p.total.into_scalar(), p.natural.into_scalar(), p.robust.unwrap().into_scalar());
    assert!((tot - (0.25 * nat + 0.75 * rob)).abs() < 1e-5);
}

fn weights(net: &Network) -> Vec<f32> {
    net.named_params().into_iter().flat_map(|(_, p)| p.to_vec()).collect()
}

#[test]
fn scaled_step_equals_a_smaller_sgd_step() {
    let (net, x, _, t) = setup();
    let run = |lr: f64, scale: f64| {
        let mut opt = Optimizer::new(OptimizerKind::Sgd { momentum: 0.0 }, lr, 0.0);
        let tracked = opt.track(&net);
        let loss = ironbound::loss::cross_entropy(tracked.forward(x.clone()), t.clone());
        let grads = loss.backward();
        weights(&opt.step_scaled(&tracked, &grads, scale).unwrap())
    };
    let (a, b) = (run(0.1, 0.25), run(0.025, 1.0));
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-6);
    }
}

#[test]
fn restored_adam_state_continues_exactly() {
    let (net, x, _, t) = setup();
    let step = |opt: &mut Optimizer, net: &Network| {
        let tracked = opt.track(net);
        let grads = ironbound::loss::cross_entropy(tracked.forward(x.clone()), t.clone()).backward();
        opt.step(&tracked, &grads).unwrap()
    };
    let mut a = Optimizer::new(OptimizerKind::adam(), 1e-3, 1e-4);
    let n1 = step(&mut a, &net);
    let n1 = step(&mut a, &n1);
    let (m, v) = a.state();
    let mut b = Optimizer::new(OptimizerKind::adam(), 1e-3, 1e-4);
    b.restore_state(&n1, m, v, a.steps).unwrap();
    assert_eq!(weights(&step(&mut a, &n1)), weights(&step(&mut b, &n1)));
}

#[test]
fn projected_losses_estimate_the_exact_ones_and_carry_gradients() {
    for m in [Method::Deepz, Method::Hbox] {
        let exact = robust(TrainMethod::Bound(m), SpecKind::Diffs, 1.0);
        let (net, x, y, t) = setup();
        let opt = Optimizer::new(OptimizerKind::adam(), 1e-3, 0.0);
        let tracked = opt.track(&net);
        let obj = Objective { projections: 2001, ..objective(TrainMethod::Bound(m), SpecKind::Diffs) };
        let est = obj.robust(&tracked, &net, &x, &y, &t, 0.05, 1.0, 1).unwrap();
        let v: f32 = est.clone().into_scalar();
        assert!((v - exact).abs() <= 0.1 * exact, "{m}: estimated {v}, exact {exact}");
        let norm = opt.grad_norm(&tracked, &est.backward());
        assert!(norm.is_finite() && norm > 0.0, "{m}: gradient norm {norm}");
    }
}
