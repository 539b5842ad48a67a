//! `ironbound verify`: decide a VNN-LIB property on a model, or every instance of a VNN-COMP
//! benchmark directory.

use crate::common;
use clap::Parser;
use ironbound::error::{Error, Result};
use ironbound::io::{atomic, vnnlib};
use ironbound::tensor::default_device;
use ironbound::verify::property::{self, Verdict, VerifyConfig};
use ironbound::verify::shard::{self, Shard};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Used when neither `--timeout` nor the instances file gives one.
const DEFAULT_TIMEOUT_S: f64 = 300.0;

#[derive(Parser)]
pub struct Args {
    /// Model file (.onnx or .safetensors), inputs in its own units.
    #[arg(long, required_unless_present = "instances")]
    model: Option<PathBuf>,
    /// VNN-LIB property (describes a counterexample).
    #[arg(long, required_unless_present = "instances")]
    property: Option<PathBuf>,
    /// A VNN-COMP instances.csv (`onnx,vnnlib,timeout` per line, paths relative to its
    /// directory): decides every instance and writes `--out` as a CSV.
    #[arg(long, conflicts_with_all = ["model", "property", "vnncomp_result"])]
    instances: Option<PathBuf>,
    /// Seconds for the whole decision (for --instances: overrides each line's timeout).
    #[arg(long, allow_negative_numbers = true)]
    timeout: Option<f64>,
    /// result.json (one property) or results.csv (--instances).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The competition's result file: `unsat`, or `sat` and the counterexample.
    #[arg(long)]
    vnncomp_result: Option<PathBuf>,
    /// With --instances: decide only the I-th of N contiguous, nearly equal slices of the
    /// instances (1-based); the rows get the columns instance,shard,total, and `ironbound
    /// merge` combines the N files into the unsharded results.csv.
    #[arg(long, value_name = "I/N", requires = "instances")]
    shard: Option<String>,
    /// Seed of the falsification starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    normalize: common::NormalizeArg,
}

/// Loads, checks and decides one instance.
fn decide(model: &Path, prop_path: &Path, secs: f64, seed: u64, normalize: &common::NormalizeArg) -> Result<Verdict> {
    let cfg = VerifyConfig { timeout: common::timeout(Some(secs), Duration::ZERO)?, seed };
    let prop = vnnlib::read(prop_path)?;
    let net = normalize.load(model, &default_device())?;
    property::check_fits(&net, &prop).map_err(|e| Error::file(prop_path, e))?;
    property::verify(&net, &prop, &cfg)
}

/// The VNN-COMP result file text.
fn vnncomp_text(v: &Verdict) -> String {
    let mut s = format!("{}\n", v.result.as_str());
    if let Some(cex) = &v.counterexample {
        s.push('(');
        let lines: Vec<String> = cex.x.iter().enumerate().map(|(i, x)| format!("(X_{i} {x:e})")).chain(cex.y.iter().enumerate().map(|(j, y)| format!("(Y_{j} {y:e})"))).collect();
        s.push_str(&lines.join("\n "));
        s.push_str(")\n");
    }
    s
}

pub fn run(a: Args) -> Result<()> {
    if let Some(csv) = &a.instances {
        return run_instances(csv, &a);
    }
    let (Some(model), Some(prop)) = (&a.model, &a.property) else {
        return Err(Error::input("--model and --property are required (or --instances)"));
    };
    for out in a.out.iter().chain(&a.vnncomp_result) {
        common::check_output(out)?;
    }
    let verdict = decide(model, prop, a.timeout.unwrap_or(DEFAULT_TIMEOUT_S), a.seed, &a.normalize)?;
    println!("{}", verdict.result.as_str());
    if let Some(out) = &a.out {
        common::write_json(out, &verdict)?;
    }
    if let Some(out) = &a.vnncomp_result {
        atomic::write_bytes(out, vnncomp_text(&verdict).as_bytes())?;
    }
    eprintln!("{} in {:.2} s ({})", verdict.result.as_str(), verdict.seconds, verdict.stage);
    Ok(())
}

/// One line of instances.csv.
struct Instance {
    onnx: String,
    vnnlib: String,
    timeout: f64,
}

fn read_instances(csv: &Path) -> Result<Vec<Instance>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::file(csv, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            match cols.as_slice() {
                [onnx, vnnlib, t] => {
                    let timeout = t.parse::<f64>().map_err(|_| Error::file(csv, format!("line {}: timeout '{t}' is not a number", i + 1)))?;
                    Ok(Instance { onnx: onnx.to_string(), vnnlib: vnnlib.to_string(), timeout })
                }
                _ => Err(Error::file(csv, format!("line {}: expected 'onnx,vnnlib,timeout', got '{line}'", i + 1))),
            }
        })
        .collect()
}

fn run_instances(csv: &Path, a: &Args) -> Result<()> {
    let Some(out) = &a.out else {
        return Err(Error::input("--instances needs --out results.csv"));
    };
    common::check_output(out)?;
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let instances = read_instances(csv)?;
    let range = match shard {
        Some(s) => s.checked_range(instances.len(), "instances")?,
        None => 0..instances.len(),
    };
    let dir = csv.parent().unwrap_or(Path::new("."));
    let bar = common::progress(range.len(), "verify");
    let mut text = match shard {
        Some(_) => format!("{},{}\n", shard::RESULTS_HEADER, shard::SHARD_COLUMNS),
        None => format!("{}\n", shard::RESULTS_HEADER),
    };
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for (at, inst) in instances.iter().enumerate().take(range.end).skip(range.start) {
        let secs = a.timeout.unwrap_or(inst.timeout);
        let (result, seconds, stage) = match decide(&dir.join(&inst.onnx), &dir.join(&inst.vnnlib), secs, a.seed, &a.normalize) {
            Ok(v) => (v.result.as_str(), v.seconds, v.stage),
            Err(e) => {
                bar.suspend(|| eprintln!("ironbound: {e}"));
                ("error", 0.0, String::new())
            }
        };
        bar.suspend(|| eprintln!("{} {}: {result} ({seconds:.2} s{})", inst.onnx, inst.vnnlib, if stage.is_empty() { String::new() } else { format!(", {stage}") }));
        *tally.entry(result).or_default() += 1;
        let columns = shard.map(|s| format!(",{}", shard::shard_columns(at, s, instances.len()))).unwrap_or_default();
        let _ = writeln!(text, "{},{},{result},{seconds:.3},{stage}{columns}", inst.onnx, inst.vnnlib);
        bar.inc(1);
    }
    bar.finish_and_clear();
    atomic::write_bytes(out, text.as_bytes())?;
    eprintln!("{}", tally.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    Ok(())
}
