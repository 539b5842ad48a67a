//! Analyses of relaxations and trained models (paradox, loss-landscape papers): each one
//! computes its numbers here and writes CSV/JSON plus a figure.

pub mod connectivity;
pub mod cross;
pub mod landscape;
pub mod plot;
pub mod report;
pub mod scan;
pub mod tightness;
pub mod violin;
