//! One error type for the library. Every variant says whether the user can fix it
//! (bad input: exit code 2 in the CLI) or not (exit code 1).

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given by the user is invalid (flag, shape, method name, NaN input...).
    #[error("{0}")]
    InvalidInput(String),
    /// A file given by the user cannot be read or is not what it should be.
    #[error("{}: {reason}", path.display())]
    InvalidFile { path: PathBuf, reason: String },
    /// A model uses something ironbound does not support (operator, attribute value).
    #[error("{0}")]
    Unsupported(String),
    /// A dataset cannot be found locally nor downloaded.
    #[error("{0}")]
    DatasetUnavailable(String),
    /// Anything else: a bug, an I/O failure while writing, a failed download.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Exit code for the command-line tool: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Internal(_) => 1,
            _ => 2,
        }
    }

    pub fn input(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// The reason's control characters are escaped: it may quote the file (a key, a name, a
    /// storage id) and the contract promises one line per error.
    pub fn file(path: impl AsRef<Path>, reason: impl std::fmt::Display) -> Self {
        Error::InvalidFile { path: path.as_ref().to_path_buf(), reason: one_line(&reason.to_string()) }
    }

    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), so that text quoted from user input
/// cannot split a message over lines.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Return early with an `InvalidInput` error when a condition fails.
#[macro_export]
macro_rules! ensure_input {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::error::Error::InvalidInput(format!($($fmt)+)));
        }
    };
}

thread_local! {
    static EXPECTING_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs third-party code that may panic on malformed input (a parser fed a hostile file),
/// turning a panic into `Err(())`. While it runs, [`panic_expected`] is true on this thread,
/// so that a process-wide panic hook (the CLI's, which reports a bug on stderr) stays quiet
/// and the caller's one-line error is the only message.
pub fn catch_panic<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::result::Result<T, ()> {
    let before = EXPECTING_PANIC.with(|e| e.replace(true));
    let result = std::panic::catch_unwind(f);
    EXPECTING_PANIC.with(|e| e.set(before));
    result.map_err(|_| ())
}

/// Whether the current thread is inside [`catch_panic`].
pub fn panic_expected() -> bool {
    EXPECTING_PANIC.with(|e| e.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_stay_on_one_line() {
        // Found by fuzz_readers and torch_fuzz: reasons quote names from the file (an .npz
        // member, a checkpoint's storage key) that may hold a newline.
        let e = Error::file("m.pt", "storage '\n38' is listed but nothing refers to it");
        assert_eq!(e.to_string(), "m.pt: storage '\\n38' is listed but nothing refers to it");
        assert_eq!(one_line("a\r\tb\u{1b}é"), "a\\r\\tb\\u{1b}é");
    }
}
