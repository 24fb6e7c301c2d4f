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

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod chart;
mod figures;
mod goals;
mod progress;
mod raw;
mod record;
mod report;
mod server;
mod servers;
mod workloads;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::progress::Progress;
use crate::record::{Results, Summary};
use crate::workloads::{Settings, Workload};

/// Benchmarks ouro against a raw io-uring loop and peer runtimes (tokio,
/// monoio), in one run: medians over several runs, and ratios against the
/// reference contestant. Servers run pinned to CPU 0, load clients to CPU 1.
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
    /// Also write DIR/results.json (every figure, with min, max, runs and
    /// ratios, and the goals) and DIR/chart.svg (the ratios as bars).
    #[arg(long, global = true, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    workload: Workload,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Workload::Report(options) = &cli.workload {
        return match figures::run(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ouro-bench report: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Workload::Hostile(options) = &cli.workload {
        let output = workloads::hostile::Output {
            json: cli.json,
            out: cli.out.as_deref(),
        };
        return match workloads::hostile::run(options, &output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ouro-bench hostile: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if matches!(cli.workload, Workload::Dns(_)) && !workloads::dns::in_namespaces() {
        return workloads::dns::run_in_namespaces();
    }
    if let Workload::Serve(_) = cli.workload {
        return match cli
            .workload
            .measure(&cli.settings, &mut Results::default(), &Progress::new(0))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ouro-bench serve: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let mut results = Results::default();
    let progress = Progress::new(cli.workload.steps(&cli.settings));
    let measured = cli.workload.measure(&cli.settings, &mut results, &progress);
    progress.finish();
    if let Err(err) = measured {
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
    let machine = machine_description(cli.settings.runs);
    let goals = goals::check(&summaries);
    if cli.json {
        print!("{}", report::json_lines(&summaries));
    } else {
        println!("{machine}");
        print!("{}", report::table(&summaries));
        if !goals.is_empty() {
            print!("\nGoals:\n{}", goals::text(&goals));
        }
    }
    if let Some(dir) = &cli.out {
        if let Err(err) = write_out(dir, &summaries, &goals, &machine) {
            eprintln!("ouro-bench: writing {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Writes results.json and chart.svg into `dir`.
fn write_out(
    dir: &Path,
    summaries: &[Summary],
    goals: &[goals::Goal],
    machine: &str,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let json = report::results_json(summaries, goals, machine, &command);
    let text = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    std::fs::write(dir.join("results.json"), text + "\n")?;
    let notes: Vec<&str> = machine.split("; ").collect();
    let title = "ouro-bench: medians as ratios to the reference contestant";
    std::fs::write(dir.join("chart.svg"), chart::svg(summaries, title, &notes))?;
    Ok(())
}

/// Where the numbers come from: kernel, CPUs, ouro's ring setup, runs,
/// pinning.
fn machine_description(runs: u32) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| format!("Linux {}", release.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    // Online CPUs, not those this (pinned) thread may use.
    // SAFETY: sysconf only reads a configuration value.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let ring = ouro::Ring::<()>::new(8)
        .map(|ring| ring.backend_description())
        .unwrap_or_else(|err| format!("no ring ({err})"));
    let plural = if runs == 1 { "" } else { "s" };
    format!(
        "{kernel}, {cpus} CPUs, {ring}; median of {runs} run{plural}; server workloads pin servers to CPU {}, clients to CPU {}",
        server::SERVER_CPU,
        server::CLIENT_CPU
    )
}
