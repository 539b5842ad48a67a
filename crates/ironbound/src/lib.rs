//! ironbound: certified training and verification of ReLU networks with convex relaxations.
//!
//! Dependencies point one way: `data`/`io` -> `net` -> `bounds` -> `verify` -> `train`,
//! `analyze`; the `ironbound` binary in `ironbound-cli` only parses and prints.

pub mod analyze;
pub mod bench;
pub mod bounds;
pub mod data;
pub mod error;
pub mod fault;
pub mod io;
pub mod loss;
pub mod net;
pub mod tensor;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
