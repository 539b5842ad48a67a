//! A relaxation is a small value: how intermediate bounds are found, the ReLU lower line, and
//! how the final bound of the specification is computed. Every named method is a preset.

use super::slopes::SlopeRule;
use crate::error::{Error, Result};
use crate::net::ReluLower;
use std::fmt;
use std::str::FromStr;

/// How a set of bounds is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Interval arithmetic (the final pass folds the spec into the last layer).
    Interval,
    /// Back-substitution to the input through every layer.
    BackSubstitution,
    /// Zonotope propagation.
    Zonotope,
}

/// How the ReLU lower line is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LowerLine {
    Fixed(ReluLower),
    /// alpha-CROWN: slopes of the final pass optimised by Adam, starting from CROWN's.
    Optimised { iterations: usize, learning_rate: f64 },
    /// LAND's slopes: one per sample and neuron, drawn at random and optionally moved by
    /// sign-gradient steps of the robust loss (`slopes.rs`).
    Sampled(SlopeRule),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Relaxation {
    pub intermediate: Engine,
    pub final_pass: Engine,
    /// The lower line of the intermediate passes (ignored by the interval engine).
    pub intermediate_lower: ReluLower,
    /// The lower line of the final pass.
    pub final_lower: LowerLine,
    /// Float-sound arithmetic (`sound.rs`): the bounds hold for the real-valued network, not
    /// only for its float32 evaluation. Off in the presets and in training.
    pub sound: bool,
}

impl Relaxation {
    /// The same relaxation with its random slopes drawn from `seed` (deterministic ones do
    /// not change).
    pub fn with_seed(self, seed: u64) -> Relaxation {
        match self.final_lower {
            LowerLine::Sampled(rule) => Relaxation { final_lower: LowerLine::Sampled(SlopeRule { seed, ..rule }), ..self },
            _ => self,
        }
    }

    /// The same relaxation with float-sound arithmetic on or off.
    pub fn with_sound(self, sound: bool) -> Relaxation {
        Relaxation { sound, ..self }
    }

    /// Whether its bounds need the samples' labels (`Spec::labels`): slopes that descend the
    /// robust loss of the margins.
    pub fn needs_labels(&self) -> bool {
        self.final_pass == Engine::BackSubstitution && matches!(self.final_lower, LowerLine::Sampled(rule) if rule.needs_labels())
    }
}

/// The named methods of CONTRACT.md's Relaxations table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Ibp,
    Hbox,
    Deepz,
    Crown,
    Crown0,
    CrownIbp,
    CapIbp,
    AlphaCrown,
    OneStep,
    RandomSlope,
}

impl Method {
    pub const ALL: [Method; 10] = [
        Method::Ibp,
        Method::Hbox,
        Method::Deepz,
        Method::Crown,
        Method::Crown0,
        Method::CrownIbp,
        Method::CapIbp,
        Method::AlphaCrown,
        Method::OneStep,
        Method::RandomSlope,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Method::Ibp => "ibp",
            Method::Hbox => "hbox",
            Method::Deepz => "deepz",
            Method::Crown => "crown",
            Method::Crown0 => "crown-0",
            Method::CrownIbp => "crown-ibp",
            Method::CapIbp => "cap-ibp",
            Method::AlphaCrown => "alpha-crown",
            Method::OneStep => "one-step",
            Method::RandomSlope => "random-slope",
        }
    }

    fn aliases(&self) -> &'static [&'static str] {
        match self {
            Method::Ibp => &["box"],
            Method::Deepz => &["fast-lin", "cap", "zono"],
            Method::Crown => &["deeppoly"],
            Method::AlphaCrown => &["optimized"],
            Method::OneStep => &["optimized-slope"],
            _ => &[],
        }
    }

    /// Whether its bounds need the samples' labels (see [`Relaxation::needs_labels`]).
    pub fn needs_labels(&self) -> bool {
        self.relaxation().needs_labels()
    }

    /// The preset, with alpha-CROWN's defaults (20 Adam steps, learning rate 0.1) and seed 0
    /// for the random slopes ([`Relaxation::with_seed`]).
    pub fn relaxation(&self) -> Relaxation {
        use Engine::*;
        use ReluLower::*;
        let fixed = |intermediate, final_pass, lower| Relaxation {
            intermediate,
            final_pass,
            intermediate_lower: lower,
            final_lower: LowerLine::Fixed(lower),
            sound: false,
        };
        let sampled = |rule| Relaxation { intermediate: Interval, final_pass: BackSubstitution, intermediate_lower: Adaptive, final_lower: LowerLine::Sampled(rule), sound: false };
        match self {
            Method::Ibp => fixed(Interval, Interval, Box),
            // hBox is defined on hybrid zonotopes; back-substitution with box lines gives the
            // same bounds (tests/bounds_identities.rs) at a fraction of the cost.
            Method::Hbox => fixed(BackSubstitution, BackSubstitution, Box),
            Method::Deepz => fixed(BackSubstitution, BackSubstitution, Parallel),
            Method::Crown => fixed(BackSubstitution, BackSubstitution, Adaptive),
            Method::Crown0 => fixed(BackSubstitution, BackSubstitution, Zero),
            Method::CrownIbp => fixed(Interval, BackSubstitution, Adaptive),
            Method::CapIbp => fixed(Interval, BackSubstitution, Parallel),
            Method::AlphaCrown => Relaxation {
                intermediate: BackSubstitution,
                final_pass: BackSubstitution,
                intermediate_lower: Adaptive,
                final_lower: LowerLine::Optimised { iterations: 20, learning_rate: 0.1 },
                sound: false,
            },
            // LAND: IBP intermediate bounds, per-sample slopes in the final pass.
            Method::OneStep => sampled(SlopeRule::one_step()),
            Method::RandomSlope => sampled(SlopeRule::random()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == key || m.aliases().contains(&key.as_str()))
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                Error::input(format!("unknown method '{s}' (known: {})", names.join(", ")))
            })
    }
}

/// Parses a comma-separated list of methods.
pub fn parse_methods(list: &str) -> Result<Vec<Method>> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect()
}
