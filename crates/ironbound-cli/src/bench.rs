//! `ironbound bench`: placeholder until the workloads land.
use clap::Parser;
use ironbound::error::Result;

#[derive(Parser)]
pub struct Args {}

pub fn run(_a: Args) -> Result<()> {
    Ok(())
}
