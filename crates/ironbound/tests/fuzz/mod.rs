//! The seeded-mutation fuzzing engine behind `fuzz_readers.rs` (cargo-fuzz needs a nightly
//! toolchain; this runs on stable, in `cargo test`).
//!
//! Each reader's harness turns a deterministic random stream into one input (a few small
//! files, mutated from real files written by the test itself), writes it into a work
//! directory and calls the reader on it. A case fails when the reader panics, takes longer
//! than [`case_limit`], allocates more than [`MEMORY_CAP`] on the fuzzing thread, or rejects
//! the input with an error that spans lines or does not name the file (the contract's
//! one-line error). A failing input is saved as `target/fuzz-failures/NAME-<hash>.bin` (one
//! file per input file when a case has several: `NAME-<hash>.<file name>`).
//!
//! Two failures cannot be reported from inside the process: a hang (the watchdog saves the
//! input and exits after [`HANG`]) and an allocation so large that the allocator refuses it
//! (the process aborts with "memory allocation of N bytes failed"; the input is then still in
//! `target/fuzz-failures/work/NAME-<pid>/`).

pub mod data;
pub mod models;
pub mod npy;
pub mod text;

use ironbound::Error;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- memory

/// Most bytes one case may hold live on its thread at once. Inputs are a few KiB, so a
/// reader that needs more believed a size field instead of the bytes that are really there.
pub const MEMORY_CAP: isize = 256 << 20;

/// A single request above this is refused (null), so that a size claimed by a hostile header
/// becomes an immediate, attributable abort instead of the machine swapping.
const REFUSE: usize = 4 << 30;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// The test binary's allocator: the system's, counting the bytes of the thread running a
/// case. (Constant-initialised thread locals without destructors do not allocate, so they
/// are safe to touch from inside the allocator.)
pub struct Counting;

/// Records `delta` live bytes for a request of `size`; false when the request is refused.
fn note(delta: isize, size: usize) -> bool {
    if !ARMED.try_with(Cell::get).unwrap_or(false) {
        return true;
    }
    if size > REFUSE {
        return false;
    }
    let _ = LIVE.try_with(|l| {
        let live = l.get() + delta;
        l.set(live);
        let _ = PEAK.try_with(|p| p.set(p.get().max(live)));
    });
    true
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size() as isize, layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size() as isize, layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), 0);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size as isize - layout.size() as isize, new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f`, returning its result and the peak of bytes it held live on this thread.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, PEAK.with(Cell::get))
}

// ---------------------------------------------------------------- randomness

/// SplitMix64: tiny, fast and good enough to drive mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Integers that often sit on a boundary when written over a size, a count or an offset.
pub const INTERESTING: &[u64] = &[
    0, 1, 2, 3, 4, 7, 8, 10, 16, 28, 32, 64, 127, 128, 255, 256, 1000, 3072, 0x7fff, 0x8000, 0xffff, 0x1_0000, 1_000_000,
    0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff, 1 << 32, 1_000_000_000_000, 1 << 40, i64::MAX as u64, 1 << 63,
    u64::MAX - 1, u64::MAX,
];

/// The same as decimal text, plus the numbers text formats get wrong.
pub const INTERESTING_TEXT: &[&str] = &[
    "0", "1", "-1", "-0", "2", "3", "28", "255", "256", "65535", "2147483648", "4294967295", "4294967296",
    "1000000000000", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551615",
    "18446744073709551616", "99999999999999999999999", "1e308", "1e309", "-1e309", "1e-320", "nan", "inf", "-inf",
    "NaN", "0.5", "-0.5", "1.0e10", "0x10", "1_000", "+1", "00", "1e", ".", "",
];

// ---------------------------------------------------------------- mutations

/// Applies 1 to 8 random edits to `data`: bit flips, random and boundary values (1, 2, 4 or
/// 8 bytes, either byte order), deletions, insertions, duplicated and spliced blocks (from
/// `donors`, other real files), truncation, a number replaced by boundary text and runs of
/// opening brackets. Half the positions fall in `data[..hot]` when `hot > 0` (a header).
pub fn havoc(rng: &mut Rng, data: &mut Vec<u8>, donors: &[Vec<u8>], hot: usize) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        let pos = if hot > 0 && rng.chance(1, 2) { rng.below(hot.min(len)) } else { rng.below(len) };
        match rng.below(13) {
            0 if len > 0 => data[pos] ^= 1 << rng.below(8),
            1 if len > 0 => data[pos] = rng.next() as u8,
            2 | 3 => {
                let (width, v, little) = (*rng.pick(&[1usize, 2, 4, 8]), *rng.pick(INTERESTING), rng.chance(1, 2));
                put_int(data, pos, width, v, little);
            }
            4 if len > 0 => data[pos] = data[pos].wrapping_add(rng.below(35) as u8).wrapping_sub(17),
            5 if len > 0 => {
                let n = 1 + rng.below(32.min(len - pos));
                data.drain(pos..pos + n);
            }
            6 => {
                let n = 1 + rng.below(64);
                let fill: Vec<u8> = if rng.chance(1, 2) { vec![rng.next() as u8; n] } else { (0..n).map(|_| rng.next() as u8).collect() };
                data.splice(pos..pos, fill);
            }
            7 if len > 0 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(256));
                let block = data[from..from + n].to_vec();
                data.splice(pos..pos, block);
            }
            8 if !donors.is_empty() => {
                let donor = rng.pick(donors);
                if !donor.is_empty() {
                    let from = rng.below(donor.len());
                    let n = 1 + rng.below((donor.len() - from).min(512));
                    let end = if rng.chance(1, 2) { (pos + n).min(len) } else { pos };
                    data.splice(pos..end, donor[from..from + n].iter().copied());
                }
            }
            9 => data.truncate(pos),
            10 => {
                // A number (a run of ASCII digits at or after `pos`) becomes boundary text.
                if let Some(start) = data[pos..].iter().position(u8::is_ascii_digit).map(|i| pos + i) {
                    let end = start + data[start..].iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
                    let text = rng.pick(INTERESTING_TEXT).as_bytes().to_vec();
                    data.splice(start..end, text);
                }
            }
            11 => {
                let open = *rng.pick(&[b'{', b'[', b'(', b'"', b'\'']);
                let n = *rng.pick(&[1usize, 2, 16, 200, 5000]);
                data.splice(pos..pos, std::iter::repeat_n(open, n));
            }
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => data.push(rng.next() as u8),
        }
    }
}

/// Writes `v` (as `width` bytes, little- or big-endian) at `at`, if it fits.
pub fn put_int(data: &mut [u8], at: usize, width: usize, v: u64, little: bool) {
    if at + width > data.len() {
        return;
    }
    let bytes = if little { v.to_le_bytes()[..width].to_vec() } else { v.to_be_bytes()[8 - width..].to_vec() };
    data[at..at + width].copy_from_slice(&bytes);
}

/// A boundary value near `typical`: itself, +-1, or an [`INTERESTING`] one.
pub fn near(rng: &mut Rng, typical: u64) -> u64 {
    match rng.below(4) {
        0 => typical.wrapping_add(1),
        1 => typical.wrapping_sub(1),
        _ => *rng.pick(INTERESTING),
    }
}

// ---------------------------------------------------------------- verdicts

/// What a case's reader calls returned; filled by the harness's `exec`.
#[derive(Default)]
pub struct Verdicts {
    rejected: bool,
    problems: Vec<String>,
}

impl Verdicts {
    /// An error must be one line and mention one of `needles` (a file path, a flag).
    pub fn check<T>(&mut self, r: ironbound::Result<T>, needles: &[&str]) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.rejected = true;
                let msg = e.to_string();
                if verbose() {
                    println!("rejected: {}", short(&msg));
                }
                if msg.trim().is_empty() || msg.contains(['\n', '\r']) {
                    self.problems.push(format!("error is not one line: {}", short(&msg)));
                } else if !needles.iter().any(|n| msg.contains(n)) {
                    self.problems.push(format!("error does not name {needles:?}: {}", short(&msg)));
                } else if matches!(e, Error::Internal(_)) {
                    self.problems.push(format!("bad input reported as an internal error (exit 1): {}", short(&msg)));
                }
                None
            }
        }
    }

    /// An error from reading the files of the case directory: it must name the file.
    pub fn file<T>(&mut self, r: ironbound::Result<T>, dir: &Path) -> Option<T> {
        let d = dir.display().to_string();
        self.check(r, &[&d])
    }
}

/// `IRONBOUND_FUZZ_VERBOSE=1` prints every rejection, to see which checks the inputs reach.
fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("IRONBOUND_FUZZ_VERBOSE").is_some_and(|v| v == "1"))
}

/// A message as an escaped string of at most 300 characters, for the failure report.
fn short(msg: &str) -> String {
    let cut: String = msg.chars().take(300).collect();
    format!("{cut:?}{}", if cut.len() < msg.len() { "..." } else { "" })
}

// ---------------------------------------------------------------- the harness

/// Per-case time limit: generous for a few-KiB input, so only a real blow-up trips it.
fn case_limit() -> Duration {
    Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 2 })
}

/// After this long in one case the watchdog gives up on the process.
const HANG: Duration = Duration::from_secs(120);

/// Inputs per reader: `IRONBOUND_FUZZ_CASES`, else a count small enough for every test run.
pub fn cases(default: usize) -> usize {
    std::env::var("IRONBOUND_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `target/fuzz-failures` of the target directory this test was built in.
pub fn failures_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap_or(Path::new(".")).join("fuzz-failures")
}

/// Saves the files of a case; returns the paths written.
fn save(name: &str, files: &[(String, Vec<u8>)]) -> Vec<PathBuf> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    let hash = h.finish();
    let dir = failures_dir();
    let _ = std::fs::create_dir_all(&dir);
    files
        .iter()
        .map(|(f, bytes)| {
            let p = if files.len() == 1 { dir.join(format!("{name}-{hash:016x}.bin")) } else { dir.join(format!("{name}-{hash:016x}.{f}")) };
            let _ = std::fs::write(&p, bytes);
            p
        })
        .collect()
}

thread_local! {
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static PANIC_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keeps panics inside a case (and those the library catches itself) off stderr; the
/// harness reports them with the input instead.
fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ironbound::error::panic_expected() {
                return;
            }
            if IN_CASE.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = format!("{msg}{at}"));
                return;
            }
            default(info);
        }));
    });
}

type Running = Vec<(ThreadId, &'static str, Instant, PathBuf)>;

/// The cases in progress, for the watchdog.
fn running() -> &'static Mutex<Running> {
    static R: OnceLock<Mutex<Running>> = OnceLock::new();
    R.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let hung = running().lock().unwrap_or_else(|e| e.into_inner()).iter().find(|r| r.2.elapsed() > HANG).cloned();
            if let Some((_, name, _, dir)) = hung {
                let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
                    .collect();
                let saved = save(name, &files);
                eprintln!("fuzz {name}: a case has run for over {} s (a hang); input saved as {saved:?}", HANG.as_secs());
                std::process::exit(101);
            }
        });
        Mutex::new(Vec::new())
    })
}

/// Runs `cases(default_cases)` inputs through one reader. `gen` makes a case's files from the
/// random stream; `exec` reads them from the directory and reports through [`Verdicts`],
/// asserting (panicking) on anything accepted that the contract calls bad.
pub fn fuzz(
    name: &'static str,
    default_cases: usize,
    mut gen: impl FnMut(&mut Rng) -> Vec<(String, Vec<u8>)>,
    exec: impl Fn(&Path, &mut Verdicts),
) {
    install_panic_hook();
    let n = cases(default_cases);
    let seed: u64 = std::env::var("IRONBOUND_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let work = failures_dir().join("work").join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (mut done, mut accepted, mut slowest, mut most) = (0usize, 0usize, Duration::ZERO, 0isize);
    // One saved example per kind of failure (its first problem up to the first digit, so
    // that sizes and offsets do not make every case a kind of its own), with a count.
    let mut failures: Vec<(String, String, usize)> = Vec::new();
    let mut failed = 0;
    let started = Instant::now();
    for i in 0..n {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (name, seed, i).hash(&mut h);
        let mut rng = Rng::new(h.finish());
        let files = gen(&mut rng);
        for (f, bytes) in &files {
            std::fs::write(work.join(f), bytes).unwrap();
        }
        running().lock().unwrap_or_else(|e| e.into_inner()).push((std::thread::current().id(), name, Instant::now(), work.clone()));
        let mut verdicts = Verdicts::default();
        IN_CASE.with(|c| c.set(true));
        let t = Instant::now();
        let (outcome, peak) = peak_of(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec(&work, &mut verdicts))));
        let elapsed = t.elapsed();
        IN_CASE.with(|c| c.set(false));
        running().lock().unwrap_or_else(|e| e.into_inner()).retain(|r| r.0 != std::thread::current().id());

        done += 1;
        let mut problems = verdicts.problems;
        if outcome.is_err() {
            problems.push(format!("panicked: {}", PANIC_AT.with(|p| p.borrow().clone())));
        }
        if elapsed > case_limit() {
            problems.push(format!("took {:.1} s (limit {} s)", elapsed.as_secs_f64(), case_limit().as_secs()));
        }
        if peak > MEMORY_CAP {
            problems.push(format!("held {} MiB at once (cap {} MiB)", peak >> 20, MEMORY_CAP >> 20));
        }
        if problems.is_empty() {
            accepted += usize::from(!verdicts.rejected);
        } else {
            failed += 1;
            let kind: String = problems[0].replace(&work.display().to_string(), "").chars().take_while(|c| !c.is_ascii_digit()).take(60).collect();
            match failures.iter_mut().find(|f| f.0 == kind) {
                Some(f) => f.2 += 1,
                None => {
                    let saved = save(name, &files);
                    failures.push((kind, format!("case {i}: {}; input saved as {saved:?}", problems.join("; ")), 1));
                }
            }
            if failed >= 1000 || failures.len() >= 20 {
                break;
            }
        }
        slowest = slowest.max(elapsed);
        most = most.max(peak);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {done} inputs ({accepted} accepted, {} rejected, {} failed) in {secs:.1} s; slowest case {:.1} ms, most memory held {:.1} MiB",
        done - accepted - failed,
        failed,
        slowest.as_secs_f64() * 1e3,
        most as f64 / (1 << 20) as f64
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        let report: Vec<String> = failures.iter().map(|(_, example, n)| format!("{n} like {example}")).collect();
        panic!("fuzz {name}: {failed} failing inputs:\n{}", report.join("\n"));
    }
}
