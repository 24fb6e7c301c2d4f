//! `ouro-bench`: benchmark programs. This branch carries the `msg` workload
//! only, as a self-contained module (`msg.rs`) with a small runner; the
//! shared benchmark framework (workload subcommands, records, medians,
//! `--json`) is merged separately and takes `msg::measure_run`'s records.
//!
//! ```sh
//! cargo run --release -p ouro-bench -- msg
//! cargo run --release -p ouro-bench -- msg --runs 9 --msgs 4000000 --json
//! ```

mod msg;

use std::process::ExitCode;

use msg::{Contestant, Options, Record};

/// The command line: `msg [--runs N] [--roundtrips N] [--msgs N]
/// [--batch N] [--only a,b] [--json]`.
struct Cli {
    runs: u32,
    options: Options,
    only: Vec<String>,
    json: bool,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("msg") => {}
        Some(other) => return Err(format!("unknown workload {other:?} (this build has: msg)")),
        None => return Err("which workload? (this build has: msg)".into()),
    }
    let mut cli = Cli {
        runs: 5,
        options: Options::default(),
        only: Vec::new(),
        json: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        let number = |text: String, name: &str| {
            text.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} takes a positive number, not {text:?}"))
        };
        match arg.as_str() {
            "--json" => cli.json = true,
            "--runs" => cli.runs = number(value("--runs")?, "--runs")?.min(1000) as u32,
            "--roundtrips" => cli.options.roundtrips = number(value(arg)?, arg)?,
            "--msgs" => cli.options.msgs = number(value(arg)?, arg)?,
            "--batch" => cli.options.batch = number(value(arg)?, arg)?,
            "--only" => cli.only = value(arg)?.split(',').map(String::from).collect(),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(cli)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("ouro-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    match run(&cli) {
        Ok(records) => {
            let summaries = summarize(&records);
            if cli.json {
                print!("{}", json_lines(&summaries));
            } else {
                println!("{}", machine_description(cli.runs));
                print!("{}", table(&summaries));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ouro-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> std::io::Result<Vec<Record>> {
    let chosen: Vec<Contestant> = Contestant::ALL
        .into_iter()
        .filter(|c| cli.only.is_empty() || cli.only.iter().any(|name| name == c.name()))
        .collect();
    if chosen.is_empty() {
        return Err(std::io::Error::other("no contestant has that name"));
    }
    msg::warm_up(&cli.options, &chosen)?;
    let mut records = Vec::new();
    for run in 0..cli.runs {
        let mut order = chosen.clone();
        order.rotate_left(run as usize % chosen.len());
        records.extend(msg::measure_run(&cli.options, &order)?);
    }
    Ok(records)
}

/// The median (and spread) per contestant, params and metric, with the
/// ratio to `crossbeam`.
struct Summary {
    contestant: &'static str,
    metric: &'static str,
    params: String,
    median: f64,
    spread: f64,
    ratio: Option<f64>,
}

const REFERENCE: &str = "crossbeam";

fn summarize(records: &[Record]) -> Vec<Summary> {
    let mut groups: Vec<(&Record, Vec<f64>)> = Vec::new();
    for record in records {
        let same = |r: &Record| {
            r.contestant == record.contestant
                && r.metric == record.metric
                && r.params == record.params
        };
        match groups.iter_mut().find(|(r, _)| same(r)) {
            Some((_, values)) => values.push(record.value),
            None => groups.push((record, vec![record.value])),
        }
    }
    let mut summaries: Vec<Summary> = groups
        .into_iter()
        .map(|(record, mut values)| {
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let median = if values.len() % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            };
            Summary {
                contestant: record.contestant,
                metric: record.metric,
                params: params_text(&record.params),
                median,
                spread: (values[values.len() - 1] - values[0]) / median,
                ratio: None,
            }
        })
        .collect();
    let medians: Vec<(String, &'static str, &'static str, f64)> = summaries
        .iter()
        .map(|s| (s.params.clone(), s.metric, s.contestant, s.median))
        .collect();
    for summary in &mut summaries {
        summary.ratio = medians
            .iter()
            .find(|(params, metric, contestant, _)| {
                *contestant == REFERENCE
                    && summary.contestant != REFERENCE
                    && *params == summary.params
                    && *metric == summary.metric
            })
            .map(|(.., reference)| summary.median / reference);
    }
    summaries.sort_by_key(|s| (s.params.clone(), s.metric));
    summaries
}

fn params_text(params: &[(&'static str, String)]) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_lines(summaries: &[Summary]) -> String {
    summaries
        .iter()
        .map(|s| {
            let params = s
                .params
                .split(' ')
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| format!("{name:?}:{value:?}"))
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "{{\"workload\":{:?},\"contestant\":{:?},\"params\":{{{params}}},\"metric\":{:?},\"value\":{}}}\n",
                msg::WORKLOAD,
                s.contestant,
                s.metric,
                s.median
            )
        })
        .collect()
}

fn table(summaries: &[Summary]) -> String {
    let header = [
        "workload",
        "params",
        "contestant",
        "metric",
        "median",
        "spread",
        "ratio",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = summaries
        .iter()
        .map(|s| {
            [
                msg::WORKLOAD.to_string(),
                s.params.clone(),
                s.contestant.to_string(),
                s.metric.to_string(),
                format_value(s.median),
                format!("{:.1}%", s.spread * 100.0),
                s.ratio
                    .map(|r| format!("{r:.2}x {REFERENCE}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if (4..=5).contains(&i) {
                line.push_str(&format!("{cell:>width$}  "));
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Large values as integers with thousands separators, small ones with two
/// decimals.
fn format_value(value: f64) -> String {
    if value.abs() < 1000.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
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
    format!("{kernel}, {cpus} CPUs, {ring}; median of {runs} runs")
}
