//! Training configurations: the TOML files in `configs/` with lines dropped, duplicated and
//! swapped, values replaced by boundary TOML (huge integers, inf, nan, dates, arrays, inline
//! tables, deep nesting, escapes), keys replaced or quoted, and byte havoc; and `--set
//! KEY=VALUE` strings applied on top of them. Read as `ironbound train --config` reads them:
//! parse, then resolve (every value checked), then the step-count check training starts with.

use super::{havoc, Rng, Verdicts, INTERESTING_TEXT};
use ironbound::train::config::KEYS;
use ironbound::train::{Sources, TrainConfig};
use std::path::Path;

pub const CONFIG_FILE: &str = "config.toml";
pub const SET_FILE: &str = "set.txt";

pub fn config_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// TOML values that stress the deserialiser and the checks behind it.
fn toml_value(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 | 1 => rng.pick(INTERESTING_TEXT).to_string(),
        2 => rng.pick(&["true", "\"\"", "\"crown-ibp\"", "\"a\\nb\"", "'x\ny'", "\"\\u00e9\"", "1979-05-27T07:32:00Z", "07:32:00", "\"\"\"", "'''a"]).to_string(),
        3 => format!("[{}]", (0..rng.below(4)).map(|_| rng.pick(INTERESTING_TEXT).to_string()).collect::<Vec<_>>().join(", ")),
        4 => rng.pick(&["{}", "{ a = 1 }", "[[1], [2]]", "[1, \"a\"]", "{ eps = 0.1 }"]).to_string(),
        _ => {
            let depth = *rng.pick(&[3usize, 50, 500]);
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
        }
    }
}

fn key(rng: &mut Rng) -> String {
    match rng.below(5) {
        0..=2 => rng.pick(KEYS).to_string(),
        3 => rng.pick(&["learning_rate", "epsilon", "\"lr\"", "\"a\\nb\"", "lr.x", "[table]", "[[list]]", "\"\""]).to_string(),
        _ => format!("{}x", rng.pick(KEYS)),
    }
}

/// One line-level edit of a TOML text.
fn damage_lines(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    let i = rng.below(n).min(lines.len().saturating_sub(1));
    match rng.below(6) {
        0 if !lines.is_empty() => drop(lines.remove(i)),
        1 if !lines.is_empty() => {
            let copy = lines[i].clone();
            lines.insert(i, copy)
        }
        2 if !lines.is_empty() => {
            let j = rng.below(lines.len());
            lines.swap(i, j)
        }
        3 | 4 => {
            let (k, v) = (key(rng), toml_value(rng));
            match lines.get_mut(i).filter(|l| l.contains('=') && rng.chance(2, 3)) {
                Some(l) => {
                    let old = l.split_once('=').map_or(String::new(), |(k, _)| k.to_string());
                    *l = format!("{old}= {v}");
                }
                None => lines.insert(i.min(lines.len()), format!("{k} = {v}")),
            }
        }
        _ => lines.insert(i.min(lines.len()), format!("{} = {}", key(rng), toml_value(rng))),
    }
    let mut out = lines.join(if rng.chance(1, 10) { "\r\n" } else { "\n" });
    out.push('\n');
    out
}

pub fn config_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let seed: &Vec<u8> = rng.pick(seeds);
    let mut text = String::from_utf8_lossy(seed).into_owned();
    for _ in 0..1 + rng.below(3) {
        text = damage_lines(rng, &text);
    }
    let mut bytes = text.into_bytes();
    if rng.chance(1, 4) {
        havoc(rng, &mut bytes, seeds, 0);
    }
    vec![(CONFIG_FILE.into(), bytes)]
}

/// Steps per epoch of the datasets' train splits at batch size 100.
const STEPS: &[usize] = &[600, 500, 733];

/// What is accepted must resolve into a config that writes itself out and reads back equal.
fn resolve(config: &TrainConfig, sources: &Sources, v: &mut Verdicts, needles: &[&str]) {
    if let Some(r) = v.check(config.resolve(sources), needles) {
        for &s in STEPS {
            v.check(r.check_steps(s), needles);
        }
        let text = r.config.to_toml().expect("a resolved config writes itself out");
        let (again, _) = TrainConfig::parse(&text, Path::new("config.toml")).expect("config.toml reads back");
        assert_eq!(again, r.config, "config.toml of an accepted config reads back different");
    }
}

pub fn config_exec(dir: &Path, v: &mut Verdicts) {
    let path = dir.join(CONFIG_FILE);
    let p = path.display().to_string();
    if let Some((config, keys)) = v.check(TrainConfig::load(&path), &[&p]) {
        let sources = Sources { file: Some(path.clone()), file_keys: keys, ..Default::default() };
        // A value from the file is named by the file; a missing one by its flag.
        resolve(&config, &sources, v, &[&p, "missing", "default"]);
    }
}

/// Assignments users write, to mutate.
const ASSIGNMENTS: &[&str] = &[
    "lr=0.001", "epochs=3", "eps=0.3", "method=crown-ibp", "arch=fc", "lr_milestones=[1, 2]", "lr_schedule=step", "lr_step=2",
    "note=hello world", "beta_end=0.5", "warmup_steps=100", "rampup_steps=2000", "eps_schedule=smoothed", "train_n=10", "normalize=true",
    "certify_method=deepz", "threads=2", "seed=18446744073709551615", "data_dir=/tmp/data",
];

/// A base config (one of `configs/`) plus one to three `--set` strings, one per line.
pub fn set_generate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let sets: Vec<String> = (0..1 + rng.below(3))
        .map(|_| {
            let mut s = match rng.below(3) {
                0 => format!("{}={}", key(rng), toml_value(rng)),
                _ => rng.pick(ASSIGNMENTS).to_string(),
            }
            .into_bytes();
            if rng.chance(1, 2) {
                havoc(rng, &mut s, &[], 0);
            }
            // One assignment per line: a newline inside one would split it.
            String::from_utf8_lossy(&s).replace(['\n', '\r'], "\u{2028}")
        })
        .collect();
    vec![(CONFIG_FILE.into(), rng.pick(seeds).clone()), (SET_FILE.into(), sets.join("\n").into_bytes())]
}

/// `ironbound train --config FILE --set A --set B`: each error names its `--set`.
pub fn set_exec(dir: &Path, v: &mut Verdicts) {
    let path = dir.join(CONFIG_FILE);
    let (mut config, keys) = TrainConfig::load(&path).expect("the base configs are valid");
    let mut sources = Sources { file: Some(path.clone()), file_keys: keys, ..Default::default() };
    let text = std::fs::read_to_string(dir.join(SET_FILE)).unwrap();
    for s in text.lines() {
        let s = s.replace('\u{2028}', "\n");
        if let Some(k) = v.check(config.set_str(&s), &["--set"]) {
            sources.flags.insert(k, format!("--set {s}"));
        }
    }
    let p = path.display().to_string();
    resolve(&config, &sources, v, &["--set", &p, "missing", "default"]);
}
