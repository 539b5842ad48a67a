//! The zip container of `torch.save` (torch >= 1.6): a minimal reader of our own.
//!
//! torch writes stored (uncompressed) entries, ZIP64 records past 4 GiB, and pads local
//! headers so that data are aligned. Reading the central directory ourselves keeps every
//! offset and size checked against the file before anything is sliced or allocated; deflated
//! entries (an archive re-zipped by hand) are inflated up to their declared size.

use std::borrow::Cow;
use std::io::Read;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;
/// Deflate cannot expand by more than this factor (plus a little), so a larger declared size
/// is corrupt, not merely large.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// One member of the archive: where its data are and how they are stored.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    method: u16,
    compressed: u64,
    size: u64,
    header: u64,
}

pub struct Zip<'a> {
    data: &'a [u8],
    entries: Vec<Entry>,
}

/// Whether `data` starts like a zip archive (a local file header).
pub fn looks_like_zip(data: &[u8]) -> bool {
    data.starts_with(&LOCAL.to_le_bytes())
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn to_usize(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

impl<'a> Zip<'a> {
    /// Reads the central directory. Errors are plain reasons.
    pub fn open(data: &'a [u8]) -> Result<Zip<'a>, String> {
        let (cd_offset, cd_size) = find_directory(data).ok_or("truncated or corrupt zip archive (no end of central directory record)")?;
        let cd = to_usize(cd_offset)
            .zip(to_usize(cd_size))
            .and_then(|(o, s)| data.get(o..o.checked_add(s)?))
            .ok_or("truncated zip archive (central directory past the end of the file)")?;
        let mut entries = Vec::new();
        let mut at = 0usize;
        while at < cd.len() {
            let entry = parse_central(cd, at).ok_or("corrupt zip central directory")?;
            at = entry.1;
            entries.push(entry.0);
        }
        Ok(Zip { data, entries })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The data of member `name`: None if absent, Err if it cannot be read.
    pub fn read(&self, name: &str) -> Option<Result<Cow<'a, [u8]>, String>> {
        let e = self.entries.iter().find(|e| e.name == name)?;
        Some(self.read_entry(e))
    }

    fn read_entry(&self, e: &Entry) -> Result<Cow<'a, [u8]>, String> {
        let truncated = || format!("truncated zip member '{}'", e.name);
        let h = to_usize(e.header).ok_or_else(truncated)?;
        if u32_at(self.data, h) != Some(LOCAL) {
            return Err(format!("corrupt zip member '{}' (no local header)", e.name));
        }
        let name_len = u16_at(self.data, h + 26).ok_or_else(truncated)? as usize;
        let extra_len = u16_at(self.data, h + 28).ok_or_else(truncated)? as usize;
        let start = h + 30 + name_len + extra_len;
        let raw = to_usize(e.compressed)
            .and_then(|n| self.data.get(start..start.checked_add(n)?))
            .ok_or_else(truncated)?;
        match e.method {
            0 => Ok(Cow::Borrowed(raw)),
            8 => {
                if e.size > e.compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
                    return Err(format!("corrupt zip member '{}' (impossible compression ratio)", e.name));
                }
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .take(e.size)
                    .read_to_end(&mut out)
                    .map_err(|err| format!("corrupt zip member '{}': {err}", e.name))?;
                Ok(Cow::Owned(out))
            }
            m => Err(format!("zip member '{}' uses compression method {m}, which ironbound cannot read", e.name)),
        }
    }
}

/// (offset, size) of the central directory, from the (ZIP64) end record.
fn find_directory(d: &[u8]) -> Option<(u64, u64)> {
    // The end record is 22 bytes plus a comment of at most 65535 bytes.
    let lowest = d.len().saturating_sub(22 + 65535);
    let eocd = (lowest..=d.len().checked_sub(22)?).rev().find(|&i| u32_at(d, i) == Some(EOCD))?;
    let size = u32_at(d, eocd + 12)? as u64;
    let offset = u32_at(d, eocd + 16)? as u64;
    if size != 0xffff_ffff && offset != 0xffff_ffff {
        return Some((offset, size));
    }
    let locator = eocd.checked_sub(20)?;
    if u32_at(d, locator)? != ZIP64_LOCATOR {
        return None;
    }
    let end64 = to_usize(u64_at(d, locator + 8)?)?;
    if u32_at(d, end64)? != ZIP64_EOCD {
        return None;
    }
    Some((u64_at(d, end64 + 48)?, u64_at(d, end64 + 40)?))
}

/// One central directory record at `at`; returns it and where the next one starts.
fn parse_central(cd: &[u8], at: usize) -> Option<(Entry, usize)> {
    if u32_at(cd, at)? != CENTRAL {
        return None;
    }
    let method = u16_at(cd, at + 10)?;
    let mut compressed = u32_at(cd, at + 20)? as u64;
    let mut size = u32_at(cd, at + 24)? as u64;
    let name_len = u16_at(cd, at + 28)? as usize;
    let extra_len = u16_at(cd, at + 30)? as usize;
    let comment_len = u16_at(cd, at + 32)? as usize;
    let mut header = u32_at(cd, at + 42)? as u64;
    let name = String::from_utf8_lossy(cd.get(at + 46..at + 46 + name_len)?).into_owned();
    let extra = cd.get(at + 46 + name_len..at + 46 + name_len + extra_len)?;
    // ZIP64 extra field: the 64-bit values of the fields saturated above, in this order.
    let mut e = 0;
    while e + 4 <= extra.len() {
        let (id, len) = (u16_at(extra, e)?, u16_at(extra, e + 2)? as usize);
        let body = extra.get(e + 4..e + 4 + len)?;
        if id == 1 {
            let mut k = 0;
            for field in [&mut size, &mut compressed, &mut header] {
                if *field == 0xffff_ffff {
                    *field = u64_at(body, k)?;
                    k += 8;
                }
            }
        }
        e += 4 + len;
    }
    let next = at + 46 + name_len + extra_len + comment_len;
    Some((Entry { name, method, compressed, size, header }, next))
}
