//! Training: optimisers, schedules, objectives, checkpoints and the epoch loop of
//! `ironbound train` (see docs/train.md).

pub mod batches;
pub mod checkpoint;
pub mod colt;
pub mod config;
pub mod land;
pub mod landscape;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use config::{Resolved, Sources, TrainConfig, TrainMethod};
pub use metrics::EpochMetrics;
pub use optim::{Optimizer, OptimizerKind};
pub use trainer::{run, Outcome, Progress, RunOptions, Silent};
