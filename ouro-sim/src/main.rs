//! `cargo run -p ouro-sim -- --seeds N --scenario NAME [--seed S]`: runs a
//! scenario in the simulator over seeds 0..N (or one seed, to replay it),
//! prints each failing seed's replay line and a summary table, and exits
//! with status 1 on any violation or non-deterministic seed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use ouro_sim::{check_with_progress, scenario, Summary, SCENARIOS};

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

struct Args {
    seeds: u64,
    scenario: String,
    seed: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        scenario: "echo".into(),
        seed: std::env::var("OURO_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => args.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--seed" => args.seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--scenario" => args.scenario = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(err) => {
            let names: Vec<_> = SCENARIOS.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "{err}\nusage: ouro-sim [--seeds N] [--seed S] [--scenario {}]",
                names.join("|")
            );
            return ExitCode::from(2);
        }
    };
    let Some(run) = scenario(&args.scenario) else {
        eprintln!("no scenario called {:?}", args.scenario);
        return ExitCode::from(2);
    };
    let (first, total, recheck_every) = match args.seed {
        Some(seed) => (seed, 1, 1),
        None => (0, args.seeds, 10),
    };
    let seeds = (0..total).map(|i| first.wrapping_add(i));
    let mut progress = Progress::new(total);
    let summary = check_with_progress(seeds, run, None, recheck_every, |s| progress.show(s));
    progress.clear();
    print_summary(&args.scenario, &summary);
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A progress line on stderr, redrawn in place; only when stderr is a
/// terminal, so that logs and pipes get the summary alone.
struct Progress {
    total: u64,
    on: bool,
    shown: Option<Duration>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            on: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    fn show(&mut self, summary: &Summary) {
        let due = self
            .shown
            .is_none_or(|at| summary.elapsed >= at + PROGRESS_EVERY);
        if !self.on || !due {
            return;
        }
        self.shown = Some(summary.elapsed);
        let width = 30;
        let done = (summary.seeds * width / self.total.max(1)) as usize;
        eprint!(
            "\r[{}{}] {}/{} seeds, {} failing, {:.0} ops/s ",
            "#".repeat(done),
            " ".repeat(width as usize - done),
            summary.seeds,
            self.total,
            summary.failures.len(),
            summary.ops_per_second()
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.on && self.shown.is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

fn print_summary(name: &str, summary: &Summary) {
    for failure in &summary.failures {
        println!("{}", failure.replay_line());
        for violation in &failure.violations {
            println!("    {violation}");
        }
    }
    for seed in &summary.nondeterministic {
        println!("OURO_SIM_SEED={seed}: two runs differ (non-determinism)");
    }
    println!("scenario             {name}");
    println!("seeds run            {}", summary.seeds);
    println!("violations           {}", summary.violations());
    println!("failing seeds        {}", summary.failures.len());
    println!(
        "replays compared     {} ({} differed)",
        summary.rechecked,
        summary.nondeterministic.len()
    );
    println!("simulated ops        {}", summary.ops);
    println!("wall time            {:.2?}", summary.elapsed);
    println!("simulated ops/s      {:.0}", summary.ops_per_second());
    println!("faults injected, by class:");
    if summary.faults.0.is_empty() {
        println!("  (none)");
    }
    for (class, n) in &summary.faults.0 {
        println!("  {class:<19}{n}");
    }
}
