//! `http`: the HTTP/1.1 server example (`ouro/examples/http_server.rs`,
//! keep-alive, one fixed small answer) on io_uring (`ouro-uring`) and on
//! the readiness backend (`ouro-poll`), against the same server on tokio
//! (`tokio`, the reference) and monoio (`monoio`) — a task per connection
//! that reads into its own buffer, answers every complete request with the
//! example's own `respond`, and writes the answers back — so the parsing and
//! the answers are the same code everywhere and only the runtime differs.
//!
//! The load is `wrk -t1 -cN -dSs --latency` (Debian's `wrk`), pinned to
//! CPU 1 with `taskset -c 1`; the server runs in a child process pinned to
//! CPU 0 (see `crate::server`). A run with socket errors or non-2xx answers
//! fails. Params `{"conns": N}` (`--conns`, default 64); metrics: `rps`
//! (wrk's requests per second), `server_cpu_us_per_req` (the server
//! process's CPU time over wrk's run, from `getrusage`, per request),
//! `p50_us` and `p99_us` (wrk's latency distribution), `rss_mb` (the
//! server's resident memory at the end).

use std::io;
use std::process::Command;

use clap::Args;
use serde_json::json;

use super::Settings;
use crate::progress::Progress;
use crate::record::{params, Results, Sample};
use crate::server::{ServerProcess, CLIENT_CPU};
use crate::servers::{Contestant, Protocol};

const WORKLOAD: &str = "http";

/// The contestants, in the order measured in the first run.
pub const CONTESTANTS: [Contestant; 4] = [
    Contestant::OuroUring,
    Contestant::OuroPoll,
    Contestant::Tokio,
    Contestant::Monoio,
];

/// Options of the `http` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Connections wrk keeps open (a comma-separated list, one comparison
    /// per value).
    #[arg(long, value_delimiter = ',', default_values_t = [64], value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub conns: Vec<u32>,
    /// Seconds wrk runs (a whole number).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub secs: u32,
}

/// Measurements made, for the progress bar.
pub fn steps(options: &Options, settings: &Settings) -> u64 {
    let contestants = super::included(settings, &CONTESTANTS, Contestant::name);
    u64::from(settings.runs) * options.conns.len() as u64 * contestants
}

/// Measures every contestant for each connection count, `runs` times.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    results.compare_against(WORKLOAD, Contestant::Tokio.name());
    for run in 0..settings.runs {
        for &conns in &options.conns {
            for contestant in settings.order(&CONTESTANTS, Contestant::name, run) {
                progress.step(format!("http {} conns={conns}", contestant.name()));
                let measured = measure_once(contestant, conns, options.secs).map_err(|e| {
                    io::Error::new(e.kind(), format!("http {}: {e}", contestant.name()))
                })?;
                progress.done();
                for (metric, value) in measured {
                    results.record(Sample {
                        workload: WORKLOAD,
                        contestant: contestant.name(),
                        params: params([("conns", json!(conns))]),
                        metric,
                        value,
                    });
                }
            }
        }
    }
    Ok(())
}

fn measure_once(
    contestant: Contestant,
    conns: u32,
    secs: u32,
) -> io::Result<Vec<(&'static str, f64)>> {
    let mut server = ServerProcess::start(Protocol::Http, contestant)?;
    let before = server.usage()?;
    let output = Command::new("taskset")
        .args(["-c", &CLIENT_CPU.to_string(), "wrk", "-t1"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg(format!("http://{}/", server.addr))
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `taskset ... wrk` ({e}): install wrk (apt-get install wrk)"),
            )
        })?;
    let after = server.usage()?;
    server.stop()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let report = WrkReport::parse(&text)?;
    let cpu = after.cpu.saturating_sub(before.cpu);
    Ok(vec![
        ("rps", report.rps),
        (
            "server_cpu_us_per_req",
            cpu.as_secs_f64() * 1e6 / report.requests as f64,
        ),
        ("p50_us", report.p50_us),
        ("p99_us", report.p99_us),
        ("rss_mb", after.rss_kb as f64 / 1024.0),
    ])
}

/// What wrk printed.
#[derive(Debug, PartialEq)]
struct WrkReport {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

impl WrkReport {
    /// Reads wrk's report; an error if it reports errors or misses a figure.
    fn parse(text: &str) -> io::Result<WrkReport> {
        let fail = |what: &str| io::Error::other(format!("{what} in wrk's report:\n{text}"));
        if text.contains("Socket errors") || text.contains("Non-2xx") {
            return Err(fail("errors"));
        }
        let requests = text
            .lines()
            .find_map(|l| l.trim().split(" requests in ").next()?.parse().ok())
            .ok_or_else(|| fail("no request count"))?;
        let rps = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
            .ok_or_else(|| fail("no Requests/sec"))?;
        let percentile = |label: &str| {
            text.lines().find_map(|l| {
                let value = l.trim().strip_prefix(label)?.trim();
                duration_us(value)
            })
        };
        let p50_us = percentile("50%").ok_or_else(|| fail("no 50% latency"))?;
        let p99_us = percentile("99%").ok_or_else(|| fail("no 99% latency"))?;
        if requests == 0 {
            return Err(fail("no request"));
        }
        Ok(WrkReport {
            requests,
            rps,
            p50_us,
            p99_us,
        })
    }
}

/// wrk's durations (`512.00us`, `1.25ms`, `2.00s`) in microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let units = [("us", 1.0), ("ms", 1e3), ("m", 60e6), ("s", 1e6)];
    units.iter().find_map(|&(unit, scale)| {
        let number: f64 = text.strip_suffix(unit)?.parse().ok()?;
        Some(number * scale)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 2s test @ http://127.0.0.1:40000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.25us   80.10us   2.31ms   90.12%
    Req/Sec   155.10k     3.02k  160.00k    71.00%
  Latency Distribution
     50%  401.00us
     75%  430.00us
     90%  470.00us
     99%    1.02ms
  308642 requests in 2.00s, 31.50MB read
Requests/sec: 154321.00
Transfer/sec:     15.75MB
";

    #[test]
    fn reads_requests_rate_and_percentiles() {
        assert_eq!(
            WrkReport::parse(REPORT).unwrap(),
            WrkReport {
                requests: 308642,
                rps: 154321.0,
                p50_us: 401.0,
                p99_us: 1020.0,
            }
        );
    }

    #[test]
    fn errors_and_missing_figures_are_refused() {
        let with_errors = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(WrkReport::parse(&with_errors).is_err());
        assert!(WrkReport::parse("Running 2s test").is_err());
        assert_eq!(duration_us("2.00s"), Some(2e6));
    }
}
