//! The runner over the echo scenario: seeds pass and replay identically,
//! and a planted bug is found and replayed from its seed.

use ouro::sim::Bug;
use ouro_sim::{check, echo, run_seed, scenario};

#[test]
fn echo_passes_over_a_hundred_seeds_and_replays_identically() {
    let summary = check(0..100, echo::run, None, 5);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.seeds, 100);
    // The swarm switched faults on in some seeds.
    assert!(summary.faults.0.values().sum::<u64>() > 0);
    assert!(summary.ops > 10_000, "only {} operations", summary.ops);
}

#[test]
fn a_seed_run_twice_gives_the_same_event_log() {
    let first = run_seed(42, echo::run, None);
    let second = run_seed(42, echo::run, None);
    assert_eq!(first.log_hash, second.log_hash);
    assert_eq!(first.faults, second.faults);
    let other = run_seed(43, echo::run, None);
    assert_ne!(first.log_hash, other.log_hash, "the seed changes nothing");
}

#[test]
fn a_dropped_completion_is_found_within_the_default_seed_count_and_replays() {
    let summary = check(0..100, echo::run, Some(Bug::DropCompletion), 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 100 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.contains("in flight at the end") || v.contains("liveness")),
        "{:?}",
        failure.violations
    );
    let replay = run_seed(failure.seed, echo::run, Some(Bug::DropCompletion));
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    // Without the bug the same seed passes.
    assert!(run_seed(failure.seed, echo::run, None)
        .violations
        .is_empty());
}

#[test]
fn scenarios_are_found_by_name_and_unknown_names_are_none() {
    assert!(scenario("echo").is_some());
    assert!(scenario("no-such-scenario").is_none());
}
