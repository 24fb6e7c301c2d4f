//! Shrinking a failing case: the same seed with fault classes switched off
//! one at a time and fewer client operations, keeping each change under
//! which the case still fails, down to the smallest failing case found.

use std::fmt;

use ouro::sim::{Bug, Config, Partitions, CQ_ENTRIES};

use crate::{run_case, Scenario, SeedReport};

/// A fault class of a seed's configuration that a case can switch off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultClass {
    /// The uniform spread on top of the base latency.
    LatencySpread,
    /// The rare long delays.
    LatencyTail,
    /// Sends cut into segments that arrive apart.
    Segmenting,
    /// Short reads and writes.
    ShortIo,
    /// Injected per-operation errors.
    Errors,
    /// Ready completions handed over in a shuffled order.
    Shuffle,
    /// Timers firing late.
    LateTimers,
    /// Partitions and clogged paths between hosts.
    Partitions,
    /// UDP datagrams lost.
    DatagramLoss,
    /// UDP datagrams arriving twice.
    DatagramDuplicate,
    /// UDP datagrams passed by later ones.
    DatagramReorder,
    /// The submission queue reporting full early.
    SqFullEarly,
    /// A completion queue small enough to overflow.
    CqOverflow,
    /// Cancellations that take effect late, racing the operation.
    CancelRace,
    /// TCP giving up with `ETIMEDOUT` over a long partition.
    TcpTimeout,
    /// Spoofed UDP datagrams.
    Spoofed,
    /// File writes and fsyncs failing with `EIO` or `ENOSPC`.
    FileErrors,
    /// Short file reads and writes.
    FileShortIo,
    /// Multishot accepts and receives ending early.
    MultishotEnd,
    /// Buffer groups found empty by multishot receives.
    BuffersExhausted,
    /// Messages between rings held back for a while.
    MessageDelay,
}

impl FaultClass {
    /// Every class, in the order the shrinker tries them.
    pub const ALL: [FaultClass; 21] = [
        FaultClass::Partitions,
        FaultClass::Errors,
        FaultClass::DatagramLoss,
        FaultClass::DatagramDuplicate,
        FaultClass::DatagramReorder,
        FaultClass::Shuffle,
        FaultClass::ShortIo,
        FaultClass::Segmenting,
        FaultClass::LateTimers,
        FaultClass::LatencyTail,
        FaultClass::LatencySpread,
        FaultClass::SqFullEarly,
        FaultClass::CqOverflow,
        FaultClass::CancelRace,
        FaultClass::TcpTimeout,
        FaultClass::Spoofed,
        FaultClass::FileErrors,
        FaultClass::FileShortIo,
        FaultClass::MultishotEnd,
        FaultClass::BuffersExhausted,
        FaultClass::MessageDelay,
    ];

    /// The class's name on the command line (`--off NAME,...`).
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::LatencySpread => "latency_spread",
            FaultClass::LatencyTail => "latency_tail",
            FaultClass::Segmenting => "segmenting",
            FaultClass::ShortIo => "short_io",
            FaultClass::Errors => "errors",
            FaultClass::Shuffle => "shuffle",
            FaultClass::LateTimers => "late_timers",
            FaultClass::Partitions => "partitions",
            FaultClass::DatagramLoss => "udp_loss",
            FaultClass::DatagramDuplicate => "udp_duplicate",
            FaultClass::DatagramReorder => "udp_reorder",
            FaultClass::SqFullEarly => "sq_full_early",
            FaultClass::CqOverflow => "cq_overflow",
            FaultClass::CancelRace => "cancel_race",
            FaultClass::TcpTimeout => "tcp_timeout",
            FaultClass::Spoofed => "udp_spoofed",
            FaultClass::FileErrors => "file_errors",
            FaultClass::FileShortIo => "file_short_io",
            FaultClass::MultishotEnd => "multishot_end",
            FaultClass::BuffersExhausted => "buffers_exhausted",
            FaultClass::MessageDelay => "message_delay",
        }
    }

    /// The class called `name`.
    pub fn from_name(name: &str) -> Option<FaultClass> {
        FaultClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether `config` has the class on.
    pub fn is_on(self, config: &Config) -> bool {
        match self {
            FaultClass::LatencySpread => config.latency.spread_ns > 0,
            FaultClass::LatencyTail => config.latency.tail_rate > 0.0,
            FaultClass::Segmenting => config.segmenting > 0.0,
            FaultClass::ShortIo => config.short_io > 0.0,
            FaultClass::Errors => config.errors > 0.0,
            FaultClass::Shuffle => config.shuffle,
            FaultClass::LateTimers => config.late_timers_ns > 0,
            FaultClass::Partitions => config.partitions.on(),
            FaultClass::DatagramLoss => config.datagram_loss > 0.0,
            FaultClass::DatagramDuplicate => config.datagram_duplicate > 0.0,
            FaultClass::DatagramReorder => config.datagram_reorder > 0.0,
            FaultClass::SqFullEarly => config.sq_full_early > 0.0,
            FaultClass::CqOverflow => config.cq_entries < CQ_ENTRIES,
            FaultClass::CancelRace => config.cancel_race > 0.0,
            FaultClass::TcpTimeout => config.tcp_give_up_ns > 0,
            FaultClass::Spoofed => config.spoofed > 0.0,
            FaultClass::FileErrors => config.file_errors > 0.0,
            FaultClass::FileShortIo => config.file_short_io > 0.0,
            FaultClass::MultishotEnd => config.multishot_end > 0.0,
            FaultClass::BuffersExhausted => config.buffers_exhausted > 0.0,
            FaultClass::MessageDelay => config.message_delay_ns > 0,
        }
    }

    /// Switches the class off in `config`.
    pub fn switch_off(self, config: &mut Config) {
        match self {
            FaultClass::LatencySpread => config.latency.spread_ns = 0,
            FaultClass::LatencyTail => {
                config.latency.tail_rate = 0.0;
                config.latency.tail_ns = 0;
            }
            FaultClass::Segmenting => config.segmenting = 0.0,
            FaultClass::ShortIo => config.short_io = 0.0,
            FaultClass::Errors => config.errors = 0.0,
            FaultClass::Shuffle => config.shuffle = false,
            FaultClass::LateTimers => config.late_timers_ns = 0,
            FaultClass::Partitions => config.partitions = Partitions::OFF,
            FaultClass::DatagramLoss => config.datagram_loss = 0.0,
            FaultClass::DatagramDuplicate => config.datagram_duplicate = 0.0,
            FaultClass::DatagramReorder => config.datagram_reorder = 0.0,
            FaultClass::SqFullEarly => config.sq_full_early = 0.0,
            FaultClass::CqOverflow => config.cq_entries = CQ_ENTRIES,
            FaultClass::CancelRace => config.cancel_race = 0.0,
            FaultClass::TcpTimeout => config.tcp_give_up_ns = 0,
            FaultClass::Spoofed => config.spoofed = 0.0,
            FaultClass::FileErrors => config.file_errors = 0.0,
            FaultClass::FileShortIo => config.file_short_io = 0.0,
            FaultClass::MultishotEnd => config.multishot_end = 0.0,
            FaultClass::BuffersExhausted => config.buffers_exhausted = 0.0,
            FaultClass::MessageDelay => config.message_delay_ns = 0,
        }
    }
}

/// How much work a scenario's clients do; each scenario says how it reads
/// these (`dns`: one resolver looking up `2 × clients` names per round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Clients in all (`dns`: half the names looked up).
    pub clients: u32,
    /// Rounds (request and checked answer) each client makes (`dns`:
    /// rounds of lookups, each after the last has ended).
    pub rounds: u32,
}

impl Default for Load {
    /// The load the shipped scenarios run with.
    fn default() -> Load {
        Load {
            clients: 6,
            rounds: 4,
        }
    }
}

/// One run's inputs: a seed, fault classes switched off on top of the
/// seed's configuration, and the clients' load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The seed: configuration, delays, orders and faults come from it.
    pub seed: u64,
    /// Classes switched off, sorted, without repeats.
    pub off: Vec<FaultClass>,
    /// The clients' load.
    pub load: Load,
}

impl Case {
    /// `seed` as it is: no class switched off, the default load.
    pub fn new(seed: u64) -> Case {
        Case {
            seed,
            off: Vec::new(),
            load: Load::default(),
        }
    }

    /// The seed's configuration with the case's classes switched off.
    pub fn config(&self) -> Config {
        let mut config = Config::from_seed(self.seed);
        for class in &self.off {
            class.switch_off(&mut config);
        }
        config
    }

    fn with_off(&self, class: FaultClass) -> Case {
        let mut off = self.off.clone();
        off.push(class);
        off.sort_unstable();
        off.dedup();
        Case {
            off,
            ..self.clone()
        }
    }

    fn with_load(&self, load: Load) -> Case {
        Case {
            load,
            ..self.clone()
        }
    }
}

/// The case as runner arguments: `OURO_SIM_SEED=S`, then only the flags
/// that differ from a plain seed.
impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OURO_SIM_SEED={}", self.seed)?;
        if !self.off.is_empty() {
            let names: Vec<_> = self.off.iter().map(|c| c.name()).collect();
            write!(f, " --off {}", names.join(","))?;
        }
        let plain = Load::default();
        if self.load.clients != plain.clients {
            write!(f, " --clients {}", self.load.clients)?;
        }
        if self.load.rounds != plain.rounds {
            write!(f, " --rounds {}", self.load.rounds)?;
        }
        Ok(())
    }
}

/// The smallest case found that still fails, starting from the failing
/// `failed`: each fault class that is on is switched off if the case
/// still fails without it, then rounds and clients are lowered one at a
/// time while it still fails. Returns the report of its last failing run.
pub fn shrink(failed: &SeedReport, scenario: Scenario, bug: Option<Bug>) -> SeedReport {
    let mut best = failed.clone();
    let attempt = |case: Case, best: &mut SeedReport| {
        let report = run_case(&case, scenario, bug);
        let fails = !report.violations.is_empty();
        if fails {
            *best = report;
        }
        fails
    };
    for class in FaultClass::ALL {
        if class.is_on(&best.config) {
            let case = best.case.with_off(class);
            attempt(case, &mut best);
        }
    }
    while best.case.load.rounds > 1 {
        let load = Load {
            rounds: best.case.load.rounds - 1,
            ..best.case.load
        };
        if !attempt(best.case.with_load(load), &mut best) {
            break;
        }
    }
    while best.case.load.clients > 1 {
        let load = Load {
            clients: best.case.load.clients - 1,
            ..best.case.load
        };
        if !attempt(best.case.with_load(load), &mut best) {
            break;
        }
    }
    best
}
