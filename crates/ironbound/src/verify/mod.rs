//! Verification pipelines: certification of datasets, attacks.

pub mod certify;
pub mod pgd;

pub use certify::{certify, CertifyConfig, Report};
pub use pgd::PgdConfig;
