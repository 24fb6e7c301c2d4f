//! The tls scenario (ouro-tls client and server sessions over simulated
//! TCP with segmenting, short reads and writes, resets and partitions):
//! seeds pass and replay exactly, every round ends in a clean session,
//! and a planted bug is found.

use ouro::sim::{Bug, World};
use ouro_sim::{check, run_case, run_seed, scenario, tls, Load};

#[test]
fn every_session_arrives_intact_or_fails_over_two_hundred_seeds() {
    let summary = check(0..200, tls::run, None, 10);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    // The replay check: a tenth of the seeds ran twice with equal logs.
    assert_eq!(summary.rechecked, 20);
    for class in [
        "segment",
        "short_read",
        "short_write",
        "faults/recv",
        "faults/send",
        "partition/held",
    ] {
        assert!(
            summary.faults.0.contains_key(class),
            "{class} injected: {:?}",
            summary.faults
        );
    }
}

#[test]
fn every_round_ends_in_a_session_that_carried_its_message_and_closed_cleanly() {
    let load = Load::default();
    for seed in 0..10 {
        let world = World::new(seed);
        let sessions = tls::run_phases(&world, load).expect("the scenario runs");
        assert_eq!(world.finish(), Vec::<String>::new(), "seed {seed}");
        assert_eq!(
            sessions,
            u64::from(load.clients * load.rounds),
            "seed {seed}"
        );
    }
}

#[test]
fn a_seed_replays_its_sessions_exactly() {
    for seed in [5, 21] {
        let first = run_seed(seed, tls::run, None);
        let again = run_seed(seed, tls::run, None);
        assert_eq!(first.log_hash, again.log_hash, "seed {seed} replays");
        assert_eq!(first.ops, again.ops);
    }
    assert_ne!(
        run_seed(5, tls::run, None).log_hash,
        run_seed(6, tls::run, None).log_hash
    );
}

#[test]
fn a_dropped_completion_is_found_and_replayed() {
    let bug = Some(Bug::DropCompletion);
    let summary = check(0..50, tls::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 50 seeds");
    let replay = run_case(&failure.case, tls::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    assert!(scenario("tls").is_some());
}
