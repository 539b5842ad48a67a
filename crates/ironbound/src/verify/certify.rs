//! Certification of a dataset: clean accuracy, certified accuracy per method, and PGD
//! accuracy, over the l-infinity ball of radius eps (clipped to the data range).
//!
//! Every method gives each sample an `Outcome`. Bound relaxations and LPs certify or leave a
//! sample open; the MILP can also falsify it (a counterexample the real network's forward pass
//! confirmed) or run out of its per-sample time. A misclassified clean input is its own
//! counterexample, so it counts as falsified for every method.

use super::lp::{self, milp, LpRelaxation, StageBounds, Stages, Verdict};
use super::method::CertMethod;
use super::pgd::{self, PgdConfig};
use super::shard::{ReportShard, Shard};
use crate::bounds::{input_region, lower_bound, sound, Interval, Method, Spec};
use crate::error::{Error, Result};
use crate::loss::predictions;
use crate::net::Network;
use crate::tensor::{from_vec, to_vec, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct CertifyConfig {
    pub eps: f64,
    pub methods: Vec<CertMethod>,
    pub batch_size: usize,
    pub pgd: Option<PgdConfig>,
    /// The input domain the ball is intersected with ([0, 1] for images).
    pub clip: Option<(f64, f64)>,
    /// Per-sample time budget of the solver-based methods (MILP stages, LP tightening).
    pub timeout: Duration,
    /// Seed of the random slopes (`one-step`, `random-slope`); each sample's slopes come from
    /// (seed, its index in the data), so they do not depend on the batch size or the shard.
    pub seed: u64,
    /// Float-sound bounds (`bounds/sound.rs`): certificates hold for the real-valued network
    /// the float32 weights define, over the region with the exact decimal eps and clip. On by
    /// default; `certify --fast` turns it off.
    pub sound: bool,
}

/// The default per-sample budget of solver-based methods.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl CertifyConfig {
    /// `ironbound certify`'s defaults for everything but the radius and the methods, so that
    /// callers name only what they change (`CertifyConfig { pgd, ..CertifyConfig::new(..) }`).
    pub fn new(eps: f64, methods: Vec<CertMethod>) -> CertifyConfig {
        CertifyConfig { eps, methods, batch_size: 100, pgd: None, clip: Some((0.0, 1.0)), timeout: DEFAULT_TIMEOUT, seed: 0, sound: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Certified,
    Falsified,
    TimedOut,
    /// Not certified, not refuted.
    Unknown,
}

/// How many samples ended each way.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub certified: usize,
    pub falsified: usize,
    pub timed_out: usize,
    pub unknown: usize,
}

impl Counts {
    fn of(outcomes: &[Outcome]) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o {
                Outcome::Certified => c.certified += 1,
                Outcome::Falsified => c.falsified += 1,
                Outcome::TimedOut => c.timed_out += 1,
                Outcome::Unknown => c.unknown += 1,
            }
        }
        c
    }
}

/// One stage of a cascade and the samples it decided.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StageCount {
    pub method: String,
    pub certified: usize,
    pub falsified: usize,
}

/// `report.json` of `ironbound certify` (CONTRACT.md keys first, then extras). It reads back
/// (for `merge`) refusing unknown keys, so a merge never drops what it does not know.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub n: usize,
    pub eps: f64,
    pub clean_accuracy: f64,
    pub certified_accuracy: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgd_accuracy: Option<f64>,
    /// Whether every certificate in the report is float-sound: computed in float-sound mode
    /// by methods that have one (the bound engines; not yet the LP and MILP solvers, whose
    /// answers carry the solver's tolerances). Reports written before the key existed read
    /// back as false.
    #[serde(default)]
    pub sound: bool,
    /// Per method: certified / falsified / timed out / unknown sample counts.
    pub outcomes: BTreeMap<String, Counts>,
    /// Per cascade: what each of its stages decided, in order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cascade_stages: BTreeMap<String, Vec<StageCount>>,
    /// Samples some method certified although PGD broke them: always 0 unless a bound is wrong.
    pub soundness_conflicts: usize,
    /// Wall-clock seconds spent per method.
    pub seconds: BTreeMap<String, f64>,
    pub clip: Option<(f64, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Only in a `--shard` run's report: where its samples lie and their counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ReportShard>,
}

/// A fraction of `n` samples, as every report computes it (merged shards included, so that
/// they give the same bits).
pub fn accuracy(count: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        count as f64 / n as f64
    }
}

/// Per-sample results, for callers that want more than the accuracies.
#[derive(Clone, Debug, Default)]
pub struct SampleResults {
    pub correct: Vec<bool>,
    pub outcomes: BTreeMap<String, Vec<Outcome>>,
    pub pgd_robust: Option<Vec<bool>>,
}

/// Checks eps and returns it.
pub fn check_eps(eps: f64) -> Result<f64> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(Error::input(format!("eps must be a finite number >= 0, got {eps}")));
    }
    Ok(eps)
}

/// The samples one method works on: a subset of a batch, with their labels.
struct Samples<'a> {
    net: &'a Network,
    stages: Option<&'a Stages>,
    x: Tensor<4>,
    labels: Vec<usize>,
    /// Each sample's index in the data (the key of its random slopes).
    indices: Vec<u64>,
    /// The ball rounded to nearest: attacks and counterexamples stay in it.
    region: Interval,
    /// The ball the bound engines work on: rounded outwards in float-sound mode.
    bound_region: Interval,
}

impl<'a> Samples<'a> {
    fn new(net: &'a Network, stages: Option<&'a Stages>, x: Tensor<4>, labels: Vec<usize>, indices: Vec<u64>, cfg: &CertifyConfig) -> Samples<'a> {
        let region = input_region(&x, cfg.eps, cfg.clip);
        let bound_region = if cfg.sound { sound::input_region(&x, cfg.eps, cfg.clip) } else { region.clone() };
        Samples { net, stages, x, labels, indices, region, bound_region }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn subset(&self, keep: &[usize], cfg: &CertifyConfig) -> Samples<'a> {
        let device = self.x.device();
        let idx = Tensor::<1, crate::tensor::Int>::from_data(crate::tensor::TensorData::new(keep.iter().map(|&i| i as i64).collect::<Vec<_>>(), [keep.len()]), &device);
        let x = self.x.clone().select(0, idx);
        Samples::new(self.net, self.stages, x, keep.iter().map(|&i| self.labels[i]).collect(), keep.iter().map(|&i| self.indices[i]).collect(), cfg)
    }

    fn stages(&self, method: &CertMethod) -> Result<&'a Stages> {
        self.stages.ok_or_else(|| Error::internal(format!("{method} needs the network's LP stages")))
    }
}

/// Certified or open, from elided margin lower bounds `[N, K-1]`.
fn from_margins(lb: Tensor<2>) -> Vec<Outcome> {
    let [n, r] = lb.dims();
    let v = to_vec(lb);
    (0..n).map(|i| if v[i * r..(i + 1) * r].iter().all(|&b| b > 0.0) { Outcome::Certified } else { Outcome::Unknown }).collect()
}

/// PGD steps that look for counterexamples before an LP is solved (`lp_outcomes`).
const LP_PREFILTER_PGD_STEPS: usize = 20;

/// LP certification of the samples, cheap answers first. A sample that CROWN or DeepZ
/// certifies is certified by Triangle as well (Triangle's bounds take theirs as a floor), and
/// a sample PGD misleads (a misclassified point inside the ball, checked by the forward pass)
/// cannot be certified by any sound method: neither needs the LP, whose layer-by-layer
/// tightening can take the whole `--timeout` per sample on a CONV network. The certified set
/// is what the LP on every sample gives; PGD's samples count as falsified rather than open.
fn lp_outcomes(s: &Samples, relaxation: LpRelaxation, method: &CertMethod, cfg: &CertifyConfig) -> Result<Vec<Outcome>> {
    let k = s.net.num_outputs();
    let mut result = vec![Outcome::Unknown; s.len()];
    if relaxation == LpRelaxation::Triangle {
        let spec = Spec::margins(&s.labels, k, &s.x.device())?;
        for floor in [Method::Crown, Method::Deepz] {
            let got = from_margins(lower_bound(s.net, &s.bound_region, &spec, &floor.relaxation().with_sound(cfg.sound))?);
            for (r, g) in result.iter_mut().zip(got) {
                if g == Outcome::Certified {
                    *r = g;
                }
            }
        }
    }
    // Only the samples still open are attacked, and only those PGD leaves open get an LP.
    let mut open: Vec<usize> = (0..s.len()).filter(|&i| result[i] == Outcome::Unknown).collect();
    if open.is_empty() {
        return Ok(result);
    }
    let attacked = s.subset(&open, cfg);
    let robust = pgd::robust(attacked.net, &attacked.x, &attacked.labels, &attacked.region, cfg.eps, &PgdConfig { seed: cfg.seed, ..PgdConfig::new(LP_PREFILTER_PGD_STEPS) });
    for (&i, robust) in open.iter().zip(&robust) {
        if !robust {
            result[i] = Outcome::Falsified;
        }
    }
    open.retain(|&i| result[i] == Outcome::Unknown);
    if open.is_empty() {
        return Ok(result);
    }
    let sub = s.subset(&open, cfg);
    let spec = Spec::margins(&sub.labels, k, &sub.x.device())?.with_indices(sub.indices.clone());
    let got = from_margins(lp::lower_bound(sub.net, sub.stages(method)?, &sub.bound_region, &spec, relaxation, cfg.sound, Some(cfg.timeout))?);
    for (&i, g) in open.iter().zip(got) {
        result[i] = g;
    }
    Ok(result)
}

/// Which ReLUs a MILP stage makes exact.
fn exact_policy(method: &CertMethod, stages: &Stages) -> Box<dyn Fn(&[StageBounds]) -> Vec<Vec<bool>> + Sync> {
    let hidden = stages.hidden();
    let last_layer = move |bounds: &[StageBounds]| -> Vec<Vec<bool>> { bounds.iter().enumerate().map(|(k, b)| vec![k + 1 == hidden; b.lo.len()]).collect() };
    match method {
        CertMethod::MilpLastLayer => Box::new(last_layer),
        CertMethod::MilpPartial { k } => {
            let k = *k;
            let target = stages.after_last_conv().unwrap_or(hidden.saturating_sub(2));
            Box::new(move |bounds: &[StageBounds]| {
                let mut mask = last_layer(bounds);
                if let Some(b) = bounds.get(target) {
                    // The most ambiguous neurons: the largest triangles, -l * u.
                    let mut unstable: Vec<usize> = b.unstable().collect();
                    unstable.sort_by(|&i, &j| (b.lo[i] * b.hi[i]).total_cmp(&(b.lo[j] * b.hi[j])));
                    for &j in unstable.iter().take(k) {
                        mask[target][j] = true;
                    }
                }
                mask
            })
        }
        _ => Box::new(milp::all_exact),
    }
}

/// MILP verdicts per sample (in parallel), candidates confirmed by the real network.
fn milp_outcomes(s: &Samples, method: &CertMethod, cfg: &CertifyConfig) -> Result<Vec<Outcome>> {
    let stages = s.stages(method)?;
    let seeds = lp::engine_bounds(s.net, stages, &s.bound_region, Method::Crown, cfg.sound)?;
    let boxes = lp::boxes(&s.bound_region);
    let policy = exact_policy(method, stages);
    let verdicts = (0..s.len())
        .into_par_iter()
        .map(|i| milp::decide(stages, &boxes[i], &seeds[i], s.labels[i], &*policy, Instant::now() + cfg.timeout, cfg.sound))
        .collect::<Result<Vec<Verdict>>>()?;
    let shape = s.net.input_shape();
    verdicts
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(match v {
                Verdict::Certified => Outcome::Certified,
                Verdict::Timeout => Outcome::TimedOut,
                Verdict::Unknown => Outcome::Unknown,
                Verdict::Candidate(x) => {
                    let x = from_vec(x.iter().map(|&v| v as f32).collect(), [1, shape[0], shape[1], shape[2]], &s.x.device());
                    let inside = within(&x, &s.region, i);
                    if inside && predictions(s.net.forward(x))[0] != s.labels[i] {
                        Outcome::Falsified
                    } else {
                        Outcome::Unknown
                    }
                }
            })
        })
        .collect()
}

/// Whether the single point `x` lies in sample i's region.
fn within(x: &Tensor<4>, region: &Interval, i: usize) -> bool {
    let [_, c, h, w] = region.lo.dims();
    let pick = |t: &Tensor<4>| to_vec(t.clone().slice([i..i + 1, 0..c, 0..h, 0..w]));
    let (lo, hi, p) = (pick(&region.lo), pick(&region.hi), to_vec(x.clone()));
    p.iter().zip(lo.iter().zip(&hi)).all(|(v, (l, u))| v >= l && v <= u)
}

/// One method's outcome for each sample (all classified correctly).
fn outcomes(s: &Samples, method: &CertMethod, cfg: &CertifyConfig, stage_counts: &mut Vec<StageCount>) -> Result<Vec<Outcome>> {
    let k = s.net.num_outputs();
    let spec = || Spec::margins(&s.labels, k, &s.x.device()).map(|spec| spec.with_indices(s.indices.clone()));
    match method {
        CertMethod::Bound(m) => {
            let relaxation = m.relaxation().with_seed(cfg.seed).with_sound(cfg.sound);
            Ok(from_margins(lower_bound(s.net, &s.bound_region, &spec()?, &relaxation)?))
        }
        CertMethod::Lp(r) => lp_outcomes(s, *r, method, cfg),
        CertMethod::Milp | CertMethod::MilpLastLayer | CertMethod::MilpPartial { .. } => milp_outcomes(s, method, cfg),
        CertMethod::Cascade { stages, .. } => {
            let mut result = vec![Outcome::Unknown; s.len()];
            let mut open: Vec<usize> = (0..s.len()).collect();
            for (depth, stage) in stages.iter().enumerate() {
                let sub = s.subset(&open, cfg);
                let got = outcomes(&sub, stage, cfg, &mut Vec::new())?;
                if stage_counts.len() <= depth {
                    stage_counts.push(StageCount { method: stage.name(), certified: 0, falsified: 0 });
                }
                let mut still = Vec::new();
                for (&i, o) in open.iter().zip(got) {
                    result[i] = o;
                    match o {
                        Outcome::Certified => stage_counts[depth].certified += 1,
                        Outcome::Falsified => stage_counts[depth].falsified += 1,
                        Outcome::TimedOut | Outcome::Unknown => still.push(i),
                    }
                }
                open = still;
                if open.is_empty() {
                    break;
                }
            }
            Ok(result)
        }
    }
}

/// Certifies `images` (`[N, C, H, W]` row-major in `data`) with labels, in batches.
/// `progress(done)` is called after each batch.
pub fn certify(
    net: &Network,
    data: &[f32],
    labels: &[usize],
    cfg: &CertifyConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<(Report, SampleResults)> {
    certify_shard(net, data, labels, None, cfg, device, &mut |done| {
        progress(done);
        Ok(())
    })
}

/// [`certify`] of one shard of the samples (all of them for `None`): the report
/// (and the per-sample results) cover the shard's samples only and carry a
/// [`ReportShard`] that [`super::shard::merge_reports`] needs. Each sample is computed in the
/// same batch position as in the unsharded run, so the merged shards give its report.
/// `progress` counts the shard's samples; an error from it stops the work.
pub fn certify_shard(
    net: &Network,
    data: &[f32],
    labels: &[usize],
    shard: Option<Shard>,
    cfg: &CertifyConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<(Report, SampleResults)> {
    check_eps(cfg.eps)?;
    let shape = net.input_shape();
    let per = shape.iter().product::<usize>();
    let total = labels.len();
    if data.len() != total * per {
        return Err(Error::input(format!("{} values for {total} samples of shape {shape:?}", data.len())));
    }
    let range = match shard {
        Some(s) => s.checked_range(total, "samples")?,
        None => 0..total,
    };
    let n = range.len();
    let k = net.num_outputs();
    if let Some(bad) = labels.iter().find(|&&y| y >= k) {
        return Err(Error::input(format!("label {bad} out of range for a model with {k} outputs")));
    }
    let stages = match cfg.methods.iter().any(CertMethod::uses_solver) {
        true => Some(lp::stages::extract(net)?),
        false => None,
    };
    let mut results = SampleResults::default();
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut cascade_stages: BTreeMap<String, Vec<StageCount>> = BTreeMap::new();
    let bs = cfg.batch_size.max(1);
    let mut start = range.start;
    while start < range.end {
        // The unsharded run's batches cut to the shard: every sample keeps its position in its
        // batch, which PGD's random start depends on.
        let end = ((start / bs + 1) * bs).min(range.end);
        let m = end - start;
        let x = from_vec(data[start * per..end * per].to_vec(), [m, shape[0], shape[1], shape[2]], device);
        let y = &labels[start..end];
        let correct: Vec<bool> = predictions(net.forward(x.clone())).iter().zip(y).map(|(p, t)| p == t).collect();
        let keep: Vec<usize> = (0..m).filter(|&i| correct[i]).collect();
        let batch = Samples::new(net, stages.as_ref(), x.clone(), y.to_vec(), (start as u64..end as u64).collect(), cfg);
        // Only correctly classified samples go to the methods (none: an empty selection).
        let right = (!keep.is_empty()).then(|| batch.subset(&keep, cfg));
        for method in &cfg.methods {
            let t0 = Instant::now();
            let counts = cascade_stages.entry(method.name()).or_default();
            let got = match &right {
                Some(right) => outcomes(right, method, cfg, counts)?,
                None => Vec::new(),
            };
            let mut all = vec![Outcome::Falsified; m];
            for (&i, o) in keep.iter().zip(got) {
                all[i] = o;
            }
            results.outcomes.entry(method.name()).or_default().extend(all);
            *seconds.entry(method.name()).or_default() += t0.elapsed().as_secs_f64();
        }
        if let Some(p) = &cfg.pgd {
            let t0 = Instant::now();
            let robust = pgd::robust_at(net, &x, y, &batch.region, cfg.eps, p, start % bs);
            let ok = robust.iter().zip(&correct).map(|(r, c)| *r && *c);
            results.pgd_robust.get_or_insert_with(Vec::new).extend(ok);
            *seconds.entry("pgd".into()).or_default() += t0.elapsed().as_secs_f64();
        }
        results.correct.extend(correct);
        progress(end - range.start)?;
        start = end;
    }
    cascade_stages.retain(|_, v| !v.is_empty());
    let frac = |c: usize| accuracy(c, n);
    let outcomes: BTreeMap<String, Counts> = results.outcomes.iter().map(|(k, v)| (k.clone(), Counts::of(v))).collect();
    let soundness_conflicts = match &results.pgd_robust {
        Some(pgd) => (0..n).filter(|&i| !pgd[i] && results.correct[i] && results.outcomes.values().any(|v| v[i] == Outcome::Certified)).count(),
        None => 0,
    };
    if soundness_conflicts > 0 {
        tracing::error!("{soundness_conflicts} samples were certified although PGD found a counterexample: a bound is wrong");
    }
    let clean = results.correct.iter().filter(|&&b| b).count();
    let pgd_robust = results.pgd_robust.as_deref().map(|v| v.iter().filter(|&&b| b).count());
    let report = Report {
        n,
        eps: cfg.eps,
        clean_accuracy: frac(clean),
        certified_accuracy: outcomes.iter().map(|(k, c)| (k.clone(), frac(c.certified))).collect(),
        pgd_accuracy: pgd_robust.map(frac),
        sound: cfg.sound,
        outcomes,
        cascade_stages,
        soundness_conflicts,
        seconds,
        clip: cfg.clip,
        timeout_seconds: cfg.methods.iter().any(CertMethod::uses_solver).then(|| cfg.timeout.as_secs_f64()),
        shard: shard.map(|s| ReportShard { index: s.index, count: s.count, start: range.start, end: range.end, total, clean, pgd_robust }),
    };
    Ok((report, results))
}
