//! Virtual time: the delays drawn for what the world carries out, late
//! timers, the end of time, and the jump past partitions that start and
//! heal while nothing else happens.
//!
//! Time is nanoseconds in a `u64`, so it ends after about 584 years, at
//! [`END_OF_TIME`]. A real ring's clock never gets there, so a timer or
//! deadline due then (where every sum saturates, `Duration::MAX` among
//! them) never fires. The world keeps that true: nothing is scheduled at
//! the end, and the clock stops short of it, so that no timer fires
//! before its time however near the end the clock is.

use super::faults::{Fault, Stream};
use super::world::State;

/// The end of virtual time: it never comes, and nothing happens at it.
pub(crate) const END_OF_TIME: u64 = u64::MAX;

impl State {
    /// A delay drawn from the latency distribution.
    pub(crate) fn delay(&mut self) -> u64 {
        let latency = self.config.latency;
        let rng = self.streams.get(Stream::Latency);
        let mut delay = latency.base_ns;
        if latency.spread_ns > 0 {
            delay += rng.u64(0..=latency.spread_ns);
        }
        if latency.tail_rate > 0.0 && rng.f64() < latency.tail_rate {
            delay += latency.tail_ns;
            self.faults.add(Fault::LatencyTail);
        }
        delay
    }

    /// A timer due at `at` (before the end of time) fires this much
    /// later, if late timers are on; still before the end, which a timer
    /// due earlier would not wait for.
    pub(super) fn late_timer(&mut self, at: u64) -> u64 {
        let most = self.config.late_timers_ns;
        if most == 0 {
            return at;
        }
        self.faults.add(Fault::LateTimer);
        let late = at.saturating_add(self.streams.get(Stream::Timers).u64(0..=most));
        late.min(END_OF_TIME - 1)
    }

    /// When the world next needs to look, given the nearest `timer`: the
    /// next event, but if nothing except partitions starting and healing
    /// is scheduled, no earlier than one whole partition cycle (the
    /// longest gap and the longest partition) before the timer. Stepping
    /// through every cycle up to a far timer costs wall time in
    /// proportion to its distance (a year took minutes), while nothing is
    /// on its way for a partition to cut; the cycle before the timer is
    /// stepped as ever, so a partition may be in force when it fires. The
    /// starts and heals jumped over are carried out when the clock lands.
    pub(super) fn next_event_past_churn(&self, timer: Option<u64>) -> Option<u64> {
        let event = self.next_event()?;
        let Some(timer) = timer.filter(|_| self.only_partitions_left()) else {
            return Some(event);
        };
        let plan = self.config.partitions;
        let cycle = plan.gap_ns.saturating_add(plan.longest_ns);
        Some(event.max(timer.saturating_sub(cycle)))
    }
}
