//! Virtual time at its far end: a timer due at the end of time
//! (`Duration::MAX`) never fires, as on a real ring, and a lone ring says
//! it would wait for ever; late timers stay before the end; a timer years
//! away is reached at once with partitions on, which still start in the
//! cycle before it fires.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ouro::net::Type;
use ouro::sim::{Config, Partitions, Stop, World};
use ouro::{Completion, Ctx, Outcome, Ring, RunMode};

mod common;
#[path = "../../ouro/tests/common/watchdog.rs"]
mod watchdog;

use common::socket;
use watchdog::AbortAfter;

/// The wall time a test may take before its watchdog aborts it: every
/// run here takes milliseconds unless the world steps through virtual
/// time it could skip.
const WALL_LIMIT: Duration = Duration::from_secs(60);

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn fired(n: &mut u32, _: &mut Ring<u32>, c: Completion) -> io::Result<()> {
    assert!(matches!(c.outcome, Outcome::Timer(Ok(()))), "{c:?}");
    *n += 1;
    Ok(())
}

#[test]
fn a_lone_ring_waiting_for_a_duration_max_timer_says_it_would_wait_for_ever() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let mut partitioned = 0;
    for seed in 0..4 {
        let world = World::new(seed);
        partitioned += usize::from(world.config().partitions.on());
        let mut ring: Ring<u32> = Ring::simulated(&world);
        ring.timer(Duration::MAX, Ctx::new(fired));
        let mut n = 0;
        let err = ring
            .run(&mut n, RunMode::UntilDone)
            .expect_err("a wait for the end of time ended");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "seed {seed}: {err}");
        assert!(err.to_string().contains("end of virtual time"), "{err}");
        assert_eq!(n, 0, "seed {seed}: the timer fired");
        assert!(world.now() < Duration::from_nanos(u64::MAX), "seed {seed}");
    }
    assert!(
        partitioned > 0 && partitioned < 4,
        "seeds 0..4 no longer cover partitions both on and off"
    );
}

#[test]
fn a_duration_max_timer_never_fires_and_time_passes_for_later_timers() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let world = World::with_config(3, Config::calm());
    let mut never: Ring<u32> = Ring::simulated(&world);
    never.timer(Duration::MAX, Ctx::new(fired));
    let mut never = (never, 0);
    let stop = world.run(&mut [&mut never], Duration::MAX).unwrap();
    assert_eq!(stop, Stop::Idle);
    assert_eq!(never.1, 0, "a Duration::MAX timer fired");
    assert_eq!(world.now(), Duration::ZERO, "the clock moved for nothing");
    let mut later: Ring<u32> = Ring::simulated(&world);
    later.timer(Duration::from_secs(1), Ctx::new(fired));
    let mut later = (later, 0);
    let stop = world
        .run(&mut [&mut later, &mut never], Duration::from_secs(5))
        .unwrap();
    assert_eq!(stop, Stop::Idle);
    assert_eq!((later.1, never.1), (1, 0));
    assert_eq!(world.now(), Duration::from_secs(1));
}

#[test]
fn late_timers_near_the_end_of_time_fire_before_it() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let due = u64::MAX - 10;
    let mut late = 0;
    for seed in 0..4 {
        let config = Config {
            late_timers_ns: 1_000_000,
            ..Config::calm()
        };
        let world = World::with_config(seed, config);
        let mut ring: Ring<u32> = Ring::simulated(&world);
        ring.timer(Duration::from_nanos(due), Ctx::new(fired));
        let mut node = (ring, 0);
        let stop = world.run(&mut [&mut node], Duration::MAX).unwrap();
        assert_eq!((stop, node.1), (Stop::Idle, 1), "seed {seed}");
        let now = world.now();
        assert!(now >= Duration::from_nanos(due), "seed {seed}: early");
        assert!(now < Duration::from_nanos(u64::MAX), "seed {seed}: {now:?}");
        late += usize::from(now > Duration::from_nanos(due));
    }
    assert!(late > 0, "no timer was late");
}

/// A ring's state: whether its timer fired, and whether a partition was
/// in force then.
struct Probe {
    world: World,
    fired_partitioned: Option<bool>,
}

fn probe(probe: &mut Probe, _: &mut Ring<Probe>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Timer(Ok(())) => {
            probe.fired_partitioned = Some(!probe.world.unhealed().is_empty());
        }
        Outcome::Socket(_) | Outcome::Bind(Ok(())) | Outcome::Listen(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// Partitions every few milliseconds, and nothing else.
fn churning() -> Config {
    Config {
        partitions: Partitions {
            gap_ns: 5_000_000,
            longest_ns: 50_000_000,
            clog_ns: 1_000_000,
        },
        ..Config::calm()
    }
}

/// Partitions started so far.
fn partitions(world: &World) -> u64 {
    let faults = world.faults().0;
    [
        "partition/symmetric",
        "partition/one_way",
        "partition/clogged",
    ]
    .iter()
    .map(|class| faults.get(*class).copied().unwrap_or(0))
    .sum()
}

/// Runs a world with partitions between two listening hosts and one
/// timer due at `at` of virtual time, for at most `limit`: the world, why
/// the run stopped, and the probe.
fn far_timer(seed: u64, at: Duration, limit: Duration) -> (World, Stop, Probe) {
    let world = World::with_config(seed, churning());
    let fds = [socket(&world, Type::STREAM), socket(&world, Type::STREAM)];
    let start = world.now();
    let mut ring: Ring<Probe> = Ring::simulated(&world);
    for (fd, host) in fds.into_iter().zip([[10, 0, 0, 1], [10, 0, 0, 2]]) {
        let fd = ring.register_fd(fd);
        let addr = SocketAddr::from((host, 7000));
        ring.bind(fd, addr, Ctx::new(probe));
        ring.listen(fd, 4, Ctx::new(probe));
    }
    ring.timer(at - start, Ctx::new(probe));
    let state = Probe {
        world: world.clone(),
        fired_partitioned: None,
    };
    let mut node = (ring, state);
    let stop = world.run(&mut [&mut node], limit).unwrap();
    assert!(start < Duration::from_millis(1), "the setup took {start:?}");
    (world, stop, node.1)
}

#[test]
fn a_timer_years_away_is_reached_at_once_with_partitions_churning() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let at = YEAR * 100;
    let (mut started, mut in_force) = (0, 0);
    for seed in 0..10 {
        let (world, stop, probe) = far_timer(seed, at, at * 2);
        // Once the timer fired, nothing but partitions is left.
        assert_eq!(stop, Stop::Idle, "seed {seed}");
        let partitioned = probe.fired_partitioned.expect("the timer fired");
        in_force += usize::from(partitioned);
        assert_eq!(world.now(), at, "seed {seed}");
        // Only the cycles near the start and the end were stepped.
        let n = partitions(&world);
        assert!(n < 1000, "seed {seed}: {n} partitions stepped through");
        started += n;
        let (again, _, _) = far_timer(seed, at, at * 2);
        assert_eq!(again.log_hash(), world.log_hash(), "seed {seed} replays");
        assert_eq!(again.faults(), world.faults(), "seed {seed} replays");
        assert_eq!(again.now(), world.now(), "seed {seed} replays");
    }
    assert!(started > 0, "no partition started");
    assert!(
        in_force > 0,
        "no partition was in force when a far timer fired"
    );
}

#[test]
fn a_run_that_ends_before_a_far_timer_stops_at_its_limit_at_once() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let (world, stop, probe) = far_timer(1, YEAR * 100, YEAR * 10);
    assert_eq!(stop, Stop::TimeUp);
    let past = world.now().checked_sub(YEAR * 10);
    assert!(
        past.is_some_and(|past| past < Duration::from_millis(1)),
        "stopped at {:?}",
        world.now()
    );
    assert_eq!(probe.fired_partitioned, None, "the timer fired early");
}

#[test]
fn a_timer_just_before_the_end_of_time_fires_with_partitions_churning() {
    let _watchdog = AbortAfter::new(WALL_LIMIT);
    let due = Duration::from_nanos(u64::MAX - 10);
    let (world, stop, probe) = far_timer(2, due, Duration::MAX);
    assert_eq!(stop, Stop::Idle);
    assert!(probe.fired_partitioned.is_some(), "the timer did not fire");
    assert_eq!(world.now(), due);
}
