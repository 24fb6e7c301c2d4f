//! The files scenario over many seeds: synced records survive every crash,
//! torn tails are caught, runs replay identically, and a planted bug (an
//! fsync acknowledged without keeping the data) and a writer's bug
//! (retrying a failed fsync) are found and replayed.

use ouro::sim::Bug;
use ouro_sim::{check, files, run_seed, scenario};

#[test]
fn files_passes_over_three_hundred_seeds_and_replays_identically() {
    let summary = check(0..300, files::run, None, 5);
    for failure in &summary.failures {
        eprintln!("{}: {:?}", failure.replay_line(), failure.violations);
    }
    assert!(summary.passed(), "{} failing seeds", summary.failures.len());
    assert_eq!(summary.rechecked, 60);
    for class in [
        "files/eio",
        "files/enospc",
        "files/short_read",
        "files/short_write",
        "files/torn",
    ] {
        assert!(
            summary.faults.0.get(class).is_some_and(|&n| n > 0),
            "no {class}"
        );
    }
    assert!(scenario("files").is_some());
}

#[test]
fn an_fsync_that_forgets_is_found_within_the_default_seed_count_and_replays() {
    let bug = Some(Bug::FsyncForgets);
    let summary = check(0..100, files::run, bug, 0);
    let failure = summary
        .failures
        .first()
        .expect("the planted bug went unnoticed over 100 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.contains("acknowledged durable")),
        "{:?}",
        failure.violations
    );
    let replay = run_seed(failure.case.seed, files::run, bug);
    assert_eq!(replay.violations, failure.violations);
    assert_eq!(replay.log_hash, failure.log_hash);
    assert!(run_seed(failure.case.seed, files::run, None)
        .violations
        .is_empty());
}

#[test]
fn a_writer_that_retries_a_failed_fsync_loses_acknowledged_records_and_is_found() {
    let summary = check(0..100, files::run_retrying_fsync, None, 0);
    let failure = summary
        .failures
        .first()
        .expect("retrying a failed fsync went unnoticed over 100 seeds");
    assert!(
        failure
            .violations
            .iter()
            .any(|v| v.contains("acknowledged durable")),
        "{:?}",
        failure.violations
    );
    assert!(
        failure.faults.0.contains_key("files/eio") || failure.faults.0.contains_key("files/enospc")
    );
    let replay = run_seed(failure.case.seed, files::run_retrying_fsync, None);
    assert_eq!(replay.violations, failure.violations);
    assert!(run_seed(failure.case.seed, files::run, None)
        .violations
        .is_empty());
}

#[test]
fn a_simulated_file_grows_to_a_gibibyte_and_no_further() {
    use ouro::fs::OpenOptions;
    use ouro::sim::{Config, World};
    use ouro::{Completion, Ctx, Offset, Outcome, Ring};
    use std::time::Duration;

    fn collect(
        got: &mut Vec<Completion>,
        _: &mut Ring<Vec<Completion>>,
        c: Completion,
    ) -> std::io::Result<()> {
        got.push(c);
        Ok(())
    }
    let world = World::with_config(1, Config::calm());
    let mut node = (Ring::simulated(&world), Vec::new());
    let options = OpenOptions::new().write(true).create(true);
    node.0.open("/big", &options, Ctx::new(collect));
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let fd = match node.1.remove(0).outcome {
        Outcome::Open(Ok(fd)) => std::rc::Rc::new(fd),
        other => panic!("{other:?}"),
    };
    let gib = 1u64 << 30;
    let ring = &mut node.0;
    ring.write(
        fd.clone(),
        b"x".to_vec(),
        Offset::At(gib),
        Ctx::new(collect),
    );
    ring.ftruncate(fd.clone(), gib + 1, Ctx::new(collect));
    ring.fallocate(fd.clone(), 0, gib, 1, Ctx::new(collect));
    ring.write(fd.clone(), b"x".to_vec(), Offset::At(0), Ctx::new(collect));
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let mut errors: Vec<Option<i32>> = node
        .1
        .drain(..)
        .map(|c| match c.outcome {
            Outcome::Write(res, _) => res.err().and_then(|e| e.raw_os_error()),
            Outcome::Ftruncate(res) | Outcome::Fallocate(res) => {
                res.err().and_then(|e| e.raw_os_error())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    errors.sort();
    let efbig = Some(libc::EFBIG);
    assert_eq!(errors, [None, efbig, efbig, efbig]);
    drop(node);
    drop(fd);
    assert!(world.finish().is_empty());
}
