//! `ironbound merge`: the shard files of `certify --shard` (report.json) or `verify
//! --instances --shard` (results.csv), or the shard directories of `analyze tightness
//! --shard`, combined into what one unsharded run writes.

use crate::common;
use clap::Parser;
use ironbound::error::{Error, Result};
use ironbound::io::atomic;
use ironbound::verify::shard::{self, Merged};
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// The merged report.json or results.csv (a directory for `analyze tightness` shards).
    #[arg(long)]
    out: PathBuf,
    /// Every shard's file (1/N ... N/N, in any order); their kind is read from their content.
    #[arg(required = true, value_name = "SHARD")]
    shards: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if a.shards.iter().all(|p| p.is_dir()) {
        return merge_tightness(&a);
    }
    common::check_output(&a.out)?;
    let files = a
        .shards
        .iter()
        .map(|p| std::fs::read_to_string(p).map(|t| (p.display().to_string(), t)).map_err(|e| Error::file(p, format!("cannot read: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    match shard::merge(&files)? {
        Merged::Report(report) => {
            common::write_json(&a.out, &report)?;
            eprintln!("merged {} shards: n={} clean={:.4} into {}", files.len(), report.n, report.clean_accuracy, a.out.display());
        }
        Merged::ResultsCsv(text) => {
            atomic::write_bytes(&a.out, text.as_bytes())?;
            eprintln!("merged {} shards: {} instances into {}", files.len(), text.lines().count().saturating_sub(1), a.out.display());
        }
    }
    Ok(())
}

/// `analyze tightness --shard` directories into the unsharded run's directory.
fn merge_tightness(a: &Args) -> Result<()> {
    use ironbound::analyze::tightness;
    common::check_output_dir(&a.out)?;
    let parts = a.shards.iter().map(|d| tightness::read(d).map(|c| (d.display().to_string(), c))).collect::<Result<Vec<_>>>()?;
    let merged = tightness::merge(&parts)?;
    merged.write(&a.out)?;
    eprintln!("merged {} tightness shards: n={} into {}", parts.len(), merged.n, a.out.display());
    Ok(())
}
