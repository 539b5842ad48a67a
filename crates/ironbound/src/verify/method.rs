//! What `certify --method` and `bounds --method` accept: the bound engines' relaxations, the LP
//! relaxations, the complete MILP, COLT's partial MILPs, and cascades of them.

use super::lp::LpRelaxation;
use crate::bounds::Method;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// COLT's default number of binaries after the last convolution (colt.txt, Section 7).
pub const COLT_BINARIES: usize = 300;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertMethod {
    /// A relaxation of the bound engines.
    Bound(Method),
    /// Triangle or Parallelogram solved as LPs.
    Lp(LpRelaxation),
    /// Tjeng et al.'s MILP: complete.
    Milp,
    /// The last hidden ReLU layer exact, the others Triangle (COLT's second stage).
    MilpLastLayer,
    /// Binaries for the `k` most ambiguous ReLUs after the last convolution (the next-to-last
    /// hidden layer of a fully connected net) and the whole last hidden layer, Triangle for the
    /// rest (COLT's third stage).
    MilpPartial { k: usize },
    /// Try each in order per sample; the first that decides wins.
    Cascade { name: String, stages: Vec<CertMethod> },
}

impl CertMethod {
    pub fn name(&self) -> String {
        match self {
            CertMethod::Bound(m) => m.name().to_string(),
            CertMethod::Lp(r) => r.name().to_string(),
            CertMethod::Milp => "milp".into(),
            CertMethod::MilpLastLayer => "milp-last-layer".into(),
            CertMethod::MilpPartial { k } if *k == COLT_BINARIES => "milp-partial".into(),
            CertMethod::MilpPartial { k } => format!("milp-partial-{k}"),
            CertMethod::Cascade { name, .. } => name.clone(),
        }
    }

    /// COLT's certification (colt.txt, Section 7): alpha-CROWN's learned slopes, then the last
    /// layer as MILP, then `k` binaries after the last convolution.
    pub fn colt(k: usize) -> CertMethod {
        CertMethod::Cascade {
            name: "colt".into(),
            stages: vec![CertMethod::Bound(Method::AlphaCrown), CertMethod::MilpLastLayer, CertMethod::MilpPartial { k }],
        }
    }

    /// A user's cascade from a comma-separated list.
    pub fn cascade(list: &str) -> Result<CertMethod> {
        let stages = parse_cert_methods(list)?;
        if stages.is_empty() {
            return Err(Error::input("--cascade needs at least one method"));
        }
        let name = format!("cascade:{}", stages.iter().map(|s| s.name()).collect::<Vec<_>>().join(">"));
        Ok(CertMethod::Cascade { name, stages })
    }

    /// Whether the method can use a per-sample time budget.
    pub fn uses_solver(&self) -> bool {
        match self {
            CertMethod::Bound(_) => false,
            CertMethod::Cascade { stages, .. } => stages.iter().any(|s| s.uses_solver()),
            _ => true,
        }
    }
}

impl fmt::Display for CertMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

const EXTRA_NAMES: &str = "lp-triangle, lp-parallelogram, milp, milp-last-layer, milp-partial[-K], colt[-K]";

impl FromStr for CertMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        let numbered = |prefix: &str| -> Option<Result<usize>> {
            key.strip_prefix(prefix).map(|k| k.parse::<usize>().map_err(|_| Error::input(format!("method '{s}': '{k}' is not a count of binaries"))))
        };
        Ok(match key.as_str() {
            "lp-triangle" | "triangle" => CertMethod::Lp(LpRelaxation::Triangle),
            "lp-parallelogram" | "parallelogram" => CertMethod::Lp(LpRelaxation::Parallelogram),
            "milp" | "complete" | "exact" => CertMethod::Milp,
            "milp-last-layer" => CertMethod::MilpLastLayer,
            "milp-partial" => CertMethod::MilpPartial { k: COLT_BINARIES },
            "colt" => CertMethod::colt(COLT_BINARIES),
            _ => {
                if let Some(k) = numbered("milp-partial-") {
                    CertMethod::MilpPartial { k: k? }
                } else if let Some(k) = numbered("colt-") {
                    CertMethod::colt(k?)
                } else {
                    match key.parse::<Method>() {
                        Ok(m) => CertMethod::Bound(m),
                        Err(Error::InvalidInput(msg)) => return Err(Error::input(format!("{}, {EXTRA_NAMES})", msg.trim_end_matches(')')))),
                        Err(e) => return Err(e),
                    }
                }
            }
        })
    }
}

/// Parses a comma-separated list of methods. A method named twice (also through an alias,
/// `ibp,box`) is kept once: reports are keyed by name, so a repeat would count samples twice.
pub fn parse_cert_methods(list: &str) -> Result<Vec<CertMethod>> {
    let mut methods: Vec<CertMethod> = Vec::new();
    for m in list.split(',').filter(|s| !s.trim().is_empty()) {
        let m: CertMethod = m.parse()?;
        if !methods.iter().any(|k| k.name() == m.name()) {
            methods.push(m);
        }
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse() {
        assert_eq!("triangle".parse::<CertMethod>().unwrap(), CertMethod::Lp(LpRelaxation::Triangle));
        assert_eq!("exact".parse::<CertMethod>().unwrap(), CertMethod::Milp);
        assert_eq!("box".parse::<CertMethod>().unwrap(), CertMethod::Bound(Method::Ibp));
        assert_eq!("colt-50".parse::<CertMethod>().unwrap(), CertMethod::colt(50));
        assert_eq!("milp-partial".parse::<CertMethod>().unwrap().name(), "milp-partial");
        for m in ["lp-parallelogram", "milp", "colt", "crown", "milp-partial-7"] {
            assert_eq!(m.parse::<CertMethod>().unwrap().name(), m);
        }
        let err = "simplex".parse::<CertMethod>().unwrap_err().to_string();
        assert!(err.contains("unknown method 'simplex'") && err.contains("lp-triangle") && err.contains("crown"), "{err}");
        assert!("colt-x".parse::<CertMethod>().is_err());
        assert_eq!(CertMethod::cascade("ibp, milp").unwrap().name(), "cascade:ibp>milp");
    }

    #[test]
    fn repeated_methods_are_kept_once() {
        let names: Vec<String> = parse_cert_methods("ibp,crown,box,IBP,crown").unwrap().iter().map(CertMethod::name).collect();
        assert_eq!(names, ["ibp", "crown"]);
    }
}
