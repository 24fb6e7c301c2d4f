//! `cargo run -p ouro-sim -- --seeds N --scenario NAME [--seed S]`: runs a
//! scenario in the simulator over seeds 0..N (or one seed, to replay it),
//! prints each failing seed's replay line, the smallest failing case the
//! shrinker finds from the first one, and a summary table, and exits with
//! status 1 on any violation or non-deterministic seed, 2 on bad arguments
//! (an `OURO_SIM_SEED` that is not a seed among them). `--off CLASS,...`,
//! `--clients N` and `--rounds N` run a shrunk case again; `--help` says
//! what each argument does.

use std::env::VarError;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use ouro_sim::{check_with_progress, scenario, shrink, Case, FaultClass, Load, Summary, SCENARIOS};

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

struct Args {
    seeds: u64,
    scenario: String,
    seed: Option<u64>,
    off: Vec<FaultClass>,
    load: Load,
}

fn parse_classes(names: &str) -> Result<Vec<FaultClass>, String> {
    let mut classes = names
        .split(',')
        .map(|name| {
            FaultClass::from_name(name).ok_or_else(|| {
                let known: Vec<_> = FaultClass::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "--off: no fault class {name:?} (known: {})",
                    known.join(",")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    classes.sort_unstable();
    classes.dedup();
    Ok(classes)
}

/// What the command line asks for.
enum Command {
    Run(Args),
    Help,
}

fn parse() -> Result<Command, String> {
    let mut args = Args {
        seeds: 100,
        scenario: "echo".into(),
        seed: None,
        off: Vec::new(),
        load: Load::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--seeds" => args.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--seed" => args.seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--scenario" => args.scenario = value()?,
            "--off" => args.off = parse_classes(&value()?)?,
            "--clients" => {
                args.load.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?
            }
            "--rounds" => {
                args.load.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.seeds == 0 {
        return Err("--seeds: at least 1 (0 would run no seed and pass)".into());
    }
    let from_env = env_seed()?;
    args.seed = args.seed.or(from_env);
    Ok(Command::Run(args))
}

/// The seed `OURO_SIM_SEED` names: none if it is unset or empty, an error
/// if it is not a seed (the user would think it replayed).
fn env_seed() -> Result<Option<u64>, String> {
    match std::env::var("OURO_SIM_SEED") {
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(value)) => Err(format!("OURO_SIM_SEED={value:?}: not a seed")),
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => value
            .parse()
            .map(Some)
            .map_err(|e| format!("OURO_SIM_SEED={value:?}: {e}")),
    }
}

/// The usage line.
fn usage() -> String {
    let names: Vec<_> = SCENARIOS.iter().map(|(n, _)| *n).collect();
    format!(
        "usage: ouro-sim [--seeds N] [--seed S] [--scenario {}] \
         [--off CLASS,...] [--clients N] [--rounds N]",
        names.join("|")
    )
}

/// The usage line and what each argument does.
fn help() -> String {
    let plain = Load::default();
    let classes: Vec<_> = FaultClass::ALL.iter().map(|c| c.name()).collect();
    let lines = [
        usage(),
        "Runs a scenario in the deterministic simulator (docs/simulator.md).".into(),
        "  --seeds N        seeds 0..N (default 100, at least 1)".into(),
        "  --seed S         seed S alone, run twice to compare; also OURO_SIM_SEED=S".into(),
        "  --scenario NAME  the scenario to run (default echo)".into(),
        format!(
            "  --off CLASS,...  fault classes to switch off: {}",
            classes.join(",")
        ),
        format!("  --clients N      clients (default {})", plain.clients),
        format!(
            "  --rounds N       rounds per client (default {})",
            plain.rounds
        ),
        "With --clients 0 or --rounds 0 the clients have nothing to do (with".into(),
        "--rounds 0 dispatch's still connect and close); the other checks run.".into(),
        "Exit status: 0 if every seed passed, 1 on a violation or a seed that did".into(),
        "not replay, 2 on bad arguments.".into(),
    ];
    lines.join("\n") + "\n"
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print(&help());
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{err}\n{}", usage());
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
    let cases = (0..total).map(|i| Case {
        seed: first.wrapping_add(i),
        off: args.off.clone(),
        load: args.load,
    });
    let mut progress = Progress::new(total);
    let summary = check_with_progress(cases, run, None, recheck_every, |s| progress.show(s));
    progress.clear();
    let mut text = String::new();
    let _ = write_summary(&mut text, &args.scenario, &summary);
    print(&text);
    if let Some(failure) = summary.failures.first() {
        let smallest = shrink(failure, run, None);
        let mut text = String::from("smallest failing case found from the first failing seed:\n");
        text += &format!("  {}\n", smallest.replay_line());
        for violation in &smallest.violations {
            text += &format!("    {violation}\n");
        }
        print(&text);
    }
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
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

/// The failing seeds and the summary table.
fn write_summary(out: &mut String, name: &str, summary: &Summary) -> fmt::Result {
    for failure in &summary.failures {
        writeln!(out, "{}", failure.replay_line())?;
        for violation in &failure.violations {
            writeln!(out, "    {violation}")?;
        }
    }
    for seed in &summary.nondeterministic {
        writeln!(
            out,
            "OURO_SIM_SEED={seed}: two runs differ (non-determinism)"
        )?;
    }
    writeln!(out, "scenario             {name}")?;
    writeln!(out, "seeds run            {}", summary.seeds)?;
    writeln!(out, "violations           {}", summary.violations())?;
    writeln!(out, "failing seeds        {}", summary.failures.len())?;
    writeln!(
        out,
        "replays compared     {} ({} differed)",
        summary.rechecked,
        summary.nondeterministic.len()
    )?;
    writeln!(out, "simulated ops        {}", summary.ops)?;
    writeln!(out, "wall time            {:.2?}", summary.elapsed)?;
    writeln!(out, "simulated ops/s      {:.0}", summary.ops_per_second())?;
    writeln!(out, "faults injected, by class:")?;
    if summary.faults.0.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (class, n) in &summary.faults.0 {
        writeln!(out, "  {class:<20}{n}")?;
    }
    Ok(())
}
