//! Scripts no kernel could follow: a reply moving more bytes than the
//! operation asked for is the script's mistake (`InvalidInput`), and a
//! reply that never comes is an error from `run` also once the ring has
//! made a handle for messages.

use std::io;
use std::time::Duration;

use ouro::mock::{Mock, Reply};
use ouro::{Ctx, OpKind, Outcome, Ring, RunMode};

use super::{any_fd, collect};
use crate::common::fds::apart_from_other_tests;
use crate::common::watchdog::AbortAfter;

/// A write of 5 bytes cannot write 1,000; nor can a send of 3 or a splice
/// of 4 move more.
#[test]
fn a_reply_moving_more_than_asked_is_the_scripts_mistake() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::Write, |_| Reply::Value(1000));
    mock.on(OpKind::Send, |_| Reply::Value(4));
    mock.on(OpKind::Splice, |_| Reply::Value(5));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.write(
        &fd,
        b"hello".to_vec(),
        ouro::Offset::Current,
        Ctx::new(collect),
    );
    ring.send(&fd, b"abc".to_vec(), Ctx::new(collect));
    ring.splice(&fd, None, &fd, None, 4, Ctx::new(collect));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert_eq!(got.len(), 3);
    for (c, _) in &got {
        let err = c.bytes().expect_err("more than asked");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("asked to move"), "{err}");
    }
}

/// A ring that has made a handle for messages still says so when it
/// waits for a reply that never comes, instead of waiting for ever.
#[test]
fn a_reply_that_never_comes_is_an_error_also_after_a_handle_was_made() {
    let _alone = apart_from_other_tests();
    // The old mock waited for ever here: fail instead of hanging the suite.
    let _watchdog = AbortAfter::new(Duration::from_secs(60));
    let mut mock = Mock::new();
    mock.on(OpKind::Read, |_| Reply::Pending);
    let mut ring = Ring::mock(mock);
    drop(ring.handle().unwrap());
    let fd = any_fd();
    ring.read(
        &fd,
        Vec::with_capacity(8),
        ouro::Offset::Current,
        Ctx::new(collect),
    );
    let err = ring.run(&mut Vec::new(), RunMode::UntilDone).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert_eq!(ring.live_tasks(), 1);
    ring.cancel_all(Ctx::none());
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    assert!(matches!(&got[0].0.outcome, Outcome::Read(Err(e), _) if ouro::is_canceled(e)));
}
