//! Verification pipelines: certification of datasets, LP/MILP, attacks.

pub mod bab;
pub mod bounds_table;
pub mod certify;
pub mod falsify;
pub mod lp;
pub mod method;
pub mod pgd;
pub mod property;
pub mod shard;

pub use bounds_table::{bounds_table, BoundsOptions, BoundsTable};
pub use certify::{certify, CertifyConfig, Outcome, Report};
pub use method::{parse_cert_methods, CertMethod};
pub use pgd::PgdConfig;
pub use shard::Shard;
