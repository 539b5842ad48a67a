//! Schedules of certified training, as pure functions of the global step (0-based batch
//! count over the whole run) or of the epoch, so that a resumed run recomputes them exactly.
//!
//! - Warm-up: the first `warmup` epochs (or steps) train naturally (no robust loss).
//! - Ramp-up: over the next `rampup` epochs (or steps), eps grows from `eps_start` to `eps_train` (linear,
//!   or the smoothed schedule of Shi et al. 2021), kappa moves linearly from `kappa_start` to
//!   `kappa_end` and beta from `beta_start` to `beta_end` (CROWN-IBP, Zhang et al. 2020).
//! - Afterwards every value stays at its end value.
//! - The learning rate: constant, divided at milestones (epochs or steps), or multiplied by a
//!   factor every k epochs.

use serde::{Deserialize, Serialize};

/// How eps grows during the ramp-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RampShape {
    /// eps grows linearly per batch (CROWN-IBP, Gowal et al.).
    #[default]
    Linear,
    /// Polynomial growth `alpha * t^power` up to `mid` of the ramp, then linear with a matching
    /// slope: auto_LiRPA's `SmoothedScheduler` (Shi et al. 2021, "Fast certified robust
    /// training with short warmup").
    Smoothed,
}

/// The per-step values the objective needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepValues {
    /// True during warm-up: natural training only.
    pub warmup: bool,
    pub eps: f64,
    pub kappa: f64,
    pub beta: f64,
}

/// A length of the warm-up or the ramp-up: whole epochs, or optimiser steps (Gowal et al.
/// count a warm-up of 2K and a ramp-up of 10K steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Epochs(usize),
    Steps(usize),
}

impl Span {
    pub fn steps(self, steps_per_epoch: usize) -> u64 {
        match self {
            // Saturating: `epochs` comes from the user and may be absurd (2^63).
            Span::Epochs(e) => (e as u64).saturating_mul(steps_per_epoch as u64),
            Span::Steps(s) => s as u64,
        }
    }
}

/// eps, kappa and beta over the run.
#[derive(Clone, Debug, PartialEq)]
pub struct RampSchedule {
    pub warmup_steps: u64,
    pub rampup_steps: u64,
    pub shape: RampShape,
    pub eps_start: f64,
    pub eps_end: f64,
    pub kappa_start: f64,
    pub kappa_end: f64,
    pub beta_start: f64,
    pub beta_end: f64,
    /// Smoothed schedule: fraction of the ramp spent in the polynomial phase (default 0.25).
    pub smoothed_mid: f64,
    /// Smoothed schedule: exponent of the polynomial phase (auto_LiRPA's `beta`, default 4).
    pub smoothed_power: f64,
}

impl RampSchedule {
    fn init_step(&self) -> u64 {
        self.warmup_steps
    }

    fn final_step(&self) -> u64 {
        self.warmup_steps + self.rampup_steps
    }

    /// Linear progress through the ramp in [0, 1] at global step `step`.
    pub fn progress(&self, step: u64) -> f64 {
        let (a, b) = (self.init_step(), self.final_step());
        if step >= b {
            1.0
        } else if step <= a {
            0.0
        } else {
            (step - a) as f64 / (b - a) as f64
        }
    }

    /// eps at global step `step` (`eps_start` during warm-up and at the first ramp step).
    pub fn eps(&self, step: u64) -> f64 {
        let (init, fin) = (self.eps_start, self.eps_end);
        let (a, b) = (self.init_step(), self.final_step());
        if step >= b {
            return fin;
        }
        if step <= a {
            return init;
        }
        match self.shape {
            RampShape::Linear => init + (fin - init) * self.progress(step),
            RampShape::Smoothed => {
                // auto_LiRPA SmoothedScheduler.step_batch, with step counted from 0.
                let mid = ((b - a) as f64 * self.smoothed_mid).floor() as u64 + a;
                if mid <= a || mid >= b {
                    return init + (fin - init) * self.progress(step);
                }
                let beta = self.smoothed_power;
                let t = ((mid - a) as f64).powf(beta - 1.0);
                let alpha = (fin - init) / ((b - mid) as f64 * beta * t + (mid - a) as f64 * t);
                let mid_value = init + alpha * ((mid - a) as f64).powf(beta);
                if step >= mid {
                    (mid_value + (fin - mid_value) * (step - mid) as f64 / (b - mid) as f64).min(fin)
                } else {
                    init + alpha * ((step - a) as f64).powf(beta)
                }
            }
        }
    }

    pub fn at(&self, step: u64) -> StepValues {
        let p = self.progress(step);
        StepValues {
            warmup: step < self.init_step(),
            eps: self.eps(step),
            kappa: self.kappa_start + (self.kappa_end - self.kappa_start) * p,
            beta: self.beta_start + (self.beta_end - self.beta_start) * p,
        }
    }
}

/// Learning-rate schedule kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrKind {
    #[default]
    Constant,
    /// Multiply by `decay` at each epoch (or step) listed in `milestones` (PyTorch `MultiStepLR`).
    Milestones,
    /// Multiply by `decay` every `step` epochs from epoch `start` on (PyTorch `StepLR`).
    Step,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub kind: LrKind,
    pub base: f64,
    pub decay: f64,
    pub milestones: Vec<usize>,
    /// The milestones count optimiser steps, not epochs.
    pub milestones_in_steps: bool,
    pub step: usize,
    pub start: usize,
}

impl LrSchedule {
    /// Learning rate of global step `step` (0-based) in 0-based epoch `epoch`.
    pub fn at(&self, epoch: usize, step: u64) -> f64 {
        let times = match self.kind {
            LrKind::Constant => 0,
            LrKind::Milestones => {
                let now = if self.milestones_in_steps { step } else { epoch as u64 };
                self.milestones.iter().filter(|&&m| m as u64 <= now).count()
            }
            LrKind::Step if self.step > 0 && epoch >= self.start => (epoch - self.start) / self.step,
            LrKind::Step => 0,
        };
        self.base * self.decay.powi(times as i32)
    }
}

/// The weights of the tightness regularizers d and r over the run: 0 until `start_step` (the
/// end of the warm-up), then growing linearly per step to their values over `rampup_steps`
/// (Zhu et al. warm them up from 0 over the first 20 epochs), then constant.
#[derive(Clone, Debug, PartialEq)]
pub struct RegSchedule {
    pub start_step: u64,
    pub rampup_steps: u64,
    pub d_weight: f64,
    pub r_weight: f64,
}

impl RegSchedule {
    /// The fraction of the full weights at global step `step`.
    pub fn factor(&self, step: u64) -> f64 {
        if step >= self.start_step.saturating_add(self.rampup_steps) {
            1.0
        } else if step <= self.start_step {
            0.0
        } else {
            (step - self.start_step) as f64 / self.rampup_steps as f64
        }
    }

    /// `(lambda, gamma)` at global step `step`.
    pub fn at(&self, step: u64) -> (f64, f64) {
        let f = self.factor(step);
        (self.d_weight * f, self.r_weight * f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: RampShape) -> RampSchedule {
        RampSchedule {
            warmup_steps: Span::Epochs(2).steps(10),
            rampup_steps: Span::Epochs(4).steps(10),
            shape,
            eps_start: 0.0,
            eps_end: 0.3,
            kappa_start: 1.0,
            kappa_end: 0.0,
            beta_start: 1.0,
            beta_end: 0.0,
            smoothed_mid: 0.25,
            smoothed_power: 4.0,
        }
    }

    #[test]
    fn linear_ramp() {
        let r = ramp(RampShape::Linear);
        assert!(r.at(0).warmup && r.at(19).warmup && !r.at(20).warmup);
        assert_eq!(r.eps(20), 0.0);
        assert!((r.eps(40) - 0.15).abs() < 1e-12);
        assert_eq!(r.eps(60), 0.3);
        assert_eq!(r.eps(1000), 0.3);
        let v = r.at(30);
        assert!((v.kappa - 0.75).abs() < 1e-12 && (v.beta - 0.75).abs() < 1e-12);
        assert_eq!(r.at(70).kappa, 0.0);
    }

    #[test]
    fn step_spans_start_and_end_mid_epoch() {
        // Gowal et al.'s MNIST schedule at 600 steps per epoch: 2K warm-up, 10K ramp-up steps.
        let r = RampSchedule { warmup_steps: Span::Steps(2000).steps(600), rampup_steps: Span::Steps(10_000).steps(600), ..ramp(RampShape::Linear) };
        assert!(r.at(1999).warmup && !r.at(2000).warmup);
        assert!((r.eps(7000) - 0.15).abs() < 1e-12);
        assert_eq!(r.eps(12_000), 0.3);
        assert!(r.eps(11_999) < 0.3);
    }

    #[test]
    fn smoothed_ramp_is_monotone_continuous_and_reaches_the_end() {
        let r = ramp(RampShape::Smoothed);
        let mut prev = 0.0;
        for s in 0..=70 {
            let e = r.eps(s);
            assert!(e >= prev - 1e-12 && e <= 0.3 + 1e-12, "step {s}: {e}");
            // The slope never exceeds that of the final linear phase ((0.3 - mid value) / 30).
            assert!(e - prev <= 0.3 / 30.0, "jump at {s}");
            prev = e;
        }
        assert_eq!(r.eps(60), 0.3);
        // Slower than linear early in the ramp.
        assert!(r.eps(25) < ramp(RampShape::Linear).eps(25));
    }

    #[test]
    fn regularizer_weights_grow_from_zero_after_the_warm_up() {
        let r = RegSchedule { start_step: 20, rampup_steps: 40, d_weight: 2e-3, r_weight: 1.0 };
        assert_eq!(r.at(0), (0.0, 0.0));
        assert_eq!(r.at(20), (0.0, 0.0));
        let (d, g) = r.at(30);
        assert!((d - 5e-4).abs() < 1e-15 && (g - 0.25).abs() < 1e-15);
        assert_eq!(r.at(60), (2e-3, 1.0));
        assert_eq!(r.at(10_000), (2e-3, 1.0));
        // No ramp-up: full weights from the first step after the warm-up.
        let now = RegSchedule { rampup_steps: 0, ..r };
        assert_eq!((now.at(19), now.at(20)), ((0.0, 0.0), (2e-3, 1.0)));
    }

    #[test]
    fn lr_schedules() {
        let m = LrSchedule { kind: LrKind::Milestones, base: 1.0, decay: 0.1, milestones: vec![130, 190], milestones_in_steps: false, step: 0, start: 0 };
        assert_eq!(m.at(129, 99_999), 1.0);
        assert!((m.at(130, 0) - 0.1).abs() < 1e-12);
        assert!((m.at(199, 0) - 0.01).abs() < 1e-12);
        // Gowal et al.: x0.1 at steps 15K and 25K, whatever the epoch.
        let m = LrSchedule { milestones: vec![15_000, 25_000], milestones_in_steps: true, ..m };
        assert_eq!(m.at(24, 14_999), 1.0);
        assert!((m.at(24, 15_000) - 0.1).abs() < 1e-12);
        assert!((m.at(41, 25_000) - 0.01).abs() < 1e-12);
        let s = LrSchedule { kind: LrKind::Step, base: 1.0, decay: 0.5, milestones: vec![], milestones_in_steps: false, step: 20, start: 0 };
        assert_eq!(s.at(19, 0), 1.0);
        assert_eq!(s.at(20, 0), 0.5);
        assert_eq!(s.at(45, 0), 0.25);
    }
}
