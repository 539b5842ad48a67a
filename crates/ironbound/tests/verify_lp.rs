//! LP and MILP certification: hand-computed bounds, an independent complete oracle
//! (enumerating activation patterns, one LP each), soundness against sampled points, and the
//! tightness order Triangle >= CROWN, DeepZ, Parallelogram; MILP >= Triangle.

mod common;

use common::*;
use ironbound::bounds::{input_region, lower_bound, Method, Spec};
use ironbound::net::init::SplitMix64;
use ironbound::net::{NetSpec, Network, NodeSpec, OpSpec};
use ironbound::tensor::{from_vec, to_vec};
use ironbound::verify::lp::solver::Program;
use ironbound::verify::lp::{self, milp, phase_bab::Search, stages, InputBox, Stages};
use ironbound::verify::{certify, CertMethod, CertifyConfig, Outcome};
use std::time::{Duration, Instant};

/// Network A of bounds_golden.rs: h = [[1, 1], [1, -1]] x + [1, 0], out = [[1, 1], [1, -1]] relu(h).
fn network_a() -> Network {
    let spec = NetSpec {
        input_shape: [2, 1, 1],
        nodes: vec![
            NodeSpec { name: "0".into(), op: OpSpec::Linear { in_features: 2, out_features: 2 }, inputs: vec![0] },
            NodeSpec { name: "1".into(), op: OpSpec::Relu, inputs: vec![1] },
            NodeSpec { name: "2".into(), op: OpSpec::Linear { in_features: 2, out_features: 2 }, inputs: vec![2] },
        ],
    };
    spec.build(&dev(), &mut |name, _| {
        Ok(match name {
            "0.weight" => vec![1.0, 1.0, 1.0, -1.0],
            "0.bias" => vec![1.0, 0.0],
            "2.weight" => vec![1.0, 1.0, 1.0, -1.0],
            _ => vec![0.0, 0.0],
        })
    })
    .unwrap()
}

/// Lower bounds of rows over the box [-1, 1]^2 (center 0, eps 1) of network A.
fn a_bounds(rows: &[[f32; 2]], method: &str) -> Vec<f32> {
    let net = network_a();
    let region = input_region(&from_vec(vec![0.0, 0.0], [1, 2, 1, 1], &dev()), 1.0, None);
    let c: Vec<f32> = rows.iter().flatten().copied().collect();
    let spec = Spec::new(from_vec(c, [1, rows.len(), 2], &dev()));
    let stages = stages::extract(&net).unwrap();
    match method.parse::<CertMethod>().unwrap() {
        CertMethod::Lp(r) => to_vec(lp::lower_bound(&net, &stages, &region, &spec, r, false, None).unwrap()),
        CertMethod::Milp => {
            let seeds = lp::engine_bounds(&net, &stages, &region, Method::Crown, false).unwrap();
            let rows = lp::spec_rows(&spec, 1);
            let b = milp::exact_row_bounds(&stages, &lp::boxes(&region)[0], &seeds[0], &rows[0], Instant::now() + Duration::from_secs(30), false).unwrap();
            b.into_iter().map(|v| v as f32).collect()
        }
        other => panic!("{other}"),
    }
}

/// Rows: out1, out2, -out1 (upper bound of out1), -out2, margins of labels 0 and 1.
const A_ROWS: [[f32; 2]; 6] = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0]];

#[test]
fn hand_computed_triangle_parallelogram_and_milp_bounds() {
    // Triangle: out1 >= 0 (r >= 0, attained at x = (-1, -1)); out2 = r1 - r2 >= max(0, h1) -
    //   (h2 + 2)/2, minimum -1.5 at x = (0, -1); upper bounds are the chords' 4 and 3; the
    //   margins 2 r2 >= 0 and -2 r2 >= -4.
    // Parallelogram: r1 in [max(0, h1), min(3, h1 + 1)], r2 in [max(0, h2), min(2, h2 + 2)]:
    //   out2 >= 0 - 2 = -2 (x = (0, -1)), out1 <= 5 (x = (1, 1)), out2 <= 3.
    // MILP (exact): out2 >= -1 (x = (1, -1)), out1 <= 3 (h1 + h2 = 2 x1 + 1 <= 3).
    let want = [
        ("lp-triangle", [0.0, -1.5, -4.0, -3.0, 0.0, -4.0]),
        ("lp-parallelogram", [0.0, -2.0, -5.0, -3.0, 0.0, -4.0]),
        ("milp", [0.0, -1.0, -3.0, -3.0, 0.0, -4.0]),
    ];
    for (method, expected) in want {
        let got = a_bounds(&A_ROWS, method);
        for (row, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(*g <= e + 1e-6 && *g >= e - 1e-4, "{method} row {row}: {g} vs {e} (all: {got:?})");
        }
    }
}

/// The exact minimum of `c . f(x)` over the box by enumerating every activation pattern of
/// the hidden ReLUs: on each pattern the network is affine and the pattern a polytope, so one
/// LP per pattern. Independent of the MILP encoding (no big-M, no binaries). `None`: no
/// pattern is feasible (cannot happen for a non-empty box).
fn oracle_min(st: &Stages, input: &InputBox, c: &[f64]) -> Option<f64> {
    let widths: Vec<usize> = (0..st.hidden()).map(|k| st.affine[k].outputs()).collect();
    let total: usize = widths.iter().sum();
    assert!(total <= 12, "oracle enumerates 2^{total} patterns");
    let mut best: Option<f64> = None;
    for pattern in 0..(1u32 << total) {
        let mut p = Program::new().unwrap();
        let mut h: Vec<Option<usize>> = input.lo.iter().zip(&input.hi).map(|(&l, &u)| Some(p.add_col(l, u).unwrap())).collect();
        let mut bit = 0;
        for k in 0..st.hidden() {
            let a = &st.affine[k];
            let mut next = Vec::new();
            for j in 0..a.outputs() {
                let terms: Vec<(usize, f64)> = a.rows[j].iter().filter_map(|&(i, w)| h[i].map(|col| (col, w))).collect();
                let active = pattern >> bit & 1 == 1;
                bit += 1;
                // z = terms + b: active z >= 0 and h = z (a new column tied to it); inactive z <= 0.
                if active {
                    let z = p.add_col(-1e4, 1e4).unwrap();
                    let mut row = terms.iter().map(|&(col, w)| (col, -w)).collect::<Vec<_>>();
                    row.push((z, 1.0));
                    p.add_row(row, a.bias[j], a.bias[j]).unwrap();
                    p.add_row(vec![(z, 1.0)], 0.0, f64::INFINITY).unwrap();
                    next.push(Some(z));
                } else {
                    p.add_row(terms, f64::NEG_INFINITY, -a.bias[j]).unwrap();
                    next.push(None);
                }
            }
            h = next;
        }
        let last = st.affine.last().unwrap();
        let mut obj = vec![0.0; p.num_cols()];
        let mut constant = 0.0;
        for (row, &ci) in c.iter().enumerate() {
            constant += ci * last.bias[row];
            for &(i, w) in &last.rows[row] {
                if let Some(col) = h[i] {
                    obj[col] += ci * w;
                }
            }
        }
        let terms: Vec<(usize, f64)> = obj.into_iter().enumerate().filter(|&(_, v)| v != 0.0).collect();
        let s = p.solve_lp(&terms, constant, None).unwrap();
        if s.optimal {
            best = Some(best.map_or(s.objective, |b: f64| b.min(s.objective)));
        }
    }
    best
}

fn margin_rows_f64(y: usize, k: usize) -> Vec<Vec<f64>> {
    (0..k).filter(|&j| j != y).map(|j| (0..k).map(|i| if i == y { 1.0 } else if i == j { -1.0 } else { 0.0 }).collect()).collect()
}

/// The dual bound's rounding allowance (`solver.rs`): objectives summed through values near
/// 2^40, where the plain f64 sum of the weak-duality bound rounds above the exact minimum on
/// many instances; the certified bound never does (checked in exact rationals).
#[test]
fn lp_bounds_stay_below_the_exact_minimum_where_plain_float64_sums_round_above_it() {
    type Q = num_rational::BigRational;
    let q = |v: f64| Q::from_float(v).expect("finite");
    let mut naive_above = 0usize;
    for seed in 0..100u64 {
        let n = 40;
        let u = SplitMix64::new(seed).uniforms(2 * n);
        let mut p = Program::new().unwrap();
        let (mut objective, mut exact, mut naive) = (Vec::new(), q(0.0), 0.0f64);
        for j in 0..n {
            // A one-point column: its term is c a, summed in the order the bound sums.
            let a = 2f64.powi(40) + f64::from(u[2 * j]) * 1024.0;
            let c = if j % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + f64::from(u[2 * j + 1]));
            objective.push((p.add_col(a, a).unwrap(), c));
            exact += q(c) * q(a);
            naive += c * a;
        }
        let lb = p.minimize(&objective, 0.0, None).unwrap();
        assert!(q(lb) <= exact, "seed {seed}: bound {lb} above the exact minimum");
        naive_above += (q(naive) > exact) as usize;
    }
    assert!(naive_above >= 10, "the plain sum rounded above the minimum only {naive_above} times: not adversarial");
}

#[test]
fn milp_bounds_equal_the_activation_pattern_oracle() {
    for seed in 0..4u64 {
        let net = mlp(100 + seed, &[3, 5, 4, 3]);
        let st = stages::extract(&net).unwrap();
        let (x, _) = random_inputs(&net, 3, seed, -1.0, 1.0);
        let region = input_region(&x, 0.4, None);
        // Float-sound: HiGHS's optimum proved again by the phase search, on the outward box.
        for sound in [false, true] {
            let bound_region = if sound { ironbound::bounds::sound::input_region(&x, 0.4, None) } else { region.clone() };
            let seeds = lp::engine_bounds(&net, &st, &bound_region, Method::Crown, sound).unwrap();
            let boxes = lp::boxes(&bound_region);
            for (i, input) in lp::boxes(&region).iter().enumerate() {
                let rows = margin_rows_f64(i % 3, 3);
                let got = milp::exact_row_bounds(&st, &boxes[i], &seeds[i], &rows, Instant::now() + Duration::from_secs(30), sound).unwrap();
                for (r, c) in rows.iter().enumerate() {
                    let want = oracle_min(&st, input, c).unwrap();
                    assert!(got[r] <= want + 1e-7 && got[r] >= want - 1e-5, "seed {seed} sample {i} row {r} sound {sound}: milp {} vs oracle {want}", got[r]);
                }
            }
        }
    }
}

/// The certified phase search (`phase_bab.rs`) on its own, against the oracle: it proves
/// `c . f(x) > min - 1e-4` and finds a point with `c . f(x) <= min + 1e-4`, on boxes where the
/// Triangle LP alone cannot prove the first (so the search branches, and closes nodes whose
/// fixed phases contradict each other).
#[test]
fn phase_search_proves_just_below_the_exact_minimum_and_refutes_just_above() {
    let mut triangle_too_weak = 0usize;
    for seed in 0..4u64 {
        let net = mlp(300 + seed, &[3, 5, 4, 3]);
        let st = stages::extract(&net).unwrap();
        let (x, _) = random_inputs(&net, 3, seed, -1.0, 1.0);
        let region = ironbound::bounds::sound::input_region(&x, 0.5, None);
        let seeds = lp::engine_bounds(&net, &st, &region, Method::Crown, true).unwrap();
        for (i, input) in lp::boxes(&region).iter().enumerate() {
            let (all, none) = (milp::all_exact(&seeds[i]), seeds[i].iter().map(|b| vec![false; b.lo.len()]).collect::<Vec<_>>());
            for c in margin_rows_f64(i % 3, 3) {
                let want = oracle_min(&st, input, &c).unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                let prove = |mask: &[Vec<bool>], d: f64| milp::prove_again(&st, input, &seeds[i], mask, &[(c.clone(), d)], deadline).unwrap();
                assert_eq!(prove(&all, want - 1e-4), Search::Proved, "seed {seed} sample {i} {c:?}: exact minimum {want}");
                triangle_too_weak += (prove(&none, want - 1e-4) != Search::Proved) as usize;
                match prove(&all, want + 1e-4) {
                    Search::Candidate(x) => {
                        let y = st.forward(&x);
                        let value: f64 = c.iter().zip(&y).map(|(a, b)| a * b).sum();
                        assert!(value <= want + 1e-4, "seed {seed} sample {i}: candidate value {value}, minimum {want}");
                        assert!(x.iter().zip(input.lo.iter().zip(&input.hi)).all(|(v, (l, h))| l <= v && v <= h), "candidate outside the box");
                    }
                    other => panic!("seed {seed} sample {i} {c:?}: {other:?} although the minimum {want} is below the target"),
                }
            }
        }
    }
    assert!(triangle_too_weak >= 5, "only {triangle_too_weak} rows needed branching: the test does not exercise the search");
}

#[test]
fn certify_milp_decides_exactly_as_the_oracle_and_its_counterexamples_are_real() {
    let mut decided = [0usize; 2];
    for seed in 0..3u64 {
        let net = mlp(200 + seed, &[3, 5, 4, 3]);
        let st = stages::extract(&net).unwrap();
        let n = 8;
        let (x, flat) = random_inputs(&net, n, 50 + seed, -1.0, 1.0);
        // Labels = the predicted classes, so every sample takes the solver path.
        let labels = ironbound::loss::predictions(net.forward(x.clone()));
        for eps in [0.3, 0.8, 1.6] {
            let cfg = CertifyConfig { eps, methods: vec![CertMethod::Milp], batch_size: 5, pgd: None, clip: None, timeout: Duration::from_secs(30), seed: 0, sound: true };
            let (_, res) = certify(&net, &flat, &labels, &cfg, &dev(), &mut |_| {}).unwrap();
            let region = input_region(&x, eps, None);
            for (i, input) in lp::boxes(&region).iter().enumerate() {
                let m = margin_rows_f64(labels[i], 3).iter().map(|c| oracle_min(&st, input, c).unwrap()).fold(f64::INFINITY, f64::min);
                let got = res.outcomes["milp"][i];
                if m.abs() < 1e-5 {
                    continue; // a tie: either answer is defensible at the solver's tolerance
                }
                let want = if m > 0.0 { Outcome::Certified } else { Outcome::Falsified };
                assert_eq!(got, want, "seed {seed} eps {eps} sample {i}: oracle margin {m}");
                decided[(m > 0.0) as usize] += 1;
            }
        }
    }
    // Both answers occur, so the comparison has teeth.
    assert!(decided[0] >= 5 && decided[1] >= 5, "falsified/certified decided: {decided:?}");
}

/// Margin lower bounds `[N][K-1]` of a certify method family.
fn margins(net: &Network, st: &Stages, x: &ironbound::tensor::Tensor<4>, labels: &[usize], eps: f64, method: &str) -> Vec<Vec<f32>> {
    let region = input_region(x, eps, Some((0.0, 1.0)));
    let spec = Spec::margins(labels, net.num_outputs(), &dev()).unwrap();
    let t = match method.parse::<CertMethod>().unwrap() {
        CertMethod::Bound(m) => lower_bound(net, &region, &spec, &m.relaxation()).unwrap(),
        CertMethod::Lp(r) => lp::lower_bound(net, st, &region, &spec, r, false, None).unwrap(),
        other => panic!("{other}"),
    };
    rows2(t)
}

#[test]
fn lp_bounds_are_sound_and_ordered_on_mlps_and_convnets() {
    let nets = [("mlp", mlp(7, &[6, 10, 8, 4])), ("convnet", convnet(3)), ("normalized", normalized_convnet(4))];
    for (name, net) in nets {
        let st = stages::extract(&net).unwrap();
        let n = 4;
        let (x, flat) = random_inputs(&net, n, 11, 0.0, 1.0);
        let k = net.num_outputs();
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        let eps = 0.08;
        let tri = margins(&net, &st, &x, &labels, eps, "lp-triangle");
        let par = margins(&net, &st, &x, &labels, eps, "lp-parallelogram");
        for other in ["crown", "deepz", "alpha-crown"] {
            let o = margins(&net, &st, &x, &labels, eps, other);
            for i in 0..n {
                for r in 0..k - 1 {
                    // alpha-CROWN optimises only the final pass's slopes, so Triangle with
                    // LP-tightened intermediate bounds dominates it too.
                    assert!(tri[i][r] >= o[i][r] - 1e-5, "{name}: triangle {} < {other} {} (sample {i} row {r})", tri[i][r], o[i][r]);
                }
            }
        }
        // Parallelogram takes the box and hBox (whose sets contain it) as floors.
        for other in ["ibp", "hbox"] {
            let o = margins(&net, &st, &x, &labels, eps, other);
            for i in 0..n {
                for r in 0..k - 1 {
                    assert!(par[i][r] >= o[i][r], "{name}: parallelogram {} < {other} {} (sample {i} row {r})", par[i][r], o[i][r]);
                }
            }
        }
        // Sampled points: every margin bound holds.
        let f = flat.len() / n;
        let mut rng = SplitMix64::new(9);
        for i in 0..n {
            let (lo, hi) = box_of(&flat, f, i, eps, Some((0.0, 1.0)));
            let (lo, hi): (Vec<f32>, Vec<f32>) = (lo.iter().map(|&v| v as f32).collect(), hi.iter().map(|&v| v as f32).collect());
            let pts = sample_box(&lo, &hi, 2000, &mut rng);
            let out = forward_points(&net, &pts);
            for (r, j) in (0..k).filter(|&j| j != labels[i]).enumerate() {
                let min = out.iter().map(|o| o[labels[i]] - o[j]).fold(f32::INFINITY, f32::min);
                assert!(tri[i][r] <= min + 1e-5, "{name}: triangle {} above sampled {min}", tri[i][r]);
                assert!(par[i][r] <= min + 1e-5, "{name}: parallelogram {} above sampled {min}", par[i][r]);
                assert!(par[i][r] <= tri[i][r] + 1e-5, "{name}: parallelogram {} tighter than triangle {}", par[i][r], tri[i][r]);
            }
        }
    }
}

/// At radius 0 the region is one point and both LP relaxations give its margins (HiGHS proved
/// nothing on such degenerate LPs of a CONV network; the engines' floors are exact there).
#[test]
fn lp_bounds_at_radius_zero_are_the_clean_margins() {
    let net = convnet(6);
    let st = stages::extract(&net).unwrap();
    let n = 3;
    let (x, _) = random_inputs(&net, n, 21, 0.0, 1.0);
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let logits = rows2(net.forward(x.clone()));
    for method in ["lp-triangle", "lp-parallelogram"] {
        let m = margins(&net, &st, &x, &labels, 0.0, method);
        for i in 0..n {
            for (r, j) in (0..k).filter(|&j| j != labels[i]).enumerate() {
                let clean = logits[i][labels[i]] - logits[i][j];
                assert!((m[i][r] - clean).abs() <= 1e-4 * clean.abs().max(1.0), "{method}: sample {i} row {r}: {} vs clean {clean}", m[i][r]);
            }
        }
    }
}

/// A time limit only loosens LP bounds: with 1 ms per sample (the tightening stops early and
/// the output LPs may end mid-simplex) Triangle's margins stay below the unlimited ones,
/// which the other tests show sound, and above CROWN's, which Triangle takes as a floor.
#[test]
fn lp_time_limits_loosen_the_bounds_but_keep_them_valid() {
    let net = convnet(5);
    let st = stages::extract(&net).unwrap();
    let n = 6;
    let (x, _) = random_inputs(&net, n, 17, 0.0, 1.0);
    let k = net.num_outputs();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let region = input_region(&x, 0.1, Some((0.0, 1.0)));
    let spec = Spec::margins(&labels, k, &dev()).unwrap();
    let full = rows2(lp::lower_bound(&net, &st, &region, &spec, lp::LpRelaxation::Triangle, false, None).unwrap());
    let timed = rows2(lp::lower_bound(&net, &st, &region, &spec, lp::LpRelaxation::Triangle, false, Some(Duration::from_millis(1))).unwrap());
    let crown = margins(&net, &st, &x, &labels, 0.1, "crown");
    for i in 0..n {
        for r in 0..k - 1 {
            assert!(timed[i][r] <= full[i][r] + 1e-6, "sample {i} row {r}: timed {} above unlimited {}", timed[i][r], full[i][r]);
            assert!(timed[i][r] >= crown[i][r] - 1e-5, "sample {i} row {r}: timed {} below CROWN {}", timed[i][r], crown[i][r]);
        }
    }
}

#[test]
fn cascades_and_colt_report_their_stages() {
    let net = convnet(5);
    let n = 10;
    let (x, flat) = random_inputs(&net, n, 21, 0.0, 1.0);
    let labels = ironbound::loss::predictions(net.forward(x));
    let methods = vec![
        "crown".parse().unwrap(),
        "milp".parse().unwrap(),
        "colt".parse().unwrap(),
        CertMethod::cascade("ibp,crown,milp").unwrap(),
    ];
    let cfg = CertifyConfig { eps: 0.03, methods, batch_size: 4, pgd: Some(ironbound::verify::PgdConfig::new(20)), clip: Some((0.0, 1.0)), timeout: Duration::from_secs(30), seed: 0, sound: true };
    let (report, res) = certify(&net, &flat, &labels, &cfg, &dev(), &mut |_| {}).unwrap();
    assert_eq!(report.soundness_conflicts, 0);
    for (name, counts) in &report.outcomes {
        assert_eq!(counts.certified + counts.falsified + counts.timed_out + counts.unknown, n, "{name}");
    }
    // The complete methods decide every sample, and agree.
    assert_eq!(res.outcomes["milp"], res.outcomes["cascade:ibp>crown>milp"]);
    assert_eq!(report.outcomes["milp"].unknown + report.outcomes["milp"].timed_out, 0);
    // COLT is sound (never more than the complete answer) and at least CROWN.
    let (c, m, k) = (report.outcomes["crown"].certified, report.outcomes["milp"].certified, report.outcomes["colt"].certified);
    assert!(c <= k && k <= m, "crown {c} colt {k} milp {m}");
    let stages = &report.cascade_stages["colt"];
    assert_eq!(stages.iter().map(|s| s.method.as_str()).collect::<Vec<_>>()[0], "alpha-crown");
    assert_eq!(stages.iter().map(|s| s.certified).sum::<usize>(), k);
    // PGD never breaks a certified sample, and every falsified sample is PGD-breakable in
    // principle: at least, PGD-robust samples are not falsified more often than the MILP says.
    let pgd = res.pgd_robust.unwrap();
    for i in 0..n {
        if res.outcomes["milp"][i] == Outcome::Certified {
            assert!(pgd[i], "sample {i}: certified by milp but broken by PGD");
        }
    }
}

#[test]
fn a_batch_without_a_correct_sample_is_all_falsified() {
    let net = mlp(3, &[4, 6, 3]);
    let (x, flat) = random_inputs(&net, 5, 8, 0.0, 1.0);
    // Every label wrong: no sample reaches a method.
    let labels: Vec<usize> = ironbound::loss::predictions(net.forward(x)).iter().map(|p| (p + 1) % 3).collect();
    let methods = vec!["crown".parse().unwrap(), "milp".parse().unwrap(), "colt".parse().unwrap()];
    let cfg = CertifyConfig { eps: 0.1, methods, batch_size: 5, pgd: None, clip: None, timeout: Duration::from_secs(10), seed: 0, sound: true };
    let (report, _) = certify(&net, &flat, &labels, &cfg, &dev(), &mut |_| {}).unwrap();
    for (name, c) in &report.outcomes {
        assert_eq!((c.certified, c.falsified), (0, 5), "{name}");
    }
}
