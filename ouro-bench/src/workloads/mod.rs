//! The workloads, one module each. A workload measures every contestant
//! once per run, back to back, rotating which goes first from run to run,
//! and records one [`Sample`](crate::record::Sample) per contestant, params
//! and metric and run.

use std::io;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::progress::Progress;
use crate::record::Results;

pub mod all;
pub mod dns;
pub mod echo;
pub mod hostile;
pub mod http;
pub mod idle;
pub mod msg;
pub mod nop;
pub mod timers;
pub mod tls;

/// How every workload runs: how often, and which contestants.
#[derive(Debug, Args)]
pub struct Settings {
    /// Measured runs per contestant and params; the median is reported.
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Measure only these contestants (a comma-separated list; e.g. to
    /// profile one of them). Ratios need the reference contestant too.
    #[arg(long, global = true, value_delimiter = ',')]
    pub only: Vec<String>,
}

impl Settings {
    /// Whether `contestant` is to be measured.
    pub fn includes(&self, contestant: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == contestant)
    }

    /// The contestants of `all` to measure in `run`: filtered by `--only`
    /// and rotated by `run`, so that no contestant always goes first (on a
    /// cold cache, or right after another one warmed the CPU up).
    pub fn order<T: Copy>(&self, all: &[T], name: fn(T) -> &'static str, run: u32) -> Vec<T> {
        let mut chosen: Vec<T> = all
            .iter()
            .copied()
            .filter(|&c| self.includes(name(c)))
            .collect();
        if !chosen.is_empty() {
            let len = chosen.len();
            chosen.rotate_left(run as usize % len);
        }
        chosen
    }
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// NOPs through ouro against a raw io-uring loop: the cost of ouro's
    /// layer per operation, in ops_per_sec, with 1, 32 and 256 in flight.
    Nop(nop::Options),
    /// Zero-delay timers through ouro, in ops_per_sec: they never reach the
    /// kernel.
    Timers(timers::Options),
    /// A TCP echo server over loopback in ouro-uring, ouro-poll, raw
    /// io-uring, tokio and monoio: rps, server CPU per request, latency,
    /// memory.
    Echo(echo::Options),
    /// The HTTP server example (and tokio's and monoio's) under wrk: rps,
    /// server CPU per request, latency, memory.
    Http(http::Options),
    /// Many idle connections to each echo server: its memory.
    Idle(idle::Options),
    /// Handing work between two threads: ouro's messages (MSG_RING and
    /// eventfd wake-ups), crossbeam-channel and eventfd; round trips
    /// (roundtrips_per_sec, p50_ns) and one-way msgs_per_sec.
    Msg(msg::Options),
    /// TLS over loopback, ouro-tls against tokio-rustls (same rustls and
    /// provider): handshakes_per_sec, cpu_us_per_handshake, mb_per_sec
    /// and cpu_us_per_mb of plaintext in 16 KiB records (not part of `all`).
    Tls(tls::Options),
    /// Address lookups against dnsmasq on loopback, ouro-net's resolver
    /// against getaddrinfo on a thread pool and hickory-resolver on tokio:
    /// lookups_per_sec, p50_us,
    /// p99_us, cpu_us_per_lookup (needs root, unshare and dnsmasq; not
    /// part of `all`).
    Dns(dns::Options),
    /// Every workload above but `tls` and `dns`, in one run, with the
    /// goals checked.
    All(all::Options),
    /// ouro's example servers (echo, HTTP, RESP) on both backends against
    /// hostile clients, a well-behaved client served beside each attack:
    /// a table of latencies, memory, fds and fixed-table slots, and a
    /// failure for every broken bound (not part of `all`).
    Hostile(hostile::Options),
    /// Writes the figures of saved results (`--out DIR`'s results.json)
    /// as Markdown tables, or into a README between `<!-- figures:begin -->`
    /// and `<!-- figures:end -->` (measures nothing).
    Report(crate::figures::Options),
    /// (internal) Runs a server under test; see `server.rs`.
    #[command(hide = true)]
    Serve(crate::server::ServeOptions),
}

impl Workload {
    /// How many measurements the workload makes (for the progress bar).
    pub fn steps(&self, settings: &Settings) -> u64 {
        match self {
            Workload::Nop(options) => nop::steps(options, settings),
            Workload::Timers(options) => timers::steps(options, settings),
            Workload::Echo(options) => echo::steps(options, settings),
            Workload::Http(options) => http::steps(options, settings),
            Workload::Idle(options) => idle::steps(options, settings),
            Workload::Msg(options) => msg::steps(options, settings),
            Workload::Tls(options) => tls::steps(options, settings),
            Workload::Dns(options) => dns::steps(options, settings),
            Workload::All(options) => all::steps(options, settings),
            Workload::Hostile(_) | Workload::Serve(_) | Workload::Report(_) => 0,
        }
    }

    /// Measures the workload as `settings` say, into `results`.
    pub fn measure(
        &self,
        settings: &Settings,
        results: &mut Results,
        progress: &Progress,
    ) -> io::Result<()> {
        match self {
            Workload::Nop(options) => nop::measure(options, settings, results, progress),
            Workload::Timers(options) => timers::measure(options, settings, results, progress),
            Workload::Echo(options) => echo::measure(options, settings, results, progress),
            Workload::Http(options) => http::measure(options, settings, results, progress),
            Workload::Idle(options) => idle::measure(options, settings, results, progress),
            Workload::Msg(options) => msg::measure(options, settings, results, progress),
            Workload::Tls(options) => tls::measure(options, settings, results, progress),
            Workload::Dns(options) => dns::measure(options, settings, results, progress),
            Workload::All(options) => all::measure(options, settings, results, progress),
            Workload::Hostile(options) => hostile::run(options, &hostile::Output::default()),
            Workload::Serve(options) => crate::server::serve(options),
            Workload::Report(options) => crate::figures::run(options),
        }
    }
}

/// A workload's options with every default, as on a command line that
/// gives none.
pub fn defaults<T: Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"));
    T::from_arg_matches(&command.get_matches_from(["defaults"]))
        .expect("every option has a default")
}

/// How many contestants of `all` are measured.
pub fn included<T: Copy>(settings: &Settings, all: &[T], name: fn(T) -> &'static str) -> u64 {
    settings.order(all, name, 0).len() as u64
}

/// Checks a measuring window's length in seconds.
pub fn check_secs(secs: f64) -> io::Result<Duration> {
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--secs must be between 0 and 3600, not {secs}"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(only: &[&str]) -> Settings {
        Settings {
            runs: 1,
            only: only.iter().map(|name| name.to_string()).collect(),
        }
    }

    #[test]
    fn each_contestant_goes_first_in_turn() {
        let all = settings(&[]);
        let name = |c: &'static str| c;
        assert_eq!(all.order(&["raw", "ouro"], name, 0), ["raw", "ouro"]);
        assert_eq!(all.order(&["raw", "ouro"], name, 1), ["ouro", "raw"]);
        assert_eq!(all.order(&["raw", "ouro"], name, 2), ["raw", "ouro"]);
    }

    #[test]
    fn only_keeps_the_named_contestants() {
        let name = |c: &'static str| c;
        assert_eq!(
            settings(&["ouro"]).order(&["raw", "ouro"], name, 1),
            ["ouro"]
        );
        assert!(settings(&["tokio"])
            .order(&["raw", "ouro"], name, 0)
            .is_empty());
    }
}
