//! `ouro-bench`: benchmarks as programs, every contestant in the same run.
//!
//! ```sh
//! cargo run --release -p ouro-bench -- echo                     # conns 1,16,64; size 64
//! cargo run --release -p ouro-bench -- echo --conns 64 --size 64,4096 --runs 5 --json
//! ```
//!
//! Each measurement is repeated `--runs` times (contestants take turns
//! going first) and the median is reported, with the ratio of each
//! contestant's figure to tokio's.

mod echo;

use std::process::ExitCode;
use std::time::Duration;

use echo::{Contestant, Timing};

const USAGE: &str =
    "usage: ouro-bench echo [--conns N,..] [--size B,..] [--runs R] [--secs S] [--json]";

struct Options {
    conns: Vec<usize>,
    sizes: Vec<usize>,
    runs: usize,
    window: Duration,
    /// Contestants to measure (all when empty; ratios need tokio).
    only: Vec<String>,
    json: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    match args.next().as_deref() {
        Some("echo") => {}
        Some(other) => return Err(format!("unknown workload {other:?}; {USAGE}")),
        None => return Err(USAGE.to_string()),
    }
    let mut options = Options {
        conns: vec![1, 16, 64],
        sizes: vec![64],
        runs: 5,
        window: Duration::from_secs(1),
        only: Vec::new(),
        json: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--json" {
            options.json = true;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let list = || -> Result<Vec<usize>, String> {
            value
                .split(',')
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("{flag}: {v:?} is not a number"))
                })
                .collect()
        };
        match flag.as_str() {
            "--conns" => options.conns = list()?,
            "--size" => options.sizes = list()?,
            "--only" => options.only = value.split(',').map(str::to_string).collect(),
            "--runs" => options.runs = value.parse().map_err(|_| format!("--runs: {value:?}"))?,
            "--secs" => {
                let secs: f64 = value.parse().map_err(|_| format!("--secs: {value:?}"))?;
                options.window = Duration::from_secs_f64(secs);
            }
            _ => return Err(format!("unknown option {flag}; {USAGE}")),
        }
    }
    let zero = options.conns.contains(&0) || options.sizes.contains(&0);
    if zero || options.runs == 0 {
        return Err("--conns, --size and --runs must be at least 1".into());
    }
    Ok(options)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("ouro-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    let timing = Timing {
        warmup: Duration::from_millis(300),
        window: options.window,
    };
    if !options.json {
        println!(
            "echo over loopback: server pinned to CPU 0, client to CPU 1; median of {} runs of {:?}",
            options.runs, options.window
        );
        println!(
            "{:<11} {:>6} {:>6} {:>11} {:>8} {:>22} {:>8}",
            "contestant", "conns", "size", "rps", "/tokio", "server_cpu_us_per_req", "/tokio"
        );
    }
    for &conns in &options.conns {
        for &size in &options.sizes {
            let mut samples = vec![(Vec::new(), Vec::new()); Contestant::ALL.len()];
            for run in 0..options.runs {
                for turn in 0..Contestant::ALL.len() {
                    let i = (turn + run) % Contestant::ALL.len();
                    let contestant = Contestant::ALL[i];
                    if !options.only.is_empty()
                        && !options.only.iter().any(|n| n == contestant.name())
                    {
                        continue;
                    }
                    match echo::measure_once(contestant, conns, size, timing) {
                        Ok(m) => {
                            samples[i].0.push(m.rps);
                            samples[i].1.push(m.server_cpu_us_per_req);
                        }
                        Err(err) => {
                            eprintln!("ouro-bench: echo {} failed: {err}", contestant.name());
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            let medians: Vec<Option<(f64, f64)>> = samples
                .iter_mut()
                .map(|(rps, cpu)| (!rps.is_empty()).then(|| (median(rps), median(cpu))))
                .collect();
            let tokio = medians[Contestant::ALL.len() - 1].unwrap_or((f64::NAN, f64::NAN));
            for (contestant, measured) in Contestant::ALL.iter().zip(&medians) {
                let Some((rps, cpu)) = measured else {
                    continue;
                };
                if options.json {
                    for (metric, value) in [("rps", rps), ("server_cpu_us_per_req", cpu)] {
                        println!(
                            "{{\"workload\":\"echo\",\"contestant\":\"{}\",\"params\":{{\"conns\":{conns},\"size\":{size}}},\"metric\":\"{metric}\",\"value\":{value:.3}}}",
                            contestant.name()
                        );
                    }
                } else {
                    println!(
                        "{:<11} {:>6} {:>6} {:>11.0} {:>8.3} {:>22.3} {:>8.3}",
                        contestant.name(),
                        conns,
                        size,
                        rps,
                        rps / tokio.0,
                        cpu,
                        cpu / tokio.1
                    );
                }
            }
        }
    }
    ExitCode::SUCCESS
}
