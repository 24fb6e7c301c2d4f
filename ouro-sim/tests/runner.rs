//! The runner over the echo scenario: seeds pass and replay identically,
//! a planted bug is found and replayed from its seed, and the shrinker
//! reduces its case to a smaller one that still fails. The command line
//! refuses bad arguments with its usage, and prints it on `--help`.

use std::process::Command;

use ouro::sim::Bug;
use ouro_sim::{
    check, echo, run_case, run_seed, scenario, shrink, Case, FaultClass, Load, SeedReport,
};

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
    let replay = run_seed(failure.case.seed, echo::run, Some(Bug::DropCompletion));
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    // Without the bug the same seed passes.
    assert!(run_seed(failure.case.seed, echo::run, None)
        .violations
        .is_empty());
}

#[test]
fn scenarios_are_found_by_name_and_unknown_names_are_none() {
    assert!(scenario("echo").is_some());
    assert!(scenario("no-such-scenario").is_none());
}

fn classes_on(report: &SeedReport) -> usize {
    FaultClass::ALL
        .iter()
        .filter(|class| class.is_on(&report.config))
        .count()
}

#[test]
fn the_shrinker_reduces_a_planted_bugs_case_to_a_smaller_one_that_replays() {
    let bug = Some(Bug::DropCompletion);
    let summary = check(0..100, echo::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed");
    let smallest = shrink(failure, echo::run, bug);
    eprintln!("{} -> {}", failure.replay_line(), smallest.replay_line());
    assert!(!smallest.violations.is_empty());
    assert_ne!(smallest.case, failure.case, "nothing was taken away");
    assert!(classes_on(&smallest) <= classes_on(failure));
    assert!(smallest.case.load.clients <= failure.case.load.clients);
    assert!(smallest.case.load.rounds <= failure.case.load.rounds);
    assert!(
        smallest.ops < failure.ops,
        "{} ops, before {}",
        smallest.ops,
        failure.ops
    );
    // The shrunk case replays, and without the bug it passes.
    let replay = run_case(&smallest.case, echo::run, bug);
    assert_eq!(replay.violations, smallest.violations);
    assert_eq!(replay.log_hash, smallest.log_hash);
    assert!(run_case(&smallest.case, echo::run, None)
        .violations
        .is_empty());
}

#[test]
fn a_case_prints_as_the_runner_arguments_that_run_it_again() {
    let case = Case {
        seed: 7,
        off: vec![FaultClass::Errors, FaultClass::Shuffle],
        load: Load {
            clients: 2,
            rounds: 1,
        },
    };
    let line = case.to_string();
    assert_eq!(
        line,
        "OURO_SIM_SEED=7 --off errors,shuffle --clients 2 --rounds 1"
    );
    assert!(!case.config().shuffle);
    assert_eq!(case.config().errors, 0.0);
    assert_eq!(Case::new(7).to_string(), "OURO_SIM_SEED=7");
    let seed = line
        .trim_start_matches("OURO_SIM_SEED=")
        .split(' ')
        .next()
        .unwrap();
    let args = line.split(' ').skip(1);
    let out = Command::new(env!("CARGO_BIN_EXE_ouro-sim"))
        .env("OURO_SIM_SEED", seed)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("seeds run            1\n"), "{text}");
    assert!(text.contains("violations           0\n"), "{text}");
}

#[test]
fn the_runner_refuses_an_unknown_fault_class_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_ouro-sim"))
        .args(["--seeds", "1", "--off", "errors,no-such-class"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no fault class \"no-such-class\""), "{text}");
}

/// The runner's exit status, stdout and stderr with `args` and
/// `OURO_SIM_SEED` set to `seed` (unset if `None`).
fn runner(args: &[&str], seed: Option<&str>) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ouro-sim"));
    command.args(args).env_remove("OURO_SIM_SEED");
    if let Some(seed) = seed {
        command.env("OURO_SIM_SEED", seed);
    }
    let out = command.output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_runner_refuses_a_seed_variable_that_is_not_a_seed_with_usage() {
    for bad in ["abc", "-5", "1.5"] {
        let (code, stdout, stderr) = runner(&["--seeds", "1"], Some(bad));
        assert_eq!(code, Some(2), "OURO_SIM_SEED={bad}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("OURO_SIM_SEED=\"{bad}\"")),
            "{stderr}"
        );
        assert!(stderr.contains("usage: ouro-sim"), "{stderr}");
        assert!(!stdout.contains("seeds run"), "seeds ran: {stdout}");
    }
    // Set but empty is unset.
    let (code, stdout, _) = runner(&["--seeds", "1"], Some(""));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("seeds run            1\n"), "{stdout}");
}

#[test]
fn the_runner_prints_its_usage_on_help_and_runs_nothing() {
    for flag in ["--help", "-h"] {
        let (code, stdout, stderr) = runner(&["--seeds", "5", flag], None);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert!(stdout.starts_with("usage: ouro-sim"), "{stdout}");
        for name in [
            "--seeds",
            "--off",
            "dispatch",
            "partitions",
            "OURO_SIM_SEED",
        ] {
            assert!(
                stdout.contains(name),
                "{flag} does not name {name}: {stdout}"
            );
        }
        assert!(!stdout.contains("seeds run"), "seeds ran: {stdout}");
    }
}

#[test]
fn the_runner_refuses_zero_seeds_which_would_pass_without_running() {
    let (code, stdout, stderr) = runner(&["--seeds", "0"], None);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("--seeds: at least 1"), "{stderr}");
    assert!(stderr.contains("usage: ouro-sim"), "{stderr}");
}
