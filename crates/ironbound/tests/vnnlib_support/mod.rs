//! Property-text builders shared by the VNN-LIB reader tests (`vnnlib.rs`, `vnnlib_properties.rs`).

use std::fmt::Write as _;

pub fn decls(n: usize, m: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        writeln!(s, "(declare-const X_{i} Real)").unwrap();
    }
    for j in 0..m {
        writeln!(s, "(declare-const Y_{j} Real)").unwrap();
    }
    s
}

/// Declarations plus `lo <= X_i <= hi` for every input, one assert each.
pub fn boxed(lo: &[f64], hi: &[f64], m: usize) -> String {
    let mut s = decls(lo.len(), m);
    for (i, (l, h)) in lo.iter().zip(hi).enumerate() {
        writeln!(s, "(assert (>= X_{i} {l:?}))\n(assert (<= X_{i} {h:?}))").unwrap();
    }
    s
}
