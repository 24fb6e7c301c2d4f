//! Runs programs written against ouro's `Ring` in the deterministic
//! simulator ([`ouro::sim`]) over many seeds: each seed's world draws its
//! fault configuration, delays and orders from the seed, the checkers
//! collect violations, and a failing seed replays the same run exactly.
//! See `docs/simulator.md`.

use std::io;
use std::time::{Duration, Instant};

use ouro::sim::{Bug, Config, FaultCounts, World};

pub mod echo;

/// A scenario: sets up its rings in the world and runs them to the end,
/// reporting what its own checks find with [`World::report`].
pub type Scenario = fn(&World) -> io::Result<()>;

/// The scenarios shipped with ouro, by name.
pub const SCENARIOS: &[(&str, Scenario)] = &[("echo", echo::run)];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, scenario)| scenario)
}

/// What one seed's run came to.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The fault configuration it expanded into.
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
    /// The line that replays this seed.
    pub fn replay_line(&self) -> String {
        format!("OURO_SIM_SEED={} ({})", self.seed, self.config)
    }
}

/// Runs `scenario` under `seed`, with `bug` planted if given.
pub fn run_seed(seed: u64, scenario: Scenario, bug: Option<Bug>) -> SeedReport {
    let world = World::new(seed);
    if let Some(bug) = bug {
        world.plant(bug);
    }
    let config = world.config();
    if let Err(err) = scenario(&world) {
        world.report(format!("the scenario failed: {err}"));
    }
    let violations = world.finish();
    SeedReport {
        seed,
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
    check_with_progress(seeds, scenario, bug, recheck_every, |_| {})
}

/// [`check`], calling `progress` with the summary so far after each seed.
pub fn check_with_progress(
    seeds: impl IntoIterator<Item = u64>,
    scenario: Scenario,
    bug: Option<Bug>,
    recheck_every: u64,
    mut progress: impl FnMut(&Summary),
) -> Summary {
    let start = Instant::now();
    let mut summary = Summary::default();
    for seed in seeds {
        let report = run_seed(seed, scenario, bug);
        summary.seeds += 1;
        summary.ops += report.ops;
        summary.faults.merge(&report.faults);
        if recheck_every > 0 && seed % recheck_every == 0 {
            let again = run_seed(seed, scenario, bug);
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
