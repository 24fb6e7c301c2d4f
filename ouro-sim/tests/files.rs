//! The files scenario over many seeds: synced records survive every crash,
//! torn tails are caught, runs replay identically, and a planted bug (an
//! fsync acknowledged without keeping the data) and a writer's bug
//! (retrying a failed fsync) are found and replayed.

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::fs::OpenOptions;
use ouro::sim::{Bug, Config, World};
use ouro::{Completion, Ctx, Offset, Outcome, PollMask, Ring};
use ouro_sim::{check, files, run_case, run_seed, scenario, shrink, FaultClass};

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
fn the_shrinker_reduces_a_forgetting_fsyncs_case_and_can_switch_file_faults_off() {
    let bug = Some(Bug::FsyncForgets);
    let summary = check(0..100, files::run, bug, 0);
    let failure = summary
        .failures
        .iter()
        .find(|f| FaultClass::FileShortIo.is_on(&f.config))
        .expect("a failing seed with short file reads and writes on");
    let smallest = shrink(failure, files::run, bug);
    assert!(!smallest.violations.is_empty());
    assert!(
        smallest.case.off.contains(&FaultClass::FileShortIo),
        "{}",
        smallest.case
    );
    assert!(!FaultClass::FileShortIo.is_on(&smallest.config));
    let load = smallest.case.load;
    assert!(load.rounds < failure.case.load.rounds || load.clients < failure.case.load.clients);
    let again = run_case(&smallest.case, files::run, bug);
    assert_eq!(again.violations, smallest.violations);
    let named = FaultClass::from_name("file_errors");
    assert_eq!(named, Some(FaultClass::FileErrors));
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

type Got = Vec<Completion>;

fn collect(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

/// A calm world with a ring and a file `/f` open for writing on it.
fn world_with_a_file() -> (World, (Ring<Got>, Got), Rc<OwnedFd>) {
    let world = World::with_config(1, Config::calm());
    let mut node = (Ring::simulated(&world), Vec::new());
    let options = OpenOptions::new().write(true).create(true);
    node.0.open("/f", &options, Ctx::new(collect));
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let fd = match node.1.remove(0).outcome {
        Outcome::Open(Ok(fd)) => Rc::new(fd),
        other => panic!("{other:?}"),
    };
    (world, node, fd)
}

#[test]
fn a_simulated_file_grows_to_a_gibibyte_and_no_further() {
    let (world, mut node, fd) = world_with_a_file();
    let gib = 1u64 << 30;
    let ring = &mut node.0;
    let far = Offset::At(gib);
    ring.write(fd.clone(), b"x".to_vec(), far, Ctx::new(collect));
    ring.ftruncate(fd.clone(), gib + 1, Ctx::new(collect));
    ring.fallocate(fd.clone(), 0, gib, 1, Ctx::new(collect));
    let near = Offset::At(0);
    ring.write(fd.clone(), b"x".to_vec(), near, Ctx::new(collect));
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

#[test]
fn file_operations_the_simulator_does_not_carry_out_fail_naming_them() {
    let (world, mut node, fd) = world_with_a_file();
    let ring = &mut node.0;
    ring.poll(fd.clone(), PollMask::READABLE, Ctx::new(collect));
    ring.symlink("/f", "/link", Ctx::new(collect));
    let options = OpenOptions::new().read(true);
    ring.open_direct("/f", &options, Ctx::new(collect));
    let (from, to) = std::io::pipe().unwrap();
    let (from, to) = (Rc::new(OwnedFd::from(from)), Rc::new(OwnedFd::from(to)));
    ring.splice(from, None, fd.clone(), None, 4, Ctx::new(collect));
    ring.splice(fd.clone(), None, to, None, 4, Ctx::new(collect));
    world.run(&mut [&mut node], Duration::from_secs(1)).unwrap();
    let mut errors: Vec<String> = node
        .1
        .drain(..)
        .map(|c| {
            let err = match c.outcome {
                Outcome::Poll(Err(err)) | Outcome::Symlink(Err(err)) => err,
                Outcome::OpenDirect(Err(err)) | Outcome::Splice(Err(err)) => err,
                other => panic!("expected a failure, got {other:?}"),
            };
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
            err.to_string()
        })
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 5);
    assert!(errors[0].contains("OpenDirect"), "{errors:?}");
    assert!(errors[1].contains("Poll on a file"), "{errors:?}");
    assert!(errors[2].contains("Splice on a file"), "{errors:?}");
    assert!(errors[3].contains("Splice on a file"), "{errors:?}");
    assert!(errors[4].contains("Symlink"), "{errors:?}");
    drop(node);
    drop(fd);
    assert!(world.finish().is_empty());
}
