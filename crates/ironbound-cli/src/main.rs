//! The `ironbound` command: argument parsing and printing only; the work is in the library.

mod analyze;
mod bench;
mod bounds;
mod certify;
mod common;
mod convert;
mod init;
mod merge;
mod report;
mod train;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// Bound computations allocate and free large tensors at a high rate; mimalloc reuses them
// instead of returning pages to the kernel and zero-filling fresh ones each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (the Rust bindings name no constant
/// for it): how long freed memory stays committed before it goes back to the kernel.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never purge: by default mimalloc returns freed segments after 10 ms, and a training step
/// that frees and reallocates its activations every iteration then pays the kernel to zero
/// fresh (huge) pages each time: 10 IBP + 10 natural DM-small steps took 208,857 page faults
/// and 3.86 s of CPU, 704 and 2.96 s without purging (perf stat, one thread). Peak RSS is unchanged; memory is reused instead.
/// `MIMALLOC_PURGE_DELAY` in the environment still overrides this.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is thread-safe and valid at any time (mimalloc docs).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[derive(Parser)]
#[command(name = "ironbound", version, about = "Train provably robust ReLU networks and certify them with convex relaxations")]
struct Cli {
    /// Log level (error, warn, info, debug, trace); also RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    /// Where to compute: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyses of relaxations and models: tightness (CR curves, CR-AUC).
    Analyze(analyze::Args),
    /// Bounds on a model's outputs (and margins) over l-infinity balls around inputs.
    Bounds(bounds::Args),
    /// Clean, certified and PGD accuracy of a model on a dataset.
    Certify(certify::Args),
    /// Read a PyTorch checkpoint (.pt/.pth) into a named architecture and save it as a model.
    Convert(convert::Args),
    /// Save a named architecture with seeded random weights.
    Init(init::Args),
    /// Combine the shard files of `certify --shard` or `verify --instances --shard`.
    Merge(merge::Args),
    /// One self-contained HTML page for a training run (curves, config, analyses).
    Report(report::Args),
    /// Time the reference workloads of shared/bench/WORKLOADS.md.
    Bench(bench::Args),
    /// Train a certifiably robust network (checkpoints every epoch; rerun to resume).
    Train(train::Args),
    /// Decide a VNN-LIB property (sat / unsat / unknown / timeout), or a VNN-COMP benchmark.
    Verify(verify::Args),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // HiGHS reports every time-limited MILP as a warning; the certify report counts those.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{},highs=error", cli.log)));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // A panic is a bug; report it on one line with exit code 1 instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        if ironbound::error::panic_expected() {
            return; // the library turns this panic into an error of its own
        }
        let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("ironbound: internal error{at}: {} (please report this)", one_line(&msg));
    }));
    let device = cli.device.parse().and_then(ironbound::tensor::select_device);
    if let Err(e) = device {
        eprintln!("ironbound: --device: {}", one_line(&e.to_string()));
        return ExitCode::from(e.exit_code() as u8);
    }
    let result = std::panic::catch_unwind(|| match cli.command {
        Command::Analyze(a) => analyze::run(a),
        Command::Bounds(a) => bounds::run(a),
        Command::Certify(a) => certify::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Init(a) => init::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Report(a) => report::run(a),
        Command::Train(a) => train::run(a),
        Command::Verify(a) => verify::run(a),
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("ironbound: {}", one_line(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
        Err(_) => ExitCode::from(1),
    }
}

/// The arguments, or the exit code of a usage error already reported on one line. `--help`
/// and `--version` print their full text and exit 0 as usual.
fn parse_args() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap would print the whole help text to stderr here.
            eprintln!("ironbound: arguments are missing (see --help)");
            ExitCode::from(2)
        }
        _ => {
            // clap's first line is the problem ("error: unexpected argument '--x' found");
            // the usage and tips that follow are what --help shows.
            let text = e.to_string();
            let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid arguments");
            eprintln!("ironbound: {} (see --help)", first.strip_prefix("error: ").unwrap_or(first));
            ExitCode::from(2)
        }
    })
}

/// A message on one line (lines joined by "; "): the contract promises one line of stderr
/// per error, and some messages (from other crates) embed newlines.
fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}
