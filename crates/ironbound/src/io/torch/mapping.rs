//! Assigning a state dict's tensors to the parameters of one of our architectures.
//!
//! Key names differ between code releases: CROWN-IBP and convex_adversarial use bare
//! `nn.Sequential` indices (`0.weight`), which are our node names; paradox nests the same
//! sequence under `layers.` after a normalisation layer (`layers.1.weight`), COLT wraps each
//! layer (`blocks.layers.1.conv.weight`). So a state dict fits when its keys are our
//! parameter names with the same shapes, or else when its parameterised layers, taken in
//! order, have our layers' parameter names and shapes. Keys that are not part of the network
//! function are dropped: BatchNorm's `num_batches_tracked` and COLT's ReLU relaxation slopes
//! (`deepz_lambda`). A `<layer>.mean` with a `<layer>.sigma` (or `.std`) is an input
//! normalisation (paradox) and becomes a Normalize node in front.

use super::statedict::short;
use super::{read_state_dict, StateDict, TensorValue};
use crate::error::{Error, Result};
use crate::net::{arch, NetSpec, Network, Shape};
use crate::tensor::Device;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Per-channel input normalisation (x - mean[c]) / std[c].
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Input shapes tried when the caller does not give one: MNIST-like, then CIFAR-10/SVHN-like.
const INPUT_SHAPES: [Shape; 2] = [[1, 28, 28], [3, 32, 32]];

/// Keys listed per kind of problem in a misfit message.
const LISTED: usize = 12;

/// Suffixes of state-dict entries that do not change what the network computes.
const IGNORED_SUFFIXES: [&str; 2] = [".num_batches_tracked", ".deepz_lambda"];

/// Reads the checkpoint at `path` into the named architecture. Without `input_shape` the
/// shapes of our datasets are tried (1x28x28, then 3x32x32) and the first that fits is used.
/// `normalize` prepends an input normalisation; it replaces one stored in the checkpoint
/// (paradox's loader does the same: it overwrites the stored values with the dataset's).
pub fn load_network(path: &Path, arch_name: &str, input_shape: Option<Shape>, normalize: Option<&Normalization>, device: &Device) -> Result<Network> {
    let state = read_state_dict(path)?;
    let shapes = input_shape.map(|s| vec![s]).unwrap_or_else(|| INPUT_SHAPES.to_vec());
    let mut best: Option<Misfit> = None;
    for shape in shapes {
        let spec = arch::named(arch_name, shape)?;
        match assign(&state, &spec) {
            Ok(fitted) => return build(fitted, &spec, normalize, path, device),
            Err(m) => {
                if best.as_ref().is_none_or(|b| m.count() < b.count()) {
                    best = Some(m);
                }
            }
        }
    }
    let misfit = best.ok_or_else(|| Error::internal("no input shape was tried"))?;
    Err(Error::file(path, format!("does not fit arch {arch_name}: {misfit}")))
}

/// Assigns `state` to `arch` (a spec without a normalisation node) and builds the network.
pub fn fit(state: &StateDict, arch: &NetSpec, arch_name: &str, normalize: Option<&Normalization>, path: &Path, device: &Device) -> Result<Network> {
    match assign(state, arch) {
        Ok(fitted) => build(fitted, arch, normalize, path, device),
        Err(m) => Err(Error::file(path, format!("does not fit arch {arch_name}: {m}"))),
    }
}

/// What a fitting state dict gives: values by our parameter names, and a stored normalisation.
struct Fitted {
    values: HashMap<String, Vec<f32>>,
    stored: Option<Normalization>,
}

/// Why a state dict does not fit: our names missing, its keys unexpected, mis-shaped pairs.
#[derive(Debug, Default)]
struct Misfit {
    missing: Vec<String>,
    unexpected: Vec<String>,
    misshaped: Vec<String>,
}

impl Misfit {
    fn count(&self) -> usize {
        self.missing.len() + self.unexpected.len() + self.misshaped.len()
    }
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [("missing", &self.missing), ("unexpected", &self.unexpected), ("mis-shaped", &self.misshaped)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(what, v)| {
                // A wholly different network would list every key; the first few say enough.
                let more = if v.len() > LISTED { format!(" and {} more", v.len() - LISTED) } else { String::new() };
                format!("{what} {}{more}", v[..v.len().min(LISTED)].join(", "))
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// One parameter of ours: full name, local name, shape.
struct Param {
    name: String,
    local: &'static str,
    shape: Vec<usize>,
}

/// Our parameters grouped by node, in network order.
fn arch_layers(spec: &NetSpec) -> Vec<Vec<Param>> {
    spec.nodes
        .iter()
        .map(|n| n.op.param_shapes().into_iter().map(|(local, shape)| Param { name: format!("{}.{local}", n.name), local, shape }).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

fn shape_str(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","))
}

fn split_key(key: &str) -> (&str, &str) {
    key.rsplit_once('.').unwrap_or(("", key))
}

/// Takes a `<p>.mean` + `<p>.sigma`/`<p>.std` pair out of `weights`, if there is one.
fn take_normalization(weights: &mut Vec<(&str, &TensorValue)>) -> Option<Normalization> {
    let (prefix, mean_at) = weights.iter().enumerate().find_map(|(i, (k, _))| {
        let (p, local) = split_key(k);
        (local == "mean").then_some((p.to_string(), i))
    })?;
    let std_at = weights.iter().position(|(k, _)| split_key(k) == (prefix.as_str(), "sigma") || split_key(k) == (prefix.as_str(), "std"))?;
    let norm = Normalization { mean: weights[mean_at].1.data.clone(), std: weights[std_at].1.data.clone() };
    let (hi, lo) = (mean_at.max(std_at), mean_at.min(std_at));
    weights.remove(hi);
    weights.remove(lo);
    Some(norm)
}

fn assign(state: &StateDict, spec: &NetSpec) -> Result<Fitted, Misfit> {
    let mut weights: Vec<(&str, &TensorValue)> = state
        .iter()
        .filter(|(k, _)| !IGNORED_SUFFIXES.iter().any(|s| k.ends_with(s)))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let stored = take_normalization(&mut weights);
    let layers = arch_layers(spec);
    let ours: HashMap<&str, &Param> = layers.iter().flatten().map(|p| (p.name.as_str(), p)).collect();
    let by_name = fit_by_name(&weights, &layers, &ours);
    if by_name.count() == 0 {
        let values = weights.iter().map(|(k, v)| (k.to_string(), v.data.clone())).collect();
        return Ok(Fitted { values, stored });
    }
    let (values, by_order) = fit_by_order(&weights, &layers);
    if by_order.count() == 0 {
        return Ok(Fitted { values, stored });
    }
    // Report in the terms of the layout the checkpoint is closest to.
    let shared = weights.iter().filter(|(k, _)| ours.contains_key(k)).count();
    Err(if 2 * shared >= weights.len() { by_name } else { by_order })
}

fn fit_by_name(weights: &[(&str, &TensorValue)], layers: &[Vec<Param>], ours: &HashMap<&str, &Param>) -> Misfit {
    let theirs: HashSet<&str> = weights.iter().map(|(k, _)| *k).collect();
    let missing = layers.iter().flatten().filter(|p| !theirs.contains(p.name.as_str())).map(|p| p.name.clone()).collect();
    let mut m = Misfit { missing, ..Misfit::default() };
    for (k, v) in weights {
        match ours.get(k) {
            None => m.unexpected.push(short(k)),
            Some(p) if p.shape != v.shape => m.misshaped.push(format!("{} (checkpoint {}, arch {})", short(k), shape_str(&v.shape), shape_str(&p.shape))),
            Some(_) => {}
        }
    }
    m
}

/// The checkpoint's layers (keys grouped by prefix, in first-seen order) against ours.
fn fit_by_order(weights: &[(&str, &TensorValue)], layers: &[Vec<Param>]) -> (HashMap<String, Vec<f32>>, Misfit) {
    let mut groups: Vec<(&str, Vec<(&str, &TensorValue)>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for &(k, v) in weights {
        let (prefix, local) = split_key(k);
        let i = *index.entry(prefix).or_insert_with(|| {
            groups.push((prefix, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((local, v));
    }
    let mut values = HashMap::new();
    let mut m = Misfit::default();
    for i in 0..groups.len().max(layers.len()) {
        match (groups.get(i), layers.get(i)) {
            (Some((prefix, theirs)), Some(ours)) => {
                let full = |local: &str| short(&if prefix.is_empty() { local.to_string() } else { format!("{prefix}.{local}") });
                for p in ours {
                    match theirs.iter().find(|(l, _)| *l == p.local) {
                        None => m.missing.push(p.name.clone()),
                        Some((l, v)) if v.shape != p.shape => {
                            m.misshaped.push(format!("{} as {} (checkpoint {}, arch {})", full(l), p.name, shape_str(&v.shape), shape_str(&p.shape)))
                        }
                        Some((_, v)) => {
                            values.insert(p.name.clone(), v.data.clone());
                        }
                    }
                }
                m.unexpected.extend(theirs.iter().filter(|(l, _)| !ours.iter().any(|p| p.local == *l)).map(|(l, _)| full(l)));
            }
            (Some((prefix, theirs)), None) => {
                m.unexpected.extend(theirs.iter().map(|(l, _)| short(&if prefix.is_empty() { l.to_string() } else { format!("{prefix}.{l}") })))
            }
            (None, Some(ours)) => m.missing.extend(ours.iter().map(|p| p.name.clone())),
            (None, None) => {}
        }
    }
    (values, m)
}

/// Checks a normalisation against the input's channels; one value serves every channel.
fn per_channel(n: &Normalization, channels: usize, origin: &str) -> std::result::Result<Normalization, String> {
    let (mean, std) = crate::net::normalize::per_channel(&n.mean, &n.std, channels, origin)?;
    Ok(Normalization { mean, std })
}

fn build(fitted: Fitted, spec: &NetSpec, normalize: Option<&Normalization>, path: &Path, device: &Device) -> Result<Network> {
    let channels = spec.input_shape[0];
    let chosen = match (normalize, &fitted.stored) {
        (Some(given), Some(stored)) => {
            tracing::warn!("{}: the given normalisation replaces the one stored in the checkpoint (mean {:?}, std {:?})", path.display(), stored.mean, stored.std);
            Some(per_channel(given, channels, "the given normalisation").map_err(Error::input)?)
        }
        (Some(given), None) => Some(per_channel(given, channels, "the given normalisation").map_err(Error::input)?),
        (None, Some(stored)) => Some(per_channel(stored, channels, "the stored normalisation").map_err(|e| Error::file(path, e))?),
        (None, None) => None,
    };
    let spec = match chosen {
        Some(n) => spec.with_normalize(n.mean, n.std),
        None => spec.clone(),
    };
    let mut values = fitted.values;
    spec.build(device, &mut |name, _| values.remove(name).ok_or_else(|| Error::internal(format!("parameter {name} was not assigned"))))
        // A bad value in the checkpoint (NaN weight, say) is the checkpoint's fault: name it.
        .map_err(|e| match e {
            Error::InvalidInput(m) => Error::file(path, m),
            other => other,
        })
}
