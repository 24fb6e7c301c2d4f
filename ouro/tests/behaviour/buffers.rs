//! Owned buffers and buffer groups across threads and rings: a buffer goes
//! to another thread only if what it wraps may, a group serves only the
//! ring that made it, a group too large for memory is an error, and a
//! limited buffer takes no more than its limit.

use std::io::{self, Write};
use std::thread;

use ouro::{BackendKind, IoBufMut, Limit, Offset, Outcome, Ring, RunMode, SendBuf};

use crate::harness::unchecked;
use crate::harness::{complete, ctx, pipe, ring, run_all, tcp_pair, Got};

backend_tests![
    a_buf_made_from_a_send_buf_comes_back_able_to_cross_threads,
    a_buffer_group_is_rejected_by_every_ring_but_its_own,
    buffer_groups_too_large_or_misshapen_are_errors_not_aborts,
    a_limited_read_takes_at_most_the_limit_from_a_pipe_holding_more,
    limited_buffers_bound_recv_readv_and_recvmsg_alike
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

/// Reads `buf` from `fd` and gives back the bytes read and the buffer.
fn read_limited(
    ring: &mut Ring<Got>,
    fd: &impl std::os::fd::AsFd,
    buf: Limit<Vec<u8>>,
) -> (io::Result<usize>, Vec<u8>) {
    let read = complete(ring, |r, c| r.read(unchecked(fd), buf, Offset::Current, c));
    let (n, buf) = expect!(read, Outcome::Read(n, buf) => (n, buf));
    let limited = buf
        .downcast::<Limit<Vec<u8>>>()
        .expect("the buffer comes back as it went");
    (n, limited.into_inner())
}

fn a_limited_read_takes_at_most_the_limit_from_a_pipe_holding_more(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (rx, tx) = pipe();
    let sent: Vec<u8> = (0..100).collect();
    std::fs::File::from(tx.try_clone().unwrap())
        .write_all(&sent)
        .unwrap();

    let (n, vec) = read_limited(&mut ring, &rx, Vec::with_capacity(4096).limit(10));
    assert_eq!(n.unwrap(), 10);
    assert_eq!(vec, sent[..10], "exactly the first 10 bytes");
    assert!(vec.capacity() >= 4096, "the same Vec, not a copy");

    // Nothing may be written: a clear error, not a read of 0 bytes that
    // would look like end of file, and the buffer comes back.
    let (n, vec) = read_limited(&mut ring, &rx, vec.limit(0));
    assert_eq!(n.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(vec.len(), 10, "untouched");

    // A limit beyond the spare room is bounded by the room.
    let (n, vec) = read_limited(&mut ring, &rx, Vec::with_capacity(16).limit(4096));
    assert_eq!(n.unwrap(), 16);
    assert_eq!(vec, sent[10..26]);

    // The rest is still in the pipe: nothing was read past the limits.
    let (n, vec) = read_limited(&mut ring, &rx, Vec::with_capacity(4096).limit(4096));
    assert_eq!(n.unwrap(), 74);
    assert_eq!(vec, sent[26..]);
}

fn limited_buffers_bound_recv_readv_and_recvmsg_alike(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let sent: Vec<u8> = (0..64).collect();
    client.write_all(&sent).unwrap();

    let received = complete(&mut ring, |r, c| {
        r.recv(unchecked(&server), Vec::with_capacity(1024).limit(5), c)
    });
    let (n, buf) = expect!(received, Outcome::Recv(Ok(n), buf) => (n, buf));
    assert_eq!(n, 5);
    assert_eq!(
        buf.downcast::<Limit<Vec<u8>>>().unwrap().into_inner(),
        sent[..5]
    );

    // Each buffer of a vectored read is bounded by its own limit.
    let bufs = vec![
        Vec::with_capacity(512).limit(3),
        Vec::with_capacity(512).limit(4),
    ];
    let read = complete(&mut ring, |r, c| {
        r.readv(unchecked(&server), bufs, Offset::Current, c)
    });
    let (n, bufs) = expect!(read, Outcome::Readv(Ok(n), bufs) => (n, bufs));
    assert_eq!(n, 7);
    let bufs = bufs.downcast::<Limit<Vec<u8>>>().unwrap();
    assert_eq!(bufs[0].get_ref()[..], sent[5..8]);
    assert_eq!(bufs[1].get_ref()[..], sent[8..12]);

    let bufs = vec![Vec::with_capacity(512).limit(6)];
    let received = complete(&mut ring, |r, c| r.recvmsg(unchecked(&server), bufs, c));
    let (meta, bufs) = expect!(received, Outcome::RecvMsg(Ok(meta), bufs) => (meta, bufs));
    assert_eq!(meta.len, 6);
    let mut bufs = bufs.downcast::<Limit<Vec<u8>>>().unwrap();
    assert_eq!(bufs.pop().unwrap().into_inner(), sent[12..18]);
}
