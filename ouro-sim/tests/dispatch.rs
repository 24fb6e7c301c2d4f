//! The dispatch scenario: the accept-and-dispatch example's server, with
//! its worker threads as world nodes and fds moving between rings by
//! message, passes over a few hundred seeds and replays identically, with
//! no rounds too; a planted duplicate message is found and replayed from
//! its seed.

use ouro::sim::Bug;
use ouro_sim::{check, dispatch, run_case, run_seed, scenario, shrink, Case, Load};

#[test]
fn dispatch_passes_over_three_hundred_seeds_and_replays_identically() {
    let summary = check(0..300, dispatch::run, None, 10);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.rechecked, 30);
    // Messages were held back in some seeds, and connections were reset.
    assert!(summary.faults.0.get("message_delay").copied().unwrap_or(0) > 0);
    assert!(summary.faults.0.get("faults/recv").copied().unwrap_or(0) > 0);
    assert!(summary.ops > 10_000, "only {} operations", summary.ops);
    assert!(scenario("dispatch").is_some());
}

#[test]
fn clients_with_no_rounds_connect_and_close_and_the_server_stops() {
    let mut ops = 0;
    for seed in 0..30 {
        let mut case = Case::new(seed);
        case.load = Load {
            clients: 6,
            rounds: 0,
        };
        let report = run_case(&case, dispatch::run, None);
        assert!(
            report.violations.is_empty(),
            "{}: {:?}",
            report.replay_line(),
            report.violations
        );
        ops += report.ops;
    }
    // Six connects, accepts and closes a seed, at least.
    assert!(ops > 30 * 18, "only {ops} operations");
}

#[test]
fn a_message_delivered_twice_is_found_within_the_default_seed_count_and_replays() {
    let bug = Some(Bug::DuplicateMessage);
    let summary = check(0..100, dispatch::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted duplicate went unnoticed over 100 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.contains("a message was delivered twice")),
        "{:?}",
        failure.violations
    );
    let replay = run_seed(failure.case.seed, dispatch::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    assert!(run_seed(failure.case.seed, dispatch::run, None)
        .violations
        .is_empty());
    let smallest = shrink(failure, dispatch::run, bug);
    assert!(!smallest.violations.is_empty());
    assert!(smallest.case.load.clients <= failure.case.load.clients);
}
