//! `all`: every workload in one run — `nop`, `timers`, the `echo` grid (1,
//! 16 and 128 connections × 64 B and 4 KiB), `http` under wrk, `idle` and
//! `msg` —
//! each with its defaults, medians over `--runs`; then the goals of the
//! benchmark are checked (see `crate::goals`).

use std::io;

use clap::Args;

use super::{defaults, echo, http, idle, msg, nop, timers, Settings};
use crate::progress::Progress;
use crate::record::Results;

/// Options of `all` (the workloads' own options take their defaults).
#[derive(Debug, Args)]
pub struct Options {
    /// Seconds measured per echo run and per wrk run (wrk's rounded up to
    /// a whole second).
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
    /// Idle connections for `idle`.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub idle_conns: u32,
}

struct Parts {
    nop: nop::Options,
    timers: timers::Options,
    echo: echo::Options,
    http: http::Options,
    idle: idle::Options,
    msg: msg::Options,
}

fn parts(options: &Options) -> io::Result<Parts> {
    super::check_secs(options.secs)?;
    let mut parts = Parts {
        nop: defaults(),
        timers: defaults(),
        echo: defaults(),
        http: defaults(),
        idle: defaults(),
        msg: defaults(),
    };
    parts.echo.secs = options.secs;
    parts.http.secs = options.secs.ceil() as u32;
    parts.idle.conns = options.idle_conns;
    Ok(parts)
}

/// Measurements made, for the progress bar.
pub fn steps(options: &Options, settings: &Settings) -> u64 {
    let Ok(parts) = parts(options) else {
        return 0;
    };
    nop::steps(&parts.nop, settings)
        + timers::steps(&parts.timers, settings)
        + echo::steps(&parts.echo, settings)
        + http::steps(&parts.http, settings)
        + idle::steps(&parts.idle, settings)
        + msg::steps(&parts.msg, settings)
}

/// Measures every workload, one after the other.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    let parts = parts(options)?;
    nop::measure(&parts.nop, settings, results, progress)?;
    timers::measure(&parts.timers, settings, results, progress)?;
    echo::measure(&parts.echo, settings, results, progress)?;
    http::measure(&parts.http, settings, results, progress)?;
    idle::measure(&parts.idle, settings, results, progress)?;
    msg::measure(&parts.msg, settings, results, progress)
}
