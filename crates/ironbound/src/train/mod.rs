//! Training: optimisers (and, later, objectives, schedules and the epoch loop).

pub mod optim;

pub use optim::{Optimizer, OptimizerKind};
