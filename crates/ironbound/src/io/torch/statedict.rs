//! Finding the state dict inside a checkpoint's object and reading its tensors.
//!
//! Code releases save either `model.state_dict()` itself or a dict around it (with the epoch,
//! the optimizer state, the arguments...). We look, in order, at the top-level object, then at
//! the values of the usual keys; convex_adversarial saves a list of state dicts (one per
//! cascade stage) under `state_dict`, so a list or tuple whose first element is a state dict
//! counts too. `nn.DataParallel` prefixes every key with `module.`, which is removed.

use super::container::Container;
use super::object::{Object, Pickle, TensorRef, Value};
use super::tensor::{self, Budget};
use super::StateDict;
use std::collections::HashMap;

/// Keys under which code releases keep the state dict, in the order they are tried.
const WRAPPER_KEYS: [&str; 5] = ["state_dict", "model_state_dict", "model", "net", "state_dict_ema"];

/// The state dict of an opened checkpoint, converted to f32.
pub fn read(c: &Container, file_len: usize) -> Result<StateDict, String> {
    let p = &c.pickle;
    let entries = find(p).ok_or_else(|| no_state_dict(p))?;
    let mut budget = Budget::for_file(file_len);
    // Storages are shared between tensors (views); read each member once.
    let mut cache: HashMap<String, (std::borrow::Cow<[u8]>, String)> = HashMap::new();
    let mut out: StateDict = Vec::with_capacity(entries.len());
    let mut position: HashMap<String, usize> = HashMap::new();
    let strip = entries.iter().all(|(k, _)| k.starts_with("module."));
    for (key, t) in entries {
        let name = if strip { key["module.".len()..].to_string() } else { key.to_string() };
        if !cache.contains_key(&t.storage.key) {
            let s = c.storage(&t.storage.key)?;
            cache.insert(t.storage.key.clone(), s);
        }
        let (bytes, label) = &cache[&t.storage.key];
        let needed = t.storage.numel.checked_mul(t.storage.dtype.size().unwrap_or(1) as u64);
        if needed.is_none_or(|n| n > bytes.len() as u64) {
            return Err(format!("truncated storage '{label}'"));
        }
        let value = tensor::read(t, bytes, c.big_endian, &mut budget).map_err(|e| format!("tensor '{}' {e}", short(key)))?;
        // A repeated key keeps its first position and its last value, as a Python dict does.
        match position.get(&name) {
            Some(&i) => out[i].1 = value,
            None => {
                position.insert(name.clone(), out.len());
                out.push((name, value));
            }
        }
    }
    Ok(out)
}

/// The entries of `v` if it is a dict of tensors with string keys (at least one entry).
fn tensor_dict(p: &Pickle, v: Value) -> Option<Vec<(&str, &TensorRef)>> {
    let Some(Object::Dict(entries)) = p.get(v) else { return None };
    if entries.is_empty() {
        return None;
    }
    entries
        .iter()
        .map(|&(k, v)| match p.get(v) {
            Some(Object::Tensor(t)) => Some((p.str(k)?, t)),
            _ => None,
        })
        .collect()
}

/// A dict of tensors, or a list/tuple whose first element is one.
fn tensor_dict_or_list(p: &Pickle, v: Value) -> Option<Vec<(&str, &TensorRef)>> {
    tensor_dict(p, v).or_else(|| p.items(v).and_then(|items| items.first()).and_then(|&first| tensor_dict(p, first)))
}

fn find(p: &Pickle) -> Option<Vec<(&str, &TensorRef)>> {
    if let Some(d) = tensor_dict_or_list(p, p.root) {
        return Some(d);
    }
    let Some(Object::Dict(entries)) = p.get(p.root) else { return None };
    WRAPPER_KEYS.iter().find_map(|want| {
        let (_, v) = entries.iter().find(|(k, _)| p.str(*k) == Some(want))?;
        tensor_dict_or_list(p, *v)
    })
}

/// Why nothing was found, with what the file holds instead.
fn no_state_dict(p: &Pickle) -> String {
    let expected = format!("expected a dict of tensors, or one under {}", WRAPPER_KEYS.join(", "));
    match p.get(p.root) {
        Some(Object::Dict(entries)) => {
            let keys: Vec<String> = entries.iter().take(12).map(|(k, v)| format!("{} ({})", short(p.str(*k).unwrap_or("?")), short(&p.describe(*v)))).collect();
            let more = if entries.len() > 12 { ", ..." } else { "" };
            format!("holds no state dict: its top-level dict has {}{more}; {expected}", if keys.is_empty() { "no keys".into() } else { keys.join(", ") })
        }
        Some(Object::Opaque(what)) if what.ends_with("object") => {
            format!("holds no state dict but {what} (a whole pickled module? save model.state_dict() instead); {expected}")
        }
        _ => format!("holds no state dict but {}; {expected}", p.describe(p.root)),
    }
}

/// A key or description cut to a length that keeps an error message on one readable line.
pub(super) fn short(s: &str) -> String {
    const MAX: usize = 60;
    let s = s.replace(|c: char| c.is_control(), " ");
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}
