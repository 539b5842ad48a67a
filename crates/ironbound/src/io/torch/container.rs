//! The two file layouts of `torch.save`: where the main pickle is and where each storage's
//! bytes are.
//!
//! - zip (torch >= 1.6): `<prefix>/data.pkl` and one member `<prefix>/data/<key>` per storage,
//!   `<prefix>/byteorder` when written on a big-endian machine;
//! - legacy (`_use_new_zipfile_serialization=False`, and every file before 1.6): five things in
//!   a row: the magic-number pickle, the protocol-version pickle, the sys-info pickle, the main
//!   pickle, the pickled list of storage keys; then each storage as an 8-byte element count
//!   followed by its raw elements, in the order of that list.

use super::object::{Object, Pickle, Value};
use super::pickle;
use super::zip::{self, Zip};
use std::borrow::Cow;
use std::collections::HashMap;

/// `torch.serialization.MAGIC_NUMBER` and `PROTOCOL_VERSION` of the legacy format.
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i128 = 1001;

/// A checkpoint opened but not yet converted: its main pickle and its storages.
pub struct Container<'a> {
    pub pickle: Pickle,
    pub big_endian: bool,
    storages: Storages<'a>,
}

enum Storages<'a> {
    Zip { zip: Zip<'a>, prefix: String },
    Legacy(HashMap<String, &'a [u8]>),
}

impl<'a> Container<'a> {
    pub fn open(data: &'a [u8]) -> Result<Container<'a>, String> {
        if zip::looks_like_zip(data) {
            open_zip(data)
        } else if data.starts_with(&[0x80]) {
            open_legacy(data)
        } else if data.get(257..262) == Some(b"ustar") {
            Err("a tar archive: the tar checkpoint format of torch < 0.4 is not supported (re-save it with a newer torch)".into())
        } else {
            Err("not a PyTorch checkpoint (no zip archive and no pickle magic)".into())
        }
    }

    /// The bytes of storage `key` (the whole root storage) and its name for messages.
    pub fn storage(&self, key: &str) -> Result<(Cow<'a, [u8]>, String), String> {
        match &self.storages {
            Storages::Zip { zip, prefix } => {
                let name = format!("{prefix}data/{key}");
                match zip.read(&name) {
                    Some(bytes) => Ok((bytes?, name)),
                    None => Err(format!("missing storage '{name}'")),
                }
            }
            Storages::Legacy(spans) => {
                let bytes = spans.get(key).ok_or_else(|| format!("missing storage '{key}'"))?;
                Ok((Cow::Borrowed(*bytes), key.to_string()))
            }
        }
    }
}

fn open_zip(data: &[u8]) -> Result<Container<'_>, String> {
    let zip = Zip::open(data)?;
    // `<prefix>/data.pkl`: the prefix is "archive" or the file's stem, whatever it was saved as.
    let pkl = zip
        .names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or("a zip archive without a data.pkl member: not a PyTorch checkpoint")?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let bytes = zip.read(&pkl).ok_or("data.pkl vanished")??;
    let pickle = pickle::load(&bytes).map_err(|e| format!("corrupt pickle '{pkl}': {e}"))?;
    let big_endian = match zip.read(&format!("{prefix}byteorder")) {
        Some(order) => order?.as_ref() == b"big",
        None => false,
    };
    Ok(Container { pickle, big_endian, storages: Storages::Zip { zip, prefix } })
}

/// One pickle of the legacy sequence, starting at `*pos`.
fn next_pickle(data: &[u8], pos: &mut usize, what: &str) -> Result<Pickle, String> {
    let rest = data.get(*pos..).unwrap_or(&[]);
    let p = pickle::load(rest).map_err(|e| format!("corrupt {what} pickle at byte {pos}: {e}"))?;
    *pos += p.len;
    Ok(p)
}

fn open_legacy(data: &[u8]) -> Result<Container<'_>, String> {
    let mut pos = 0;
    let magic = pickle::load(data).map_err(|_| "not a PyTorch checkpoint (a pickle, but not torch's magic number)".to_string())?;
    if magic.root != Value::Int(MAGIC) {
        return Err("not a PyTorch checkpoint (a pickle, but not torch's magic number)".into());
    }
    pos += magic.len;
    let version = next_pickle(data, &mut pos, "protocol version")?;
    if version.root != Value::Int(PROTOCOL_VERSION) {
        return Err(format!("unsupported legacy protocol version ({})", version.describe(version.root)));
    }
    let sys_info = next_pickle(data, &mut pos, "sys info")?;
    let big_endian = little_endian_flag(&sys_info) == Some(false);
    let pickle = next_pickle(data, &mut pos, "main")?;
    let keys = next_pickle(data, &mut pos, "storage keys")?;
    let keys: Vec<String> = keys
        .items(keys.root)
        .ok_or("the storage key list is not a list")?
        .iter()
        .map(|&k| keys.str(k).map(str::to_string).ok_or("a storage key is not a string"))
        .collect::<Result<_, _>>()?;
    let sizes: HashMap<&str, Option<usize>> = pickle.storages().map(|s| (s.key.as_str(), s.dtype.size())).collect();
    let mut spans = HashMap::new();
    for key in keys {
        let elem = match sizes.get(key.as_str()) {
            Some(Some(n)) => *n,
            Some(None) => return Err(format!("storage '{key}' has an unknown element type")),
            None => return Err(format!("storage '{key}' is listed but nothing refers to it")),
        };
        let count = data.get(pos..pos + 8).ok_or_else(|| format!("truncated storage '{key}'"))?;
        let count: [u8; 8] = count.try_into().map_err(|_| format!("truncated storage '{key}'"))?;
        let count = if big_endian { u64::from_be_bytes(count) } else { u64::from_le_bytes(count) };
        let start = pos + 8;
        let bytes = count
            .checked_mul(elem as u64)
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| data.get(start..start.checked_add(n)?))
            .ok_or_else(|| format!("truncated storage '{key}'"))?;
        pos = start + bytes.len();
        spans.insert(key, bytes);
    }
    Ok(Container { pickle, big_endian, storages: Storages::Legacy(spans) })
}

/// `sys_info['little_endian']`, if the pickle says.
fn little_endian_flag(p: &Pickle) -> Option<bool> {
    let Some(Object::Dict(entries)) = p.get(p.root) else { return None };
    entries.iter().find(|(k, _)| p.str(*k) == Some("little_endian")).and_then(|(_, v)| match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    })
}
