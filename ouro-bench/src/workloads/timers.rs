//! `timers`: zero-delay timers through ouro. They live in user space and
//! never reach the kernel, so this measures ouro's scheduling and delivery
//! alone (ourio sends each one to the kernel as a timeout operation).
//!
//! The one contestant, `ouro`, fires `count` timers (`--count`, default one
//! million) on a fresh `Ring<Timers>`, scheduled the two ways a program
//! would, one comparison per `--in-flight` value:
//!
//! - a window of N (`{"in_flight": N}`): N timers scheduled upfront, each
//!   callback matches its `Outcome::Timer`, checks the result and schedules
//!   the next timer until `count` have been scheduled; with N = 1, a chain.
//! - all upfront (`{"in_flight": "all"}`): `count` timers scheduled before
//!   the ring runs (the task slab grows to hold them all, within the run).
//!
//! Then `run(RunMode::UntilDone)`. The clock runs from the first `timer`
//! call to the end of `run`, ring setup excluded; one unmeasured run of a
//! tenth of `count` precedes the measured ones. Metric: `ops_per_sec`
//! (timers fired per second).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
use serde_json::{json, Value};

use super::{per_sec, Settings};
use crate::record::{params, Results, Sample};

const WORKLOAD: &str = "timers";
const CONTESTANT: &str = "ouro";

/// Options of the `timers` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// Timers fired per run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// How many timers are pending at once: a number (each fired timer
    /// schedules the next) or `all` (all scheduled upfront); a
    /// comma-separated list, one comparison per value.
    #[arg(long, value_delimiter = ',', default_values_t = [InFlight::Window(1), InFlight::Window(256), InFlight::All])]
    pub in_flight: Vec<InFlight>,
}

/// How many timers are pending at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// This many; each fired timer schedules the next.
    Window(u64),
    /// Every timer, scheduled before the ring runs.
    All,
}

impl InFlight {
    fn count(self, count: u64) -> u64 {
        match self {
            InFlight::Window(window) => window.min(count),
            InFlight::All => count,
        }
    }

    fn param(self) -> Value {
        match self {
            InFlight::Window(window) => json!(window),
            InFlight::All => json!("all"),
        }
    }
}

impl fmt::Display for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InFlight::Window(window) => write!(f, "{window}"),
            InFlight::All => f.write_str("all"),
        }
    }
}

impl FromStr for InFlight {
    type Err = String;

    fn from_str(text: &str) -> Result<InFlight, String> {
        if text == "all" {
            return Ok(InFlight::All);
        }
        match text.parse::<u64>() {
            Ok(window) if window > 0 => Ok(InFlight::Window(window)),
            _ => Err(format!("`{text}` is neither a positive number nor `all`")),
        }
    }
}

/// Measures each in-flight choice `runs` times.
pub fn measure(options: &Options, settings: &Settings, results: &mut Results) -> io::Result<()> {
    if !settings.includes(CONTESTANT) {
        return Ok(());
    }
    for &in_flight in &options.in_flight {
        run_ouro((options.count / 10).max(1), in_flight)?;
    }
    for _ in 0..settings.runs {
        for &in_flight in &options.in_flight {
            let elapsed = run_ouro(options.count, in_flight)?;
            results.record(Sample {
                workload: WORKLOAD,
                contestant: CONTESTANT,
                params: params([("in_flight", in_flight.param())]),
                metric: "ops_per_sec",
                value: per_sec(options.count, elapsed),
            });
        }
    }
    Ok(())
}

/// The `ouro` contestant's state.
struct Timers {
    unscheduled: u64,
    fired: u64,
}

fn on_timer(timers: &mut Timers, ring: &mut Ring<Timers>, c: Completion) -> io::Result<()> {
    let Outcome::Timer(result) = c.outcome else {
        return Err(io::Error::other(format!(
            "a timer's callback got {:?}",
            c.op()
        )));
    };
    result?;
    timers.fired += 1;
    if timers.unscheduled > 0 {
        timers.unscheduled -= 1;
        ring.timer(Duration::ZERO, Ctx::new(on_timer));
    }
    Ok(())
}

fn run_ouro(count: u64, in_flight: InFlight) -> io::Result<Duration> {
    let mut ring = Ring::new(256)?;
    let upfront = in_flight.count(count);
    let mut timers = Timers {
        unscheduled: count - upfront,
        fired: 0,
    };
    let start = Instant::now();
    for _ in 0..upfront {
        ring.timer(Duration::ZERO, Ctx::new(on_timer));
    }
    ring.run(&mut timers, RunMode::UntilDone)?;
    let elapsed = start.elapsed();
    if timers.fired != count {
        return Err(io::Error::other(format!(
            "ouro fired {} of {count} timers",
            timers.fired
        )));
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_parses_numbers_and_all() {
        assert_eq!("all".parse(), Ok(InFlight::All));
        assert_eq!("256".parse(), Ok(InFlight::Window(256)));
        assert!("0".parse::<InFlight>().is_err());
        assert!("many".parse::<InFlight>().is_err());
        assert_eq!(InFlight::Window(7).count(3), 3);
        assert_eq!(InFlight::All.count(3), 3);
    }
}
