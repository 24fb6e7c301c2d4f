//! Partitions in the echo scenario: seeds with partitions and clogged
//! paths pass (TCP holds what a cut path carries until it heals), and a
//! partition that never heals is a liveness violation that names what was
//! pending and replays from its seed.

use std::io;
use std::time::Duration;

use ouro::sim::{Bug, Config, Partitions, World};
use ouro::{Ring, RunMode};
use ouro_sim::{check, echo, run_case, run_seed, Case, FaultClass};

#[path = "../../ouro/tests/common/watchdog.rs"]
mod watchdog;

#[test]
fn echo_passes_through_partitions_of_every_kind() {
    let summary = check(0..100, echo::run, None, 0);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    for class in [
        "partition/symmetric",
        "partition/one_way",
        "partition/clogged",
        "partition/held",
    ] {
        let n = summary.faults.0.get(class).copied().unwrap_or(0);
        assert!(n > 0, "no {class} over 100 seeds: {:?}", summary.faults);
    }
}

#[test]
fn a_partition_that_never_heals_is_a_liveness_violation_that_replays() {
    let bug = Some(Bug::PartitionNeverHeals);
    let summary = check(0..100, echo::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("a partition that never heals went unnoticed over 100 seeds");
    let liveness = failure
        .violations
        .iter()
        .find(|v| v.starts_with("liveness:"))
        .unwrap_or_else(|| panic!("no liveness violation: {:?}", failure.violations));
    assert!(liveness.contains("client "), "{liveness}");
    assert!(liveness.contains("not healed"), "{liveness}");
    let replay = run_seed(failure.case.seed, echo::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    // Without the bug the same seed passes; without partitions, too.
    assert!(run_seed(failure.case.seed, echo::run, None)
        .violations
        .is_empty());
    let mut calm = Case::new(failure.case.seed);
    calm.off.push(FaultClass::Partitions);
    assert!(run_case(&calm, echo::run, bug).violations.is_empty());
}

#[test]
fn the_liveness_phase_starts_with_work_pending_and_partitions_in_force() {
    let (mut pending, mut partitioned) = (0, 0);
    for seed in 0..100 {
        let world = World::new(seed);
        let start = echo::run_phases(&world, Default::default()).unwrap();
        let violations = world.finish();
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
        pending += usize::from(start.clients_pending > 0);
        partitioned += usize::from(start.partitions > 0);
    }
    assert!(
        pending > 0,
        "no seed reached the liveness phase with rounds pending"
    );
    assert!(
        partitioned > 0,
        "no seed reached the liveness phase partitioned"
    );
}

/// A ring run alone in a world where partitions come and go, with nothing
/// that could end its wait: the wait says so (as in a calm world), rather
/// than following partitions through virtual time for ever.
#[test]
fn a_lone_ring_with_nothing_to_wait_for_is_told_so_while_partitions_come_and_go() {
    let config = Config {
        partitions: Partitions {
            gap_ns: 5_000_000,
            longest_ns: 50_000_000,
            clog_ns: 10_000_000,
        },
        ..Config::calm()
    };
    let err = watchdog::run_within(Duration::from_secs(60), move || {
        let world = World::with_config(1, config);
        let mut ring: Ring<()> = Ring::simulated(&world);
        ring.run(&mut (), RunMode::Forever)
            .expect_err("a wait nothing ends")
    });
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
}
