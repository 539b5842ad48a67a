//! `ironbound bench`: times the workloads of shared/bench/WORKLOADS.md.

use clap::Parser;
use ironbound::bench;
use ironbound::error::{Error, Result};
use ironbound::tensor::default_device;

#[derive(Parser)]
pub struct Args {
    /// Comma-separated workloads (default: all eight).
    #[arg(long)]
    workload: Option<String>,
    /// Timed iterations per workload.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Worker threads for the tensor kernels.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let names = bench::parse_workloads(a.workload.as_deref())?;
    if a.threads == 0 {
        return Err(Error::input("--threads must be at least 1"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .map_err(|e| Error::internal(format!("cannot set up {} threads: {e}", a.threads)))?;
    let device = default_device();
    for name in names {
        let t = bench::run(&name, a.iters, a.warmup, a.threads, &device)?;
        if a.json {
            println!("{}", serde_json::to_string(&t).map_err(Error::internal)?);
        } else {
            let rate = t.gflops.map_or(String::new(), |g| format!("   {g:.1} GFLOP/s"));
            println!("{:<30} median {:>10.2} ms   min {:>10.2} ms   ({} iters, {} threads){rate}", t.workload, t.ms_median, t.ms_min, t.iters, t.threads);
        }
    }
    Ok(())
}
