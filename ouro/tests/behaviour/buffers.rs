//! Owned buffers and buffer groups across threads and rings: a buffer goes
//! to another thread only if what it wraps may, a group serves only the
//! ring that made it, and a group too large for memory is an error.

use std::io::{self, Write};
use std::thread;

use ouro::{BackendKind, Offset, Outcome, Ring, RunMode, SendBuf};

use crate::harness::unchecked;
use crate::harness::{complete, ctx, pipe, ring, run_all, tcp_pair, Got};

backend_tests![
    a_buf_made_from_a_send_buf_comes_back_able_to_cross_threads,
    a_buffer_group_is_rejected_by_every_ring_but_its_own,
    buffer_groups_too_large_or_misshapen_are_errors_not_aborts
];

fn a_buf_made_from_a_send_buf_comes_back_able_to_cross_threads(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (rx, tx) = pipe();
    let written = complete(&mut ring, |r, c| {
        r.write(
            unchecked(&tx),
            SendBuf::new(b"hello".to_vec()),
            Offset::Current,
            c,
        )
    });
    let (n, buf) = expect!(written, Outcome::Write(Ok(n), buf) => (n, buf));
    assert_eq!(n, 5);
    let buf = buf.into_send().expect("made from a SendBuf");
    let back = thread::spawn(move || buf.downcast::<Vec<u8>>().unwrap());
    assert_eq!(back.join().unwrap(), b"hello");

    let read = complete(&mut ring, |r, c| {
        r.read(
            unchecked(&rx),
            SendBuf::new_mut(Vec::with_capacity(8)),
            Offset::Current,
            c,
        )
    });
    let (n, buf) = expect!(read, Outcome::Read(Ok(n), buf) => (n, buf));
    assert_eq!(n, 5);
    let buf = buf.into_send().expect("made from a SendBuf");
    let back = thread::spawn(move || buf.to_vec());
    assert_eq!(back.join().unwrap(), b"hello");

    // A plain buffer's `Buf` does not know whether it may cross threads.
    let written = complete(&mut ring, |r, c| {
        r.write(unchecked(&tx), b"x".to_vec(), Offset::Current, c)
    });
    let buf = expect!(written, Outcome::Write(Ok(1), buf) => buf);
    assert!(buf.into_send().is_err());
}

fn a_buffer_group_is_rejected_by_every_ring_but_its_own(kind: BackendKind) {
    let mut a: Ring<Got> = ring(kind, 16);
    let mut b: Ring<Got> = ring(kind, 16);
    let group = a.buffer_group(4, 16).unwrap();
    // B's own group has the same id: B would have resolved A's group to it.
    let b_group = b.buffer_group(4, 16).unwrap();
    assert_eq!(group.id(), b_group.id());
    let (mut client, server) = tcp_pair();
    client.write_all(b"hello").unwrap();

    b.recv_multishot(unchecked(&server), &group, ctx(0));
    let mut got = Vec::new();
    while got.is_empty() {
        b.run(&mut got, RunMode::Once).unwrap();
    }
    assert_eq!(got.len(), 1, "exactly one completion: {got:?}");
    assert_eq!(b.live_tasks(), 0);
    let c = got.pop().unwrap();
    assert!(c.is_final(), "{c:?}");
    let err = expect!(c.outcome, Outcome::RecvMulti(Err(e)) => e);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.raw_os_error(), None, "{err}");
    assert_eq!(group.available(), 4, "A's group is untouched");
    assert_eq!(b_group.available(), 4, "B's group is untouched");

    // The bytes are still there for A, through its own group.
    a.recv_multishot(unchecked(&server), &group, ctx(1));
    let mut got = Vec::new();
    let mut received = Vec::new();
    while received.len() < 5 {
        a.run(&mut got, RunMode::Once).unwrap();
        for c in got.drain(..) {
            assert!(!c.is_final(), "{c:?}");
            let buf = expect!(c.outcome, Outcome::RecvMulti(Ok(buf)) => buf);
            assert!(buf.len() <= group.buffer_size());
            received.extend_from_slice(&buf);
        }
    }
    assert_eq!(received, b"hello");
    assert_eq!(group.available(), 4, "dropped Bufs went back to A's group");
    drop(client);
    let mut got = run_all(&mut a);
    let last = got.pop().unwrap();
    assert!(last.is_final());
    let buf = expect!(last.outcome, Outcome::RecvMulti(Ok(buf)) => buf);
    assert!(buf.is_empty(), "end of stream ends the task");
    drop(got);
    assert_eq!(group.available(), 4);
    assert_eq!(b_group.available(), 4);
}

fn buffer_groups_too_large_or_misshapen_are_errors_not_aborts(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    // 32768 buffers of 4 GiB: 128 TiB, more than any memory or address
    // space to be had.
    let err = ring.buffer_group(32768, u32::MAX as usize).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::OutOfMemory
        ),
        "{err}"
    );
    for (count, size) in [(0, 64), (3, 64), (4, 0), (4, u32::MAX as usize + 1)] {
        let err = ring.buffer_group(count, size).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "{count} x {size}: {err}"
        );
    }
    // The failures left the ring able to make and use a group.
    let group = ring.buffer_group(4, 16).unwrap();
    let (mut client, server) = tcp_pair();
    client.write_all(b"hi").unwrap();
    drop(client);
    ring.recv_multishot(unchecked(&server), &group, ctx(0));
    let got = run_all(&mut ring);
    let received: Vec<u8> = got
        .iter()
        .flat_map(|c| expect!(&c.outcome, Outcome::RecvMulti(Ok(buf)) => buf.to_vec()))
        .collect();
    assert_eq!(received, b"hi");
}
