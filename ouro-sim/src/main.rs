//! `cargo run -p ouro-sim -- --seeds N --scenario NAME [--seed S]`: runs a
//! scenario in the simulator over seeds 0..N (or one seed, to replay it),
//! prints each failing seed's replay line and a summary table, and exits
//! with status 1 on any violation or non-deterministic seed.

use std::process::ExitCode;

use ouro_sim::{check, scenario, Summary, SCENARIOS};

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
    let summary = match args.seed {
        Some(seed) => check([seed], run, None, 1),
        None => check(0..args.seeds, run, None, 10),
    };
    print_summary(&args.scenario, &summary);
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
    println!("scenario           {name}");
    println!("seeds              {}", summary.seeds);
    println!("failing seeds      {}", summary.failures.len());
    println!("non-deterministic  {}", summary.nondeterministic.len());
    println!("operations         {}", summary.ops);
    println!("wall time          {:.2?}", summary.elapsed);
    println!("ops per second     {:.0}", summary.ops_per_second());
    println!("faults injected:");
    for (class, n) in &summary.faults.0 {
        println!("  {class:<17}{n}");
    }
}
