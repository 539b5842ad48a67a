//! The loss-landscape paper's training options: one-step and random-slope as training losses
//! (mixed with IBP by beta, Eq. 7), the slope-choice and unstable-ReLU ratios in metrics.jsonl,
//! the ReLU-stability term against its closed form, a resumed one-step run equal to an
//! uninterrupted one, and bad slope keys as one-line errors naming the key.

mod common;

use common::{dev, mlp, small_run, synthetic};
use ironbound::bounds::Interval;
use ironbound::data::Split;
use ironbound::tensor::from_vec;
use ironbound::train::batches::{self, TrainData};
use ironbound::train::land::{stability_loss, StabilityForm};
use ironbound::train::{run, Outcome, Resolved, RunOptions, Silent, Sources, TrainConfig};

#[test]
fn relu_stability_matches_its_closed_form() {
    // One ReLU layer of 3 neurons, 2 samples: value 1 is its input.
    let net = mlp(1, &[2, 3, 2]);
    let lo = [-1.0f32, 0.5, -2.0, -0.25, -3.0, 1.0];
    let hi = [2.0f32, 1.0, -1.0, 0.75, 0.5, 2.0];
    let t = |v: &[f32]| from_vec(v.to_vec(), [2, 3, 1, 1], &dev());
    let bounds = vec![None, Some(Interval::new(t(&lo), t(&hi))), None, None];
    let (mut tanh, mut product) = (0.0f64, 0.0f64);
    for s in 0..2 {
        for j in 0..3 {
            let (l, u) = (f64::from(lo[3 * s + j]), f64::from(hi[3 * s + j]));
            tanh += -(1.0 + l * u).tanh() / 3.0 / 2.0;
            product += l.min(0.0).abs() * u.max(0.0) / 2.0;
        }
    }
    let got = |form| f64::from(stability_loss(&net, &bounds, form).unwrap().into_scalar::<f32>());
    assert!((got(StabilityForm::Tanh) - tanh).abs() < 1e-6, "{} vs {tanh}", got(StabilityForm::Tanh));
    assert!((got(StabilityForm::Product) - product).abs() < 1e-6, "{} vs {product}", got(StabilityForm::Product));
    // Stable neurons cost nothing in the product form.
    assert!((product - (2.0 * 1.0 / 2.0 + 0.25 * 0.75 / 2.0 + 3.0 * 0.5 / 2.0)).abs() < 1e-12);
}

fn config(method: &str, extra: &[(&str, &str)]) -> TrainConfig {
    let quoted = format!("\"{method}\"");
    let mut keys = vec![("method", quoted.as_str()), ("epochs", "3"), ("seed", "5"), ("warmup_epochs", "1"), ("rampup_epochs", "1")];
    keys.extend_from_slice(extra);
    small_run(&keys)
}

fn train(name: &str, r: &Resolved, stop: Option<usize>) -> Outcome {
    let dir = std::env::temp_dir().join(format!("ironbound-land-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data: TrainData = batches::prepare(r, synthetic(64, 1, Split::Train), Some(synthetic(20, 2, Split::Test)));
    if let Some(m) = stop {
        run(r, &data, &dir, &RunOptions { max_epochs_this_run: Some(m) }, &mut Silent).unwrap();
    }
    run(r, &data, &dir, &RunOptions::default(), &mut Silent).unwrap()
}

#[test]
fn one_step_training_logs_its_slope_choices_and_resumes_exactly() {
    let r = config("one-step", &[("relu_stability", "0.01")]).resolve(&Sources::default()).unwrap();
    // Eq. 7 mixes with IBP by beta; LAND's Table 1 keeps beta at 1.
    assert_eq!((r.beta_start, r.beta_end), (1.0, 1.0));
    assert_eq!(r.certify_method.name(), "one-step");
    let out = train("one-step", &r, None);
    assert!(out.completed);
    assert!(!out.metrics[0].extra.contains_key("slopes_unstable_ratio"), "slopes measured during the warm-up");
    for m in &out.metrics[1..] {
        let share = |k: &str| m.extra[k].as_f64().unwrap_or_else(|| panic!("{k} missing in epoch {}", m.epoch));
        let parts = ["slopes_one_l_wider", "slopes_zero_l_wider", "slopes_one_u_wider", "slopes_zero_u_wider", "slopes_fractional"];
        let sum: f64 = parts.iter().map(|k| share(k)).sum();
        assert!((sum - 1.0).abs() < 1e-9, "the shares of the unstable neurons sum to {sum}");
        assert!((0.0..=1.0).contains(&share("slopes_unstable_ratio")) && share("slopes_unstable_ratio") > 0.0);
        // One step of size >= 1 makes slopes binary wherever the gradient is non-zero.
        assert!(share("slopes_fractional") < 0.5, "most slopes should have moved: {}", share("slopes_fractional"));
        assert!(m.extra["relu_stability_loss"].as_f64().is_some_and(f64::is_finite));
        assert_eq!(m.beta, Some(1.0));
    }
    let resumed = train("one-step-resumed", &r, Some(2));
    let w = |o: &Outcome| o.net.named_params().into_iter().map(|(k, p)| (k, p.to_vec())).collect::<Vec<_>>();
    assert_eq!(w(&out), w(&resumed), "a resumed one-step run differs from an uninterrupted one");
}

#[test]
fn random_slope_p_q_and_multi_step_variants_train() {
    for extra in [&[("slope_p", "0.2"), ("slope_q", "0.9")][..], &[("slope_steps", "7"), ("slope_step_size", "0.1")][..]] {
        let r = config("random-slope", extra).resolve(&Sources::default()).unwrap();
        assert!(r.slopes.is_some());
        let out = train(&format!("random-{}", extra[0].0), &r, None);
        assert!(out.metrics.iter().all(|m| m.loss.is_finite()));
        let frac = out.metrics[2].extra["slopes_fractional"].as_f64().unwrap();
        if extra[0].0 == "slope_p" {
            // Binary starts and no step: no slope strictly between 0 and 1.
            assert_eq!(frac, 0.0);
        }
    }
}

#[test]
fn bad_slope_keys_are_errors_naming_the_key() {
    let cases: [(&str, &[(&str, &str)], &str); 5] = [
        ("one-step", &[("slope_p", "1.5"), ("slope_q", "0.5")], "slope_p"),
        ("one-step", &[("slope_q", "-0.1"), ("slope_p", "0.5")], "slope_q"),
        ("one-step", &[("slope_p", "0.5")], "slope_p"),
        ("crown", &[("slope_steps", "3")], "slope_steps"),
        ("random-slope", &[("slope_steps", "3")], "slope_steps"),
    ];
    for (method, extra, key) in cases {
        let e = config(method, extra).resolve(&Sources::default()).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")) && !e.contains('\n'), "{method} {extra:?}: {e}");
    }
}
