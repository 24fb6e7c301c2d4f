//! The dns scenario (ouro-net's resolver against a simulated DNS server
//! over UDP with datagrams lost, duplicated and reordered and spoofed
//! replies): seeds pass and replay exactly, lookups are answered, and a
//! planted bug is found, replayed and shrunk.

use std::process::Command;

use ouro::sim::{Bug, World};
use ouro_sim::{check, dns, run_case, run_seed, scenario, shrink, Load};

#[test]
fn every_lookup_ends_once_with_the_tables_answer_over_two_hundred_seeds() {
    let summary = check(0..200, dns::run, None, 10);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.rechecked, 20);
    for class in ["udp_loss", "udp_duplicate", "udp_reorder"] {
        assert!(
            summary.faults.0.contains_key(class),
            "{class} injected: {:?}",
            summary.faults
        );
    }
}

#[test]
fn the_liveness_lookups_and_most_others_get_the_tables_answer() {
    let load = Load::default();
    let names = 2 * load.clients as usize;
    for seed in 0..20 {
        let world = World::new(seed);
        let answered = dns::run_phases(&world, load).expect("the scenario runs");
        assert!(world.finish().is_empty(), "seed {seed}");
        // Half the names are in the table; the liveness round answers
        // all of them, and the safety rounds some.
        assert!(answered.lookups > names / 2, "seed {seed}: {answered:?}");
        assert!(answered.lookups <= (load.rounds as usize + 1) * names / 2);
        // A third of the names are answered over TCP only, and the
        // liveness round asks for each of them.
        assert!(answered.over_tcp >= names / 3, "seed {seed}: {answered:?}");
    }
    assert_eq!(dns::address_of("host4.sim"), Some([192, 0, 2, 4].into()));
    assert_eq!(dns::address_of("host5.sim"), None);
    assert!(dns::only_over_tcp("host3.sim") && dns::only_over_tcp("host6.sim"));
    assert!(!dns::only_over_tcp("host4.sim"));
}

#[test]
fn a_seed_replays_its_lookups_exactly() {
    for seed in [3, 17, 99] {
        let first = run_seed(seed, dns::run, None);
        let again = run_seed(seed, dns::run, None);
        assert_eq!(first.log_hash, again.log_hash, "seed {seed} replays");
        assert_eq!(first.faults, again.faults);
    }
    assert_ne!(
        run_seed(3, dns::run, None).log_hash,
        run_seed(4, dns::run, None).log_hash
    );
}

#[test]
fn a_dropped_completion_is_found_replayed_and_shrunk() {
    let bug = Some(Bug::DropCompletion);
    let summary = check(0..100, dns::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 100 seeds");
    let replay = run_case(&failure.case, dns::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    assert!(run_case(&failure.case, dns::run, None)
        .violations
        .is_empty());
    let smallest = shrink(failure, dns::run, bug);
    assert!(!smallest.violations.is_empty());
    assert!(smallest.ops <= failure.ops);
    let replay = run_case(&smallest.case, dns::run, bug);
    assert_eq!(replay.violations, smallest.violations);
}

#[test]
fn the_runner_runs_the_dns_scenario_by_name() {
    assert!(scenario("dns").is_some());
    let out = Command::new(env!("CARGO_BIN_EXE_ouro-sim"))
        .args(["--seeds", "20", "--scenario", "dns"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scenario             dns\n"), "{text}");
    assert!(text.contains("seeds run            20\n"), "{text}");
    assert!(
        text.contains("replays compared     2 (0 differed)\n"),
        "{text}"
    );
}
