//! Runs programs written against ouro's `Ring` in the deterministic
//! simulator ([`ouro::sim`]) over many seeds: each seed's world draws its
//! fault configuration, delays and orders from the seed, the checkers
//! collect violations, and a failing seed replays the same run exactly.
//! See `docs/simulator.md`.

use std::io;
use std::time::{Duration, Instant};

use ouro::sim::{Bug, Config, FaultCounts, World};

pub mod connect;
mod connect_dns;
pub mod dispatch;
pub mod dns;
mod dns_tcp;
pub mod echo;
pub mod echo_example;
mod echo_server;
pub mod files;
pub mod http;
pub mod resp;
mod shrink;
pub mod stream;
pub mod tls;
mod tls_config;

pub use shrink::{shrink, Case, FaultClass, Load};

/// A scenario: sets up its rings in the world, with clients doing the
/// given load, and runs them to the end, reporting what its own checks
/// find with [`World::report`].
pub type Scenario = fn(&World, Load) -> io::Result<()>;

/// The scenarios shipped with ouro, by name.
pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("echo", echo::run),
    ("dns", dns::run),
    ("files", files::run),
    ("tls", tls::run),
    ("connect", connect::run),
    ("http", http::run),
    ("resp", resp::run),
    ("echo-example", echo_example::run),
    ("dispatch", dispatch::run),
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, scenario)| scenario)
}

/// What one case's run came to.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// What was run: the seed, classes switched off, the load.
    pub case: Case,
    /// The fault configuration in force.
    pub config: Config,
    /// Faults injected, by class.
    pub faults: FaultCounts,
    /// What the checkers found (empty: the seed passed).
    pub violations: Vec<String>,
    /// The hash of the run's event log.
    pub log_hash: u64,
    /// Completions the world handed to rings.
    pub ops: u64,
}

impl SeedReport {
    /// The line that replays this run, with its configuration.
    pub fn replay_line(&self) -> String {
        format!("{} ({})", self.case, self.config)
    }
}

/// Runs `scenario` under `seed`, with `bug` planted if given.
pub fn run_seed(seed: u64, scenario: Scenario, bug: Option<Bug>) -> SeedReport {
    run_case(&Case::new(seed), scenario, bug)
}

/// Runs `scenario` as `case` says, with `bug` planted if given.
pub fn run_case(case: &Case, scenario: Scenario, bug: Option<Bug>) -> SeedReport {
    let config = case.config();
    let world = World::with_config(case.seed, config.clone());
    if let Some(bug) = bug {
        world.plant(bug);
    }
    if let Err(err) = scenario(&world, case.load) {
        world.report(format!("the scenario failed: {err}"));
    }
    let violations = world.finish();
    SeedReport {
        case: case.clone(),
        config,
        faults: world.faults(),
        violations,
        log_hash: world.log_hash(),
        ops: world.ops(),
    }
}

/// What a run over many seeds came to.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// The seeds that failed, with what they found.
    pub failures: Vec<SeedReport>,
    /// Seeds run a second time to compare their event logs.
    pub rechecked: u64,
    /// Seeds whose second run's event log differed from the first.
    pub nondeterministic: Vec<u64>,
    /// Faults injected over all seeds, by class.
    pub faults: FaultCounts,
    /// Completions over all seeds.
    pub ops: u64,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

impl Summary {
    /// Whether every seed passed and replayed identically.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.nondeterministic.is_empty()
    }

    /// Violations found over all seeds.
    pub fn violations(&self) -> usize {
        self.failures.iter().map(|f| f.violations.len()).sum()
    }

    /// Simulated operations per wall-clock second.
    pub fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `scenario` over `seeds`; one seed in `recheck_every` is run twice
/// and the hashes of its event logs compared (0: none).
pub fn check(
    seeds: impl IntoIterator<Item = u64>,
    scenario: Scenario,
    bug: Option<Bug>,
    recheck_every: u64,
) -> Summary {
    let cases = seeds.into_iter().map(Case::new);
    check_with_progress(cases, scenario, bug, recheck_every, |_| {})
}

/// [`check`] over `cases`, calling `progress` with the summary so far
/// after each case.
pub fn check_with_progress(
    cases: impl IntoIterator<Item = Case>,
    scenario: Scenario,
    bug: Option<Bug>,
    recheck_every: u64,
    mut progress: impl FnMut(&Summary),
) -> Summary {
    let start = Instant::now();
    let mut summary = Summary::default();
    for case in cases {
        let seed = case.seed;
        let report = run_case(&case, scenario, bug);
        summary.seeds += 1;
        summary.ops += report.ops;
        summary.faults.merge(&report.faults);
        if recheck_every > 0 && seed % recheck_every == 0 {
            let again = run_case(&case, scenario, bug);
            summary.rechecked += 1;
            summary.ops += again.ops;
            if again.log_hash != report.log_hash || again.violations != report.violations {
                summary.nondeterministic.push(seed);
            }
        }
        if !report.violations.is_empty() {
            summary.failures.push(report);
        }
        summary.elapsed = start.elapsed();
        progress(&summary);
    }
    summary.elapsed = start.elapsed();
    summary
}
