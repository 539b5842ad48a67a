//! A test hook, for the tests that SIGKILL `ironbound train` at exact places
//! (crates/ironbound-cli/tests/train_kill.rs). With `IRONBOUND_FAULT_AT=<point>:<n>` in the
//! environment, the n-th time the process reaches the named point it says so on stderr
//! (`ironbound: IRONBOUND_FAULT_AT: stopped at <point>:<n>`) and then waits forever, for the test
//! to kill it right there. The points:
//! - `step`: after each optimiser step of training;
//! - for every file written through `io::atomic`, named by its file name (e.g.
//!   `checkpoint.safetensors`): `mid-write:<name>` (half of it in the temporary file, only
//!   for `write_bytes`), `before-rename:<name>` (all of it there and synced) and
//!   `after-rename:<name>`.
//!
//! Without the variable (every normal run) a point does nothing; the variable is read once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
static REACHED: AtomicUsize = AtomicUsize::new(0);

/// Marks the named point (see the module documentation).
pub fn point(name: &str) {
    let target = TARGET.get_or_init(|| {
        let value = std::env::var("IRONBOUND_FAULT_AT").ok()?;
        let (point, n) = value.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    });
    if let Some((point, n)) = target {
        if point == name && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("ironbound: IRONBOUND_FAULT_AT: stopped at {name}:{n}");
            loop {
                std::thread::park();
            }
        }
    }
}
