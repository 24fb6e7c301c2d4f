//! `ouro-bench`: measures ouro against a raw io-uring loop (and, as
//! workloads are added, against peer runtimes), every contestant in the
//! same run, and reports medians over several runs with the ratio to the
//! reference contestant.
//!
//! ```sh
//! cargo run --release -p ouro-bench -- nop
//! cargo run --release -p ouro-bench -- timers --runs 9 --json
//! ```
//!
//! Arguments are parsed with `clap`: each workload is a subcommand with its
//! own options, and an unknown workload or option is a clear error.

mod raw;
mod record;
mod report;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

use crate::record::Results;
use crate::workloads::{Settings, Workload};

/// Benchmarks ouro against a raw io-uring loop, in one run: medians over
/// several runs, and ratios against the reference contestant.
#[derive(Debug, Parser)]
#[command(
    name = "ouro-bench",
    subcommand_value_name = "WORKLOAD",
    subcommand_help_heading = "Workloads"
)]
struct Cli {
    /// Print one JSON object per line ({"workload", "contestant", "params",
    /// "metric", "value"}; value is the median) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    workload: Workload,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut results = Results::default();
    if let Err(err) = cli.workload.measure(&cli.settings, &mut results) {
        eprintln!("ouro-bench: {err}");
        return ExitCode::FAILURE;
    }
    let summaries = results.summaries();
    if summaries.is_empty() {
        eprintln!(
            "ouro-bench: nothing was measured: this workload has no contestant named {}",
            cli.settings.only.join(" or ")
        );
        return ExitCode::FAILURE;
    }
    if cli.json {
        print!("{}", report::json_lines(&summaries));
    } else {
        println!("{}", machine_description(cli.settings.runs));
        print!("{}", report::table(&summaries));
    }
    ExitCode::SUCCESS
}

/// Where the numbers come from: kernel, CPUs, ouro's ring setup, runs.
fn machine_description(runs: u32) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("Linux {}", release.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let ring = ouro::Ring::<()>::new(8)
        .map(|ring| ring.backend_description())
        .unwrap_or_else(|err| format!("no ring ({err})"));
    let plural = if runs == 1 { "" } else { "s" };
    format!("{kernel}, {cpus} CPUs, {ring}; median of {runs} run{plural}")
}
