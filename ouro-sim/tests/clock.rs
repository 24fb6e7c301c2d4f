//! Virtual time at its far end: a timer due at the end of time
//! (`Duration::MAX`) never fires, as on a real ring, and a lone ring says
//! it would wait for ever; late timers stay before the end.

use std::io;
use std::time::Duration;

use ouro::sim::{Config, Stop, World};
use ouro::{Completion, Ctx, Outcome, Ring, RunMode};

#[path = "../../ouro/tests/common/watchdog.rs"]
mod watchdog;

use watchdog::AbortAfter;

/// The wall time a test may take before its watchdog aborts it: every
/// run here takes milliseconds unless the world steps through virtual
/// time it could skip.
const WALL_LIMIT: Duration = Duration::from_secs(60);

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
