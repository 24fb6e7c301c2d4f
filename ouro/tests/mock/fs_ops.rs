//! The file-system operations (and fadvise, madvise) reach the mock with
//! their fd and paths, and get the scripted reply (success and an error
//! each).

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use ouro::fs::{Advice, MemoryAdvice};
use ouro::mock::{Mock, Reply};
use ouro::{Completion, Ctx, OpKind, Outcome, Ring, RunMode};

use super::collect;
use crate::common::fds::apart_from_other_tests;

type Got = Vec<(Completion, Instant)>;

/// What the mock saw of one operation: its fd and the paths it names.
type Seen = (Option<RawFd>, [Option<std::path::PathBuf>; 2]);

/// Runs one operation of `kind` on a mock that answers it with `reply`,
/// returning its outcome and what the mock saw of it.
fn scripted(
    kind: OpKind,
    reply: fn() -> Reply,
    schedule: impl FnOnce(&mut Ring<Got>, Ctx<Got>) -> ouro::Task,
) -> (Outcome, Seen) {
    let seen = Rc::new(RefCell::new(None));
    let record = seen.clone();
    let mut mock = Mock::new();
    mock.on(kind, move |op| {
        let paths = op.paths().map(|p| p.map(std::path::Path::to_path_buf));
        *record.borrow_mut() = Some((op.fd(), paths));
        reply()
    });
    let mut ring = Ring::mock(mock);
    schedule(&mut ring, Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 1, "one operation, one completion");
    let (completion, _) = got.pop().unwrap();
    assert_eq!(completion.op(), kind);
    let seen = seen
        .borrow_mut()
        .take()
        .expect("the mock saw the operation");
    (completion.outcome, seen)
}

#[test]
fn ftruncate_reaches_the_mock_with_its_fd_and_gets_the_scripted_reply() {
    let _alone = apart_from_other_tests();
    let file = Rc::new(tempfile::tempfile().unwrap());
    let raw = file.as_raw_fd();
    let (outcome, (fd, _)) = scripted(
        OpKind::Ftruncate,
        || Reply::Value(0),
        |r, c| r.ftruncate(&file, 4, c),
    );
    assert!(matches!(outcome, Outcome::Ftruncate(Ok(()))), "{outcome:?}");
    assert_eq!(fd, Some(raw));
    let (outcome, _) = scripted(
        OpKind::Ftruncate,
        || Reply::Errno(libc::EFBIG),
        |r, c| r.ftruncate(&file, 4, c),
    );
    let Outcome::Ftruncate(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
}

#[test]
fn unlink_and_remove_dir_reach_the_mock_with_their_path() {
    let _alone = apart_from_other_tests();
    let (outcome, (_, paths)) = scripted(
        OpKind::Unlink,
        || Reply::Value(0),
        |r, c| r.unlink("/some/file", c),
    );
    assert!(matches!(outcome, Outcome::Unlink(Ok(()))), "{outcome:?}");
    assert_eq!(paths, [Some("/some/file".into()), None]);
    let (outcome, (_, paths)) = scripted(
        OpKind::Unlink,
        || Reply::Errno(libc::ENOTEMPTY),
        |r, c| r.remove_dir("/some/dir", c),
    );
    let Outcome::Unlink(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    assert_eq!(paths, [Some("/some/dir".into()), None]);
}

#[test]
fn rename_reaches_the_mock_with_both_paths() {
    let _alone = apart_from_other_tests();
    let (outcome, (fd, paths)) = scripted(
        OpKind::Rename,
        || Reply::Value(0),
        |r, c| r.rename("/from", "/to", c),
    );
    assert!(matches!(outcome, Outcome::Rename(Ok(()))), "{outcome:?}");
    assert_eq!(fd, None);
    assert_eq!(paths, [Some("/from".into()), Some("/to".into())]);
    let (outcome, _) = scripted(
        OpKind::Rename,
        || Reply::Errno(libc::EXDEV),
        |r, c| r.rename("/from", "/elsewhere/to", c),
    );
    let Outcome::Rename(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
}

#[test]
fn mkdir_reaches_the_mock_with_its_path() {
    let _alone = apart_from_other_tests();
    let (outcome, (_, paths)) = scripted(
        OpKind::Mkdir,
        || Reply::Value(0),
        |r, c| r.mkdir("/new", 0o755, c),
    );
    assert!(matches!(outcome, Outcome::Mkdir(Ok(()))), "{outcome:?}");
    assert_eq!(paths, [Some("/new".into()), None]);
    let (outcome, _) = scripted(
        OpKind::Mkdir,
        || Reply::Errno(libc::EEXIST),
        |r, c| r.mkdir("/new", 0o755, c),
    );
    let Outcome::Mkdir(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
}

#[test]
fn symlink_reaches_the_mock_with_target_and_link() {
    let _alone = apart_from_other_tests();
    let (outcome, (_, paths)) = scripted(
        OpKind::Symlink,
        || Reply::Value(0),
        |r, c| r.symlink("target", "/link", c),
    );
    assert!(matches!(outcome, Outcome::Symlink(Ok(()))), "{outcome:?}");
    assert_eq!(paths, [Some("target".into()), Some("/link".into())]);
    let (outcome, _) = scripted(
        OpKind::Symlink,
        || Reply::Errno(libc::EEXIST),
        |r, c| r.symlink("target", "/link", c),
    );
    let Outcome::Symlink(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
}

#[test]
fn hard_link_reaches_the_mock_with_both_paths() {
    let _alone = apart_from_other_tests();
    let (outcome, (_, paths)) = scripted(
        OpKind::HardLink,
        || Reply::Value(0),
        |r, c| r.hard_link("/original", "/link", c),
    );
    assert!(matches!(outcome, Outcome::HardLink(Ok(()))), "{outcome:?}");
    assert_eq!(paths, [Some("/original".into()), Some("/link".into())]);
    let (outcome, _) = scripted(
        OpKind::HardLink,
        || Reply::Errno(libc::EMLINK),
        |r, c| r.hard_link("/original", "/link", c),
    );
    let Outcome::HardLink(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EMLINK));
}

#[test]
fn fallocate_reaches_the_mock_with_its_fd() {
    let _alone = apart_from_other_tests();
    let file = Rc::new(tempfile::tempfile().unwrap());
    let raw = file.as_raw_fd();
    let (outcome, (fd, paths)) = scripted(
        OpKind::Fallocate,
        || Reply::Value(0),
        |r, c| r.fallocate(&file, 0, 0, 4096, c),
    );
    assert!(matches!(outcome, Outcome::Fallocate(Ok(()))), "{outcome:?}");
    assert_eq!((fd, paths), (Some(raw), [None, None]));
    let (outcome, _) = scripted(
        OpKind::Fallocate,
        || Reply::Errno(libc::ENOSPC),
        |r, c| r.fallocate(&file, 0, 0, 4096, c),
    );
    let Outcome::Fallocate(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
}

#[test]
fn fstat_reaches_the_mock_as_a_stat_of_its_fd() {
    let _alone = apart_from_other_tests();
    let file = Rc::new(tempfile::tempfile().unwrap());
    let raw = file.as_raw_fd();
    let (outcome, (fd, paths)) =
        scripted(OpKind::Stat, || Reply::Value(0), |r, c| r.fstat(&file, c));
    assert!(matches!(outcome, Outcome::Stat(Ok(_))), "{outcome:?}");
    assert_eq!((fd, paths), (Some(raw), [None, None]));
    let (outcome, _) = scripted(
        OpKind::Stat,
        || Reply::Errno(libc::EBADF),
        |r, c| r.fstat(&file, c),
    );
    let Outcome::Stat(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
}

#[test]
fn fadvise_reaches_the_mock_with_its_fd() {
    let _alone = apart_from_other_tests();
    let file = Rc::new(tempfile::tempfile().unwrap());
    let raw = file.as_raw_fd();
    let (outcome, (fd, paths)) = scripted(
        OpKind::Fadvise,
        || Reply::Value(0),
        |r, c| r.fadvise(&file, 0, 0, Advice::WillNeed, c),
    );
    assert!(matches!(outcome, Outcome::Fadvise(Ok(()))), "{outcome:?}");
    assert_eq!((fd, paths), (Some(raw), [None, None]));
    let (outcome, _) = scripted(
        OpKind::Fadvise,
        || Reply::Errno(libc::ESPIPE),
        |r, c| r.fadvise(&file, 0, 0, Advice::DontNeed, c),
    );
    let Outcome::Fadvise(Err(err)) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::ESPIPE));
}

#[test]
fn madvise_reaches_the_mock_and_gives_its_buffer_back() {
    let _alone = apart_from_other_tests();
    let (outcome, seen) = scripted(
        OpKind::Madvise,
        || Reply::Value(0),
        |r, c| r.madvise(vec![3u8; 8192], MemoryAdvice::Sequential, c),
    );
    let Outcome::Madvise(Ok(()), buf) = outcome else {
        panic!("expected success, got {outcome:?}")
    };
    assert_eq!(&buf[..], &[3u8; 8192][..]);
    assert_eq!(seen, (None, [None, None]), "no fd, no path");
    let (outcome, _) = scripted(
        OpKind::Madvise,
        || Reply::Errno(libc::EAGAIN),
        |r, c| r.madvise(vec![4u8; 16], MemoryAdvice::WillNeed, c),
    );
    let Outcome::Madvise(Err(err), buf) = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
    assert_eq!(
        &buf[..],
        &[4u8; 16][..],
        "the buffer comes back on error too"
    );
}
