//! `nop`: the cost of a round trip through the ring when the kernel has
//! nothing to do — ouro's own overhead per operation, against the best a
//! program can do with the io-uring crate directly.
//!
//! Contestants, each on a fresh ring of `batch` entries set up with the
//! same flags (SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL where
//! the kernel has them; the run fails if the two setups differ):
//!
//! - `raw`: rounds of: push `batch` NOP entries into the submission queue,
//!   `submit_and_wait(batch)` (one `io_uring_enter`), drain the completion
//!   queue checking every result.
//! - `ouro`: a `Ring<Nops>` with `batch` noops scheduled upfront; each
//!   completion's callback matches its `Outcome::Noop`, checks the result
//!   and schedules the next noop until `ops` have been scheduled;
//!   `run(RunMode::UntilDone)`. Each turn submits what the previous turn's
//!   callbacks queued and waits for one completion (NOPs all complete
//!   during the submit), then delivers every completion: also one
//!   `io_uring_enter` per `batch` operations.
//! - `floor`: the same loop as `ouro`'s on [`floor::Tasks`], the least a
//!   runtime with one callback per completion can do (see there). It tells
//!   how much of ouro's distance from `raw` comes with that shape, and how
//!   much with ouro's own guarantees.
//! - `floor-inline`: `floor` with the callback inlined into its delivery
//!   loop: the tasks' bookkeeping alone, no call per completion.
//!
//! Both complete `ops` NOPs (`--ops`); the clock runs from the first
//! submission to the last completion, ring setup excluded. Before the
//! measured runs each contestant does one unmeasured run of a tenth of
//! `ops`. Metric: `ops_per_sec`; params: `{"batch": N}`; ouro and floor are
//! compared with `raw`.

mod floor;

use std::io;
use std::time::{Duration, Instant};

use clap::Args;
use io_uring::opcode;
use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
use serde_json::json;

use super::{per_sec, Settings};
use crate::progress::Progress;
use crate::raw;
use crate::record::{params, Results, Sample};

const WORKLOAD: &str = "nop";

/// Options of the `nop` workload.
#[derive(Debug, Args)]
pub struct Options {
    /// NOPs each contestant completes per run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: u64,
    /// How many NOPs are in flight at once (a comma-separated list; each
    /// value is one comparison; at most 4096).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1u32, 32, 256],
        value_parser = clap::value_parser!(u32).range(1..=4096),
    )]
    pub batch: Vec<u32>,
}

#[derive(Clone, Copy, Debug)]
enum Contestant {
    Raw,
    FloorInline,
    Floor,
    Ouro,
}

const CONTESTANTS: [Contestant; 4] = [
    Contestant::Raw,
    Contestant::FloorInline,
    Contestant::Floor,
    Contestant::Ouro,
];

impl Contestant {
    fn name(self) -> &'static str {
        match self {
            Contestant::Raw => "raw",
            Contestant::FloorInline => "floor-inline",
            Contestant::Floor => "floor",
            Contestant::Ouro => "ouro",
        }
    }

    fn run(self, ops: u64, batch: u32) -> io::Result<Duration> {
        match self {
            Contestant::Raw => run_raw(ops, batch),
            Contestant::FloorInline => run_floor(ops, batch, true),
            Contestant::Floor => run_floor(ops, batch, false),
            Contestant::Ouro => run_ouro(ops, batch),
        }
    }
}

/// Measures every batch size `runs` times, interleaving the contestants.
pub fn measure(
    options: &Options,
    settings: &Settings,
    results: &mut Results,
    progress: &Progress,
) -> io::Result<()> {
    raw::check_same_setup_as_ouro()?;
    results.compare_against(WORKLOAD, Contestant::Raw.name());
    let contestants = CONTESTANTS;
    for &batch in &options.batch {
        for contestant in settings.order(&contestants, Contestant::name, 0) {
            contestant.run((options.ops / 10).max(1), batch)?;
        }
    }
    for run in 0..settings.runs {
        for &batch in &options.batch {
            for contestant in settings.order(&contestants, Contestant::name, run) {
                progress.step(format!("nop {} batch={batch}", contestant.name()));
                let elapsed = contestant.run(options.ops, batch)?;
                progress.done();
                results.record(Sample {
                    workload: WORKLOAD,
                    contestant: contestant.name(),
                    params: params([("batch", json!(batch))]),
                    metric: "ops_per_sec",
                    value: per_sec(options.ops, elapsed),
                });
            }
        }
    }
    Ok(())
}

/// Measurements made, for the progress bar.
pub fn steps(options: &Options, settings: &Settings) -> u64 {
    let contestants = super::included(settings, &CONTESTANTS, Contestant::name);
    u64::from(settings.runs) * options.batch.len() as u64 * contestants
}

fn run_raw(ops: u64, batch: u32) -> io::Result<Duration> {
    let mut ring = raw::ring(batch)?;
    let nop = opcode::Nop::new().build();
    let start = Instant::now();
    let mut left = ops;
    while left > 0 {
        let round = left.min(u64::from(batch)) as usize;
        {
            let mut sq = ring.submission();
            for _ in 0..round {
                // SAFETY: a NOP points to no memory.
                unsafe { sq.push(&nop) }.map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        ring.submit_and_wait(round)?;
        for cqe in ring.completion() {
            if cqe.result() < 0 {
                return Err(io::Error::from_raw_os_error(-cqe.result()));
            }
            left -= 1;
        }
    }
    Ok(start.elapsed())
}

/// The state of the `ouro` and `floor` contestants.
struct Nops {
    unscheduled: u64,
    completed: u64,
}

fn on_noop(nops: &mut Nops, ring: &mut Ring<Nops>, c: Completion) -> io::Result<()> {
    let Outcome::Noop(result) = c.outcome else {
        return Err(io::Error::other(format!(
            "a noop's callback got {:?}",
            c.op()
        )));
    };
    result?;
    nops.completed += 1;
    if nops.unscheduled > 0 {
        nops.unscheduled -= 1;
        ring.noop(Ctx::new(on_noop));
    }
    Ok(())
}

fn run_ouro(ops: u64, batch: u32) -> io::Result<Duration> {
    let mut ring = Ring::new(batch)?;
    Nops::time(
        &mut ring,
        ops,
        batch,
        |ring| {
            ring.noop(Ctx::new(on_noop));
            Ok(())
        },
        |ring, nops| ring.run(nops, RunMode::UntilDone),
    )
}

impl Nops {
    /// Completes `ops` NOPs on `ring`, `batch` in flight: schedules the
    /// first ones with `schedule` (their callbacks schedule the rest), then
    /// runs the ring with `run`. The time from the first submission to the
    /// last completion; an error unless every NOP completed.
    fn time<R>(
        ring: &mut R,
        ops: u64,
        batch: u32,
        schedule: impl Fn(&mut R) -> io::Result<()>,
        run: impl FnOnce(&mut R, &mut Nops) -> io::Result<()>,
    ) -> io::Result<Duration> {
        let in_flight = ops.min(u64::from(batch));
        let mut nops = Nops {
            unscheduled: ops - in_flight,
            completed: 0,
        };
        let start = Instant::now();
        for _ in 0..in_flight {
            schedule(ring)?;
        }
        run(ring, &mut nops)?;
        let elapsed = start.elapsed();
        if nops.completed != ops {
            return Err(io::Error::other(format!(
                "{} of {ops} noops completed",
                nops.completed
            )));
        }
        Ok(elapsed)
    }
}

/// The `floor` contestants' callback (inlined into `floor-inline`'s loop).
#[inline(always)]
fn on_floor_noop(
    nops: &mut Nops,
    tasks: &mut floor::Tasks<Nops>,
    done: floor::Done,
) -> io::Result<()> {
    done.result?;
    nops.completed += 1;
    if nops.unscheduled > 0 {
        nops.unscheduled -= 1;
        tasks.noop(on_floor_noop, 0, 0)?;
    }
    Ok(())
}

/// The `floor` contestant, or `floor-inline` when `inlined`.
fn run_floor(ops: u64, batch: u32, inlined: bool) -> io::Result<Duration> {
    let mut tasks = floor::Tasks::new(batch)?;
    Nops::time(
        &mut tasks,
        ops,
        batch,
        |tasks| tasks.noop(on_floor_noop, 0, 0),
        |tasks, nops| match inlined {
            true => tasks.run_inlined(nops, on_floor_noop),
            false => tasks.run(nops),
        },
    )
}
