//! Vectored operations under the mock: a script sees what a writev or
//! sendmsg would write, joined across its buffers, and its `fill` spreads a
//! readv's or recvmsg's bytes over the buffers in order, as the kernel does.

use std::cell::RefCell;
use std::rc::Rc;

use ouro::mock::{Mock, Reply};
use ouro::{Ctx, Offset, OpKind, Outcome, Ring};

use super::{any_fd, collect, only_outcome};
use crate::common::fds::apart_from_other_tests;

/// Three buffers with room for 3, 0 and 5 more bytes (one already holds a
/// byte, which must stay in front of what a read appends).
fn three_buffers() -> Vec<Vec<u8>> {
    let mut first = Vec::with_capacity(4);
    first.push(b'>');
    vec![first, Vec::new(), Vec::with_capacity(5)]
}

#[test]
fn a_scripted_readv_fills_the_buffers_in_order_and_reports_the_room() {
    let _alone = apart_from_other_tests();
    let room = Rc::new(RefCell::new(None));
    let seen = room.clone();
    let mut mock = Mock::new();
    mock.on(OpKind::Readv, move |op| {
        *seen.borrow_mut() = Some((op.room(), op.offset()));
        // Two fills continue where the first stopped; what does not fit is
        // dropped.
        op.fill(b"abcd");
        Reply::Value(op.fill(b"efghXYZ"))
    });
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.readv(&fd, three_buffers(), Offset::At(7), Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::Readv(Ok(8), bufs) = outcome else {
        panic!("expected a readv of 8 bytes, got {outcome:?}");
    };
    let bufs = bufs.downcast::<Vec<u8>>().unwrap();
    assert_eq!(bufs, [b">abc".to_vec(), Vec::new(), b"defgh".to_vec()]);
    assert_eq!(*room.borrow(), Some((8, Some(7))));
}

#[test]
fn a_readv_reply_longer_than_what_was_filled_reads_zeroes_not_old_memory() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::Readv, |op| {
        op.fill(b"ab");
        Reply::Value(6)
    });
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let mut dirty = Vec::with_capacity(8);
    dirty.extend_from_slice(b"stale!!!");
    dirty.clear();
    ring.readv(&fd, vec![dirty], Offset::Current, Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::Readv(Ok(6), bufs) = outcome else {
        panic!("expected a readv of 6 bytes, got {outcome:?}");
    };
    assert_eq!(
        bufs.downcast::<Vec<u8>>().unwrap(),
        [b"ab\0\0\0\0".to_vec()]
    );
}

#[test]
fn a_scripted_recvmsg_fills_the_buffers_and_has_no_sender_or_flags() {
    let _alone = apart_from_other_tests();
    let mut mock = Mock::new();
    mock.on(OpKind::RecvMsg, |op| Reply::Value(op.fill(b"0123456789")));
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    ring.recvmsg(&fd, three_buffers(), Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    let Outcome::RecvMsg(Ok(meta), bufs) = outcome else {
        panic!("expected a recvmsg, got {outcome:?}");
    };
    assert_eq!((meta.len, meta.addr.is_none(), meta.flags), (8, true, 0));
    let bufs = bufs.downcast::<Vec<u8>>().unwrap();
    assert_eq!(bufs, [b">012".to_vec(), Vec::new(), b"34567".to_vec()]);
}

#[test]
fn a_script_sees_the_bytes_of_a_writev_and_a_sendmsg_joined() {
    let _alone = apart_from_other_tests();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut mock = Mock::new();
    for kind in [OpKind::Writev, OpKind::SendMsg] {
        let record = seen.clone();
        mock.on(kind, move |op| {
            let data = op.data().into_owned();
            // Half is written: a short write, as a kernel may make.
            let half = data.len() as u32 / 2;
            record.borrow_mut().push((op.kind(), op.offset(), data));
            Reply::Value(half)
        });
    }
    let mut ring = Ring::mock(mock);
    let fd = any_fd();
    let pieces = || vec![&b"hello"[..], &b""[..], &b" world"[..]];
    ring.writev(&fd, pieces(), Offset::At(3), Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    assert!(matches!(outcome, Outcome::Writev(Ok(5), _)), "{outcome:?}");
    ring.sendmsg(&fd, pieces(), None, Ctx::new(collect));
    let outcome = only_outcome(&mut ring);
    assert!(matches!(outcome, Outcome::SendMsg(Ok(5), _)), "{outcome:?}");
    assert_eq!(
        *seen.borrow(),
        [
            (OpKind::Writev, Some(3), b"hello world".to_vec()),
            (OpKind::SendMsg, None, b"hello world".to_vec()),
        ]
    );
}
