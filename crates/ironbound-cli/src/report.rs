//! `ironbound report RUN_DIR`: one self-contained HTML page for a training run.

use clap::Parser;
use ironbound::error::Result;
use std::path::PathBuf;

#[derive(Parser)]
pub struct Args {
    /// A training run directory (with metrics.jsonl; analyses in it or its subdirectories
    /// are included).
    run: PathBuf,
    /// Output file (default RUN_DIR/report.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("report.html"));
    crate::common::check_output(&out)?;
    let page = ironbound::analyze::report::render(&a.run)?;
    ironbound::io::atomic::write_bytes(&out, page.as_bytes())?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
