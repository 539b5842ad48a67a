//! TensorBoard event files for `ironbound train`: every numeric key of each epoch's
//! `metrics.jsonl` object as a scalar (tag = the key, step = the epoch) in `DIR/tb/`.
//!
//! The file is a TFRecord stream (each record: u64 LE length, masked CRC32C of the length,
//! payload, masked CRC32C of the payload) of `tensorflow.Event` protobufs, the first holding
//! `file_version = "brain.Event:2"`. Only the fields TensorBoard reads for scalars are
//! modelled here.
//!
//! Resuming must not show an epoch twice, and a run killed while appending leaves a torn last
//! record. So [`EventLog::open`] rewrites the file atomically to hold exactly the finished
//! epochs of the checkpoint (keeping the wall times already recorded for unchanged epochs, so
//! TensorBoard's time axis stays true), folding any other event files of the directory into
//! it; later epochs are appended one record each.

use super::metrics::EpochMetrics;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The directory inside the run directory.
pub const DIR_NAME: &str = "tb";
/// How TensorBoard recognises an event file.
const PREFIX: &str = "events.out.tfevents.";
const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event` (tensorflow/core/util/event.proto), scalars only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
}

pub mod event {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        #[prost(string, tag = "3")]
        FileVersion(String),
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

pub mod summary {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(string, tag = "1")]
        pub tag: String,
        /// A oneof in the real message: its presence is what makes TensorBoard read the value
        /// as a scalar, so a 0.0 must still be written (a plain proto3 float would not be).
        #[prost(oneof = "value::Kind", tags = "2")]
        pub kind: Option<value::Kind>,
    }

    pub mod value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            #[prost(float, tag = "2")]
            SimpleValue(f32),
        }
    }
}

impl Event {
    /// The scalar `tag` of a summary event, if it has one.
    pub fn scalar(&self, tag: &str) -> Option<f32> {
        match &self.what {
            Some(event::What::Summary(s)) => s.value.iter().find(|v| v.tag == tag).and_then(|v| v.kind.as_ref().map(|summary::value::Kind::SimpleValue(x)| *x)),
            _ => None,
        }
    }
}

/// TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant (so that a CRC of data
/// holding CRCs is not degenerate).
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, payload, its masked CRC.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// The events of a TFRecord stream up to the first record that is torn or fails a check, and
/// how many bytes the good records take.
pub fn read_events(bytes: &[u8]) -> (Vec<Event>, usize) {
    use prost::Message;
    let mut events = Vec::new();
    let mut at = 0;
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    while let Some(head) = bytes.get(at..at + 12) {
        if masked_crc(&head[..8]) != word(&head[8..]) {
            break;
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[..8]);
        let Ok(len) = usize::try_from(u64::from_le_bytes(len)) else { break };
        let Some(end) = (at + 12).checked_add(len).and_then(|e| e.checked_add(4)) else { break };
        let Some(rest) = bytes.get(at + 12..end) else { break };
        let (payload, crc) = rest.split_at(len);
        if masked_crc(payload) != word(crc) {
            break;
        }
        let Ok(event) = Event::decode(payload) else { break };
        events.push(event);
        at = end;
    }
    (events, at)
}

/// The events of one file (see [`read_events`]).
pub fn read_file(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    Ok(read_events(&bytes).0)
}

/// Every numeric key of the epoch's `metrics.jsonl` object (nulls and strings left out).
fn summary(m: &EpochMetrics) -> Result<Summary> {
    let json = serde_json::to_value(m).map_err(Error::internal)?;
    let object = json.as_object().ok_or_else(|| Error::internal("epoch metrics are not a JSON object"))?;
    let value = object
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|x| summary::Value { tag: k.clone(), kind: Some(summary::value::Kind::SimpleValue(x as f32)) }))
        .collect();
    Ok(Summary { value })
}

fn encode(event: &Event) -> Vec<u8> {
    use prost::Message;
    record(&event.encode_to_vec())
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The host name for the file name (TensorBoard only needs the prefix; the rest keeps files
/// of different machines and processes apart, as TensorFlow's writer does).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>`, n counting the files this process
/// named.
fn new_file_name(wall_time: f64) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{PREFIX}{}.{}.{}.{}", wall_time as u64, hostname(), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The event files in `dir`, oldest first by the time in their names.
fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
        if entry.file_name().to_string_lossy().starts_with(PREFIX) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    let secs = |p: &PathBuf| -> u64 {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.strip_prefix(PREFIX).and_then(|rest| rest.split('.').next()).and_then(|t| t.parse().ok()).unwrap_or(0)
    };
    files.sort_by_key(|p| (secs(p), p.clone()));
    Ok(files)
}

/// The event file of a run, holding one summary per finished epoch.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    /// Makes `dir` hold one event file with exactly the epochs of `history`, then returns the
    /// log that [`EventLog::append`]s later epochs to it.
    pub fn open(dir: &Path, history: &[EpochMetrics]) -> Result<EventLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create the TensorBoard directory: {e}")))?;
        let existing = event_files(dir)?;
        let mut old: Vec<Event> = Vec::new();
        for path in &existing {
            old.extend(read_file(path)?);
        }
        let t = now();
        // A fresh run (no finished epoch) replaces any old run's events; otherwise the newest
        // file keeps its name and the recorded wall time of every epoch whose values are
        // unchanged.
        let path = match existing.last() {
            Some(first) if !history.is_empty() => first.clone(),
            _ => dir.join(new_file_name(t)),
        };
        let mut times: BTreeMap<i64, (f64, Summary)> = BTreeMap::new();
        let mut version_time = None;
        for e in old {
            match e.what {
                Some(event::What::FileVersion(_)) => {
                    version_time.get_or_insert(e.wall_time);
                }
                Some(event::What::Summary(s)) => {
                    times.entry(e.step).or_insert((e.wall_time, s));
                }
                None => {}
            }
        }
        let mut bytes = Vec::new();
        let mut kept = 0;
        let mut records = Vec::with_capacity(history.len());
        for m in history {
            let s = summary(m)?;
            let step = m.epoch as i64;
            let wall_time = match times.get(&step) {
                Some((w, old)) if *old == s => {
                    kept += 1;
                    *w
                }
                _ => t,
            };
            records.push(Event { wall_time, step, what: Some(event::What::Summary(s)) });
        }
        let version_time = if kept > 0 { version_time.unwrap_or(t) } else { t };
        bytes.extend(encode(&Event { wall_time: version_time, step: 0, what: Some(event::What::FileVersion(FILE_VERSION.into())) }));
        for r in &records {
            bytes.extend(encode(r));
        }
        crate::io::atomic::write_bytes(&path, &bytes)?;
        // TensorBoard reads every event file of a directory: another one would show its epochs
        // a second time.
        for other in existing.iter().filter(|p| **p != path) {
            std::fs::remove_file(other).map_err(|e| Error::file(other, format!("cannot remove the stale event file: {e}")))?;
        }
        Ok(EventLog { path })
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one epoch's summary (a kill mid-write leaves a torn record that the next
    /// [`EventLog::open`] drops).
    pub fn append(&self, m: &EpochMetrics) -> Result<()> {
        let event = Event { wall_time: now(), step: m.epoch as i64, what: Some(event::What::Summary(summary(m)?)) };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::internal(format!("{}: cannot append: {e}", self.path.display())))?;
        file.write_all(&encode(&event)).and_then(|_| file.flush()).map_err(|e| Error::internal(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(epoch: usize, loss: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            loss,
            natural_loss: loss / 2.0,
            robust_loss: (epoch > 1).then_some(loss * 2.0),
            train_accuracy: 0.5,
            clean_accuracy: 0.75,
            certified_accuracy: 0.0,
            certified_accuracy_ibp: 0.125,
            certify_method: "crown".into(),
            pgd_accuracy: None,
            eps: 0.1,
            eps_test: 0.1,
            kappa: 1.0,
            beta: None,
            lr: 1e-3,
            steps: 10 * epoch as u64,
            eval_n: 100,
            eval_split: "test".into(),
            seconds: 1.5,
            train_seconds: 1.0,
            reg_d: None,
            reg_r: None,
            reg_d_weight: None,
            reg_r_weight: None,
            extra: Default::default(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ironbound-tb-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// (step, loss) of every summary event in the directory, over all its event files.
    fn steps(dir: &Path) -> Vec<(i64, f32)> {
        event_files(dir).unwrap().iter().flat_map(|p| read_file(p).unwrap()).filter_map(|e| e.scalar("loss").map(|l| (e.step, l))).collect()
    }

    #[test]
    fn crc32c_test_vectors() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8 of 0xE3069283, worked out by hand.
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn record_framing_matches_tfrecord() {
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[8..12], &masked_crc(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(&r[15..], &masked_crc(b"abc").to_le_bytes());
    }

    #[test]
    fn round_trip_every_numeric_key_and_zero_values() {
        let dir = temp_dir("roundtrip");
        let history = [metrics(1, 2.0), metrics(2, 1.0)];
        let log = EventLog::open(&dir, &history[..1]).unwrap();
        log.append(&history[1]).unwrap();
        let name = log.path().file_name().unwrap().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.strip_prefix(PREFIX).unwrap().split('.').collect();
        assert!(parts[0].parse::<u64>().is_ok() && parts.last().unwrap().parse::<usize>().is_ok(), "{name}");
        let events = read_file(log.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, Some(event::What::FileVersion(FILE_VERSION.into())));
        for (e, m) in events[1..].iter().zip(&history) {
            assert_eq!(e.step, m.epoch as i64);
            let json = serde_json::to_value(m).unwrap();
            let numeric: Vec<(&String, f64)> = json.as_object().unwrap().iter().filter_map(|(k, v)| v.as_f64().map(|x| (k, x))).collect();
            let Some(event::What::Summary(s)) = &e.what else { panic!("not a summary") };
            assert_eq!(s.value.len(), numeric.len());
            for (k, x) in numeric {
                assert_eq!(e.scalar(k), Some(x as f32), "{k}");
            }
            // Strings and nulls are not scalars.
            assert_eq!(e.scalar("certify_method"), None);
            assert_eq!(e.scalar("pgd_accuracy"), None);
        }
        assert_eq!(events[1].scalar("robust_loss"), None);
        assert_eq!(events[2].scalar("robust_loss"), Some(2.0));
        // 0.0 is written (TensorBoard needs the field present).
        assert_eq!(events[1].scalar("certified_accuracy"), Some(0.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resume_after_a_torn_append_shows_each_epoch_once() {
        let dir = temp_dir("torn");
        let history = [metrics(1, 3.0), metrics(2, 2.0), metrics(3, 1.0)];
        let log = EventLog::open(&dir, &history[..1]).unwrap();
        log.append(&history[1]).unwrap();
        let before = read_file(log.path()).unwrap();
        // Killed in the middle of appending epoch 3; the checkpoint holds epochs 1-2.
        let torn = encode(&Event { wall_time: 1.0, step: 3, what: Some(event::What::Summary(summary(&history[2]).unwrap())) });
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(&torn[..torn.len() - 5]).unwrap();
        // A second event file (say, copied in) must not duplicate epochs either.
        std::fs::copy(log.path(), dir.join(format!("{PREFIX}1.other.1.0"))).unwrap();
        let resumed = EventLog::open(&dir, &history[..2]).unwrap();
        assert_eq!(resumed.path(), log.path());
        resumed.append(&history[2]).unwrap();
        assert_eq!(steps(&dir), [(1, 3.0), (2, 2.0), (3, 1.0)]);
        assert_eq!(event_files(&dir).unwrap().len(), 1);
        // The recorded wall times of the unchanged epochs are kept.
        let after = read_file(resumed.path()).unwrap();
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.wall_time, b.wall_time);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fresh_start_replaces_an_old_runs_events() {
        let dir = temp_dir("fresh");
        let old = EventLog::open(&dir, &[metrics(1, 3.0)]).unwrap();
        old.append(&metrics(2, 2.0)).unwrap();
        // The checkpoint was deleted: training starts over with other values.
        let new = EventLog::open(&dir, &[]).unwrap();
        assert_ne!(new.path(), old.path());
        new.append(&metrics(1, 5.0)).unwrap();
        assert_eq!(steps(&dir), [(1, 5.0)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_stops_the_reader_without_a_panic() {
        let good = encode(&Event { wall_time: 2.0, step: 1, what: Some(event::What::FileVersion(FILE_VERSION.into())) });
        for bytes in [vec![], vec![0xff; 11], vec![0xff; 40], [good.clone(), vec![1, 2, 3]].concat()] {
            let (events, used) = read_events(&bytes);
            assert!(events.len() <= 1 && used <= good.len());
        }
        let mut flipped = good.clone();
        flipped[14] ^= 1;
        assert_eq!(read_events(&flipped), (vec![], 0));
        assert_eq!(read_events(&good).1, good.len());
    }
}
