//! `pipe()` and `SendFile`: file ranges reach a socket whole through a
//! reused pipe; a peer that does not read holds the transfer, not the
//! loop; a peer that leaves, a cancel and a deadline end it once, with
//! every fd closed.

use std::fs::File;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ouro::{
    is_canceled, is_deadline, BackendKind, Completion, Ctx, Offset, Outcome, Ring, RingFd, RunMode,
    SendFile, Sent,
};

use crate::harness::{
    ctx, is_cloexec, open_fds, peer, ring, socket_pair, temp_file, with_no_new_fds, Got,
};

backend_tests![
    a_pipe_is_cloexec_non_blocking_and_works_as_ring_fds,
    a_5_mb_file_reaches_a_reading_peer_whole,
    a_range_of_the_file_is_sent_and_the_pipe_is_reused,
    a_peer_that_does_not_read_holds_the_transfer_not_the_loop,
    a_completion_of_another_task_with_a_transfers_key_is_refused,
    closing_the_component_closes_every_pipe_it_holds,
    a_cancelled_transfer_ends_with_ecanceled_and_closes_its_pipe,
    a_transfer_to_a_blocking_socket_can_be_cancelled,
    a_transfer_cancelled_at_once_sends_nothing,
    a_transfer_past_its_deadline_ends_with_etime,
    bad_ranges_are_errors_and_an_empty_one_is_sent_at_once,
];

exclusive_backend_tests![
    a_pipe_out_of_fds_is_emfile,
    a_reserved_pipe_lets_a_transfer_start_out_of_fds,
    a_peer_that_leaves_mid_transfer_is_reported_once_and_leaks_no_fd,
    a_ring_dropped_mid_transfer_closes_every_fd,
    a_stalled_transfer_to_a_blocking_tcp_socket_ends_at_a_cancel,
    a_stalled_transfer_to_a_blocking_tcp_socket_ends_at_its_deadline,
];

ouro::messages! { enum Msg { File, Tick } }

const BIG: usize = 5 * 1024 * 1024;

/// Byte `i` of the test files: a pattern whose period (251) is no divisor
/// of any chunk size, so a lost, doubled or misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

struct Sender {
    files: SendFile<Sender, Rc<File>, RingFd>,
    done: Vec<Sent>,
    ticks: u32,
}

fn on_completion(s: &mut Sender, ring: &mut Ring<Sender>, c: Completion) -> io::Result<()> {
    match c.message::<Msg>()? {
        Msg::File => {
            if let Some(sent) = s.files.on_completion(ring, c)? {
                s.done.push(sent);
            }
        }
        Msg::Tick => s.ticks += 1,
    }
    Ok(())
}

fn sender() -> Sender {
    Sender {
        files: SendFile::new(Ctx::new(on_completion).msg(Msg::File)),
        done: Vec::new(),
        ticks: 0,
    }
}

/// Our end of a socket pair, non-blocking (as the readiness backend's own
/// sockets are) and the ring's; the peer's end, blocking with a timeout.
fn connection(ring: &mut Ring<Sender>) -> (RingFd, UnixStream) {
    connection_blocking(ring, false)
}

/// [`connection`], with our end blocking or not.
fn connection_blocking(ring: &mut Ring<Sender>, blocking: bool) -> (RingFd, UnixStream) {
    let (ours, theirs) = socket_pair();
    let ours = UnixStream::from(ours);
    ours.set_nonblocking(!blocking).unwrap();
    (ring.register_fd(OwnedFd::from(ours)), peer(theirs))
}

/// A loopback TCP connection whose sending end (ours, returned first) is
/// blocking, with a send buffer far smaller than a pipe's worth, and whose
/// receiving end takes little: once the peer stops reading, "writable"
/// means a few KiB of room, and a blocking splice of the full pipe would
/// wait for the peer.
fn small_blocking_tcp_connection() -> (TcpStream, TcpStream) {
    use socket2::{Domain, Socket, Type};
    let listener = crate::harness::loopback_socket();
    // Before listen, so that the accepted socket's window starts small.
    listener.set_recv_buffer_size(4096).unwrap();
    listener.listen(1).unwrap();
    let ours = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    ours.set_send_buffer_size(4096).unwrap();
    ours.connect(&listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    assert!(!is_non_blocking(&ours));
    (ours.into(), theirs.into())
}

fn is_non_blocking(fd: impl AsFd) -> bool {
    // SAFETY: F_GETFL on a valid fd only reads its flags.
    let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

/// Runs the ring until `sender` has `transfers` results.
fn run_until_sent(ring: &mut Ring<Sender>, sender: &mut Sender, transfers: usize) {
    while sender.done.len() < transfers {
        ring.run(sender, RunMode::Once).unwrap();
    }
}

/// Runs the ring through `ticks` timers (one at a time), checking that
/// the transfers are still going.
fn tick(ring: &mut Ring<Sender>, sender: &mut Sender, ticks: u32) {
    let until = sender.ticks + ticks;
    while sender.ticks < until {
        ring.timer(
            Duration::from_millis(1),
            Ctx::new(on_completion).msg(Msg::Tick),
        );
        let before = sender.ticks;
        while sender.ticks == before {
            ring.run(sender, RunMode::Once).unwrap();
        }
    }
    assert!(sender.done.is_empty(), "ended early: {:?}", sender.done);
}

/// Reads `stream` to its end, on a thread.
fn read_all_on_a_thread(mut stream: UnixStream) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .expect("reading the peer's end");
        got
    })
}

fn a_pipe_is_cloexec_non_blocking_and_works_as_ring_fds(kind: BackendKind) {
    let pipe = ouro::pipe().unwrap();
    for end in [&pipe.reader, &pipe.writer] {
        assert!(is_cloexec(end));
        // SAFETY: F_GETFL on a valid fd only reads its flags.
        let flags = unsafe { libc::fcntl(end.as_raw_fd(), libc::F_GETFL) };
        assert!(flags & libc::O_NONBLOCK != 0, "not non-blocking");
    }
    let mut ring: Ring<Got> = ring(kind, 8);
    let ends = pipe.register(&mut ring);
    assert_eq!(ring.ring_fds(), 2);
    ring.write(ends.writer, &b"through"[..], Offset::Current, ctx(0));
    ring.read(ends.reader, Vec::with_capacity(16), Offset::Current, ctx(1));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let read = got
        .into_iter()
        .find_map(|c| match c.outcome {
            Outcome::Read(Ok(7), buf) => Some(buf),
            Outcome::Write(Ok(7), _) => None,
            other => panic!("unexpected {other:?}"),
        })
        .expect("the read");
    assert_eq!(&read[..], b"through");
    ends.close(&mut ring);
    ring.run(&mut Vec::new(), RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
}

/// With `RLIMIT_NOFILE` at 0 no fd can be made: `pipe` says `EMFILE`
/// (exclusive: the limit is the whole process's while it is lowered).
fn a_pipe_out_of_fds_is_emfile(_kind: BackendKind) {
    let result = with_no_new_fds(ouro::pipe);
    let err = result.expect_err("no fd can be made");
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
}

fn a_5_mb_file_reaches_a_reading_peer_whole(kind: BackendKind) {
    let data = pattern(BIG);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (socket, theirs) = connection(&mut ring);
    let reader = read_all_on_a_thread(theirs);
    let mut s = sender();
    s.files
        .start(&mut ring, file, 0, BIG as u64, socket, 7)
        .unwrap();
    run_until_sent(&mut ring, &mut s, 1);
    let sent = s.done.pop().unwrap();
    assert_eq!(sent.key, 7);
    sent.result.unwrap();
    assert_eq!(sent.sent, BIG as u64);
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    let got = reader.join().unwrap();
    assert!(got == data, "{} bytes arrived, not the file", got.len());
}

/// A range from the middle of the file, twice: both arrive, and the
/// second transfer takes the pipe the first left instead of a new one.
fn a_range_of_the_file_is_sent_and_the_pipe_is_reused(kind: BackendKind) {
    let data = pattern(300_000);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (socket, theirs) = connection(&mut ring);
    let reader = read_all_on_a_thread(theirs);
    let mut s = sender();
    let range = 1001..201_001u64;
    for key in 1..=2 {
        let len = range.end - range.start;
        let file = file.clone();
        s.files
            .start(&mut ring, file, range.start, len, socket, key)
            .unwrap();
        run_until_sent(&mut ring, &mut s, key as usize);
        assert_eq!(s.files.idle_pipes(), 1);
        assert_eq!(ring.ring_fds(), 3, "the socket and one pipe");
    }
    for sent in s.done.drain(..) {
        sent.result.unwrap();
        assert_eq!(sent.sent, range.end - range.start);
    }
    ring.close(socket, Ctx::none());
    s.files.close_idle_pipes(&mut ring);
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    let got = reader.join().unwrap();
    let slice = &data[range.start as usize..range.end as usize];
    assert!(got == [slice, slice].concat(), "{} bytes", got.len());
}

/// A pipe reserved for a key is made while fds are left (out of them, the
/// reservation fails at once, reserving nothing), and the transfer started
/// with that key later needs no fd; a reservation not used goes back to
/// the idle pipes.
fn a_reserved_pipe_lets_a_transfer_start_out_of_fds(kind: BackendKind) {
    let data = pattern(200_000);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (socket, theirs) = connection(&mut ring);
    let reader = read_all_on_a_thread(theirs);
    let mut s = sender();
    let refused = with_no_new_fds(|| s.files.reserve_pipe(&mut ring, 7));
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EMFILE));
    assert_eq!(s.files.reserved_pipes(), 0);
    s.files.reserve_pipe(&mut ring, 7).unwrap();
    s.files.reserve_pipe(&mut ring, 7).unwrap();
    assert_eq!(s.files.reserved_pipes(), 1, "one pipe per key");
    assert_eq!(ring.ring_fds(), 3, "the socket and one pipe");
    let len = data.len() as u64;
    let started = with_no_new_fds(|| s.files.start(&mut ring, file, 0, len, socket, 7));
    started.unwrap();
    assert_eq!(s.files.reserved_pipes(), 0);
    run_until_sent(&mut ring, &mut s, 1);
    let sent = s.done.pop().unwrap();
    sent.result.unwrap();
    assert_eq!((sent.key, sent.sent), (7, len));
    // Reserved from the idle pipe, then given back to them.
    s.files.reserve_pipe(&mut ring, 8).unwrap();
    assert_eq!((s.files.idle_pipes(), s.files.reserved_pipes()), (0, 1));
    assert!(s.files.release_pipe(&mut ring, 8));
    assert!(!s.files.release_pipe(&mut ring, 8));
    assert_eq!((s.files.idle_pipes(), s.files.reserved_pipes()), (1, 0));
    ring.close(socket, Ctx::none());
    s.files.close_idle_pipes(&mut ring);
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    assert!(reader.join().unwrap() == data);
}

/// The peer reads nothing until told: the transfer cannot end (5 MB do
/// not fit in the socket's buffers), and meanwhile the ring fires timers
/// and a NOP; once the peer reads, the transfer ends with every byte.
fn a_peer_that_does_not_read_holds_the_transfer_not_the_loop(kind: BackendKind) {
    let data = pattern(BIG);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (socket, theirs) = connection(&mut ring);
    let (go, wait) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        wait.recv().unwrap();
        read_all_on_a_thread(theirs).join().unwrap()
    });
    let mut s = sender();
    s.files
        .start(&mut ring, file, 0, BIG as u64, socket, 0)
        .unwrap();
    tick(&mut ring, &mut s, 20);
    ring.noop(Ctx::new(on_completion).msg(Msg::Tick));
    let before = s.ticks;
    while s.ticks == before {
        ring.run(&mut s, RunMode::Once).unwrap();
    }
    assert_eq!(s.files.in_flight(), 1);
    go.send(()).unwrap();
    sent_whole(&mut ring, &mut s, socket, reader, &data);
}

/// Runs the one transfer to its end, then closes `socket`: every byte of
/// `data` went out, and `reader` got them all.
fn sent_whole(
    ring: &mut Ring<Sender>,
    s: &mut Sender,
    socket: RingFd,
    reader: thread::JoinHandle<Vec<u8>>,
    data: &[u8],
) {
    run_until_sent(ring, s, 1);
    let sent = s.done.pop().unwrap();
    sent.result.unwrap();
    assert_eq!(sent.sent, data.len() as u64);
    ring.close(socket, Ctx::none());
    ring.run(s, RunMode::UntilDone).unwrap();
    assert!(reader.join().unwrap() == data);
}

/// The peer reads a little, then closes: one error, the pipe closed, and
/// as many fds open afterwards as before.
fn a_peer_that_leaves_mid_transfer_is_reported_once_and_leaks_no_fd(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    let before = open_fds();
    let file = Rc::new(temp_file(&pattern(BIG)));
    let (socket, mut theirs) = connection(&mut ring);
    let leaver = thread::spawn(move || {
        let mut some = vec![0; 100_000];
        theirs.read_exact(&mut some).unwrap();
    });
    let mut s = sender();
    s.files
        .start(&mut ring, file, 0, BIG as u64, socket, 0)
        .unwrap();
    run_until_sent(&mut ring, &mut s, 1);
    leaver.join().unwrap();
    let sent = s.done.pop().unwrap();
    let err = sent.result.expect_err("the peer left");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)),
        "{err}"
    );
    assert!(
        sent.sent >= 100_000 && sent.sent < BIG as u64,
        "{}",
        sent.sent
    );
    assert_eq!(
        s.files.idle_pipes(),
        0,
        "a failed transfer's pipe is closed"
    );
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert!(s.done.is_empty(), "reported once");
    assert_eq!(open_fds(), before);
}

fn a_cancelled_transfer_ends_with_ecanceled_and_closes_its_pipe(kind: BackendKind) {
    cancel_mid_transfer(kind, false);
}

/// A transfer to a blocking socket waits for room in a poll, as to a
/// non-blocking one, so a cancel reaches it there too.
fn a_transfer_to_a_blocking_socket_can_be_cancelled(kind: BackendKind) {
    cancel_mid_transfer(kind, true);
}

fn cancel_mid_transfer(kind: BackendKind, blocking: bool) {
    let mut ring = ring(kind, 16);
    let file = Rc::new(temp_file(&pattern(BIG)));
    let (socket, _theirs) = connection_blocking(&mut ring, blocking);
    let mut s = sender();
    let id = s
        .files
        .start(&mut ring, file, 0, BIG as u64, socket, 0)
        .unwrap();
    tick(&mut ring, &mut s, 3);
    assert!(s.files.cancel(&mut ring, id));
    run_until_sent(&mut ring, &mut s, 1);
    let sent = s.done.pop().unwrap();
    let err = sent.result.expect_err("cancelled");
    assert!(is_canceled(&err), "{err}");
    assert!(sent.sent < BIG as u64);
    assert!(!s.files.cancel(&mut ring, id), "the transfer is over");
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0, "socket and pipe closed");
    assert_eq!(s.files.in_flight(), 0);
}

/// Cancelled before the ring has run: nothing reaches the peer, and the
/// ring keeps no fd of the transfer.
fn a_transfer_cancelled_at_once_sends_nothing(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    let file = Rc::new(temp_file(&pattern(1000)));
    let (socket, theirs) = connection(&mut ring);
    let mut s = sender();
    let id = s.files.start(&mut ring, file, 0, 1000, socket, 0).unwrap();
    assert!(s.files.cancel(&mut ring, id));
    run_until_sent(&mut ring, &mut s, 1);
    let sent = s.done.pop().unwrap();
    assert!(is_canceled(&sent.result.unwrap_err()));
    assert_eq!(sent.sent, 0);
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    assert!(read_all_on_a_thread(theirs).join().unwrap().is_empty());
}

fn a_transfer_past_its_deadline_ends_with_etime(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    let file = Rc::new(temp_file(&pattern(BIG)));
    let (socket, _theirs) = connection(&mut ring);
    let mut s = sender();
    let id = s
        .files
        .start(&mut ring, file, 0, BIG as u64, socket, 0)
        .unwrap();
    let at = ring.now() + Duration::from_millis(20);
    s.files.set_deadline(&mut ring, id, at).unwrap();
    run_until_sent(&mut ring, &mut s, 1);
    let err = s.done.pop().unwrap().result.expect_err("past the deadline");
    assert!(is_deadline(&err), "{err}");
    let stale = s.files.set_deadline(&mut ring, id, at).unwrap_err();
    assert_eq!(stale.raw_os_error(), Some(libc::ENOENT));
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
}

fn bad_ranges_are_errors_and_an_empty_one_is_sent_at_once(kind: BackendKind) {
    let mut ring = ring(kind, 16);
    let file = Rc::new(temp_file(&pattern(1000)));
    let (socket, _theirs) = connection(&mut ring);
    let mut s = sender();
    let err = s
        .files
        .start(&mut ring, file.clone(), i64::MAX as u64, 1, socket, 0)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(ring.ring_fds(), 1, "no pipe made for a refused range");
    s.files
        .start(&mut ring, file.clone(), 500, 1000, socket, 1)
        .unwrap();
    s.files.start(&mut ring, file, 1000, 0, socket, 2).unwrap();
    run_until_sent(&mut ring, &mut s, 2);
    s.done.sort_by_key(|sent| sent.key);
    let short = &s.done[0];
    let err = short.result.as_ref().expect_err("the file is too short");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    assert_eq!(short.sent, 500);
    let empty = &s.done[1];
    assert!(empty.result.is_ok() && empty.sent == 0, "{empty:?}");
    ring.close(socket, Ctx::none());
    s.files.close_idle_pipes(&mut ring);
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
}

/// A ring dropped while a transfer waits for a peer that does not read:
/// the drop does not hang, and every fd (socket, file, pipe) is closed.
fn a_ring_dropped_mid_transfer_closes_every_fd(kind: BackendKind) {
    let before = open_fds();
    let mut ring = ring(kind, 16);
    let file = Rc::new(temp_file(&pattern(BIG)));
    let (socket, theirs) = connection(&mut ring);
    let mut s = sender();
    s.files
        .start(&mut ring, file, 0, BIG as u64, socket, 0)
        .unwrap();
    tick(&mut ring, &mut s, 3);
    drop(ring);
    drop(s);
    drop(theirs);
    assert_eq!(open_fds(), before);
}

/// A 1 MiB transfer to a blocking TCP socket with a small send buffer,
/// whose peer never reads: it stalls, and a cancel ends it with
/// `ECANCELED`. On the readiness backend the splice into the socket once
/// ran on the pool, blocked there until the peer read, and the cancel
/// could not reach it: the ring's run never returned.
fn a_stalled_transfer_to_a_blocking_tcp_socket_ends_at_a_cancel(kind: BackendKind) {
    let cancel: Stop = |s, ring, id| assert!(s.files.cancel(ring, id));
    stalled_transfer_to_a_blocking_tcp_socket(kind, cancel, is_canceled);
}

/// The same, ended by a deadline: `ETIME`.
fn a_stalled_transfer_to_a_blocking_tcp_socket_ends_at_its_deadline(kind: BackendKind) {
    let deadline: Stop = |s, ring, id| {
        let at = ring.now() + Duration::from_millis(20);
        s.files.set_deadline(ring, id, at).unwrap();
    };
    stalled_transfer_to_a_blocking_tcp_socket(kind, deadline, is_deadline);
}

/// Ends transfer `id` of the sender (a cancel, a deadline).
type Stop = fn(&mut Sender, &mut Ring<Sender>, u64);

/// Starts the transfer, lets it stall, `stop`s it, and checks that it
/// ends with the error `expected` recognises, leaving no fd open and the socket
/// blocking — during the stall too: the readiness backend makes it
/// non-blocking only for the length of each splice.
fn stalled_transfer_to_a_blocking_tcp_socket(
    kind: BackendKind,
    stop: Stop,
    expected: fn(&io::Error) -> bool,
) {
    const LEN: u64 = 1 << 20;
    let mut ring = ring(kind, 16);
    let before = open_fds();
    let file = Rc::new(temp_file(&pattern(LEN as usize)));
    let (ours, theirs) = small_blocking_tcp_connection();
    let probe = ours.try_clone().unwrap();
    let socket = ring.register_fd(OwnedFd::from(ours));
    let mut s = sender();
    let id = s.files.start(&mut ring, file, 0, LEN, socket, 0).unwrap();
    // Long enough for the peer's window and our buffer to fill.
    tick(&mut ring, &mut s, 50);
    assert_eq!(s.files.in_flight(), 1);
    assert!(!is_non_blocking(&probe), "left non-blocking while it waits");
    stop(&mut s, &mut ring, id);
    run_until_sent(&mut ring, &mut s, 1);
    let sent = s.done.pop().unwrap();
    let err = sent.result.expect_err("the peer never read it all");
    assert!(expected(&err), "{err}");
    assert!(sent.sent < LEN, "{}", sent.sent);
    ring.close(socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0, "socket and pipe closed");
    assert!(!is_non_blocking(&probe), "the socket is blocking again");
    drop((probe, theirs));
    assert_eq!(open_fds(), before);
}

/// A completion carrying a transfer's key that is not its task's (a task
/// of another component with the same callback) is refused with
/// `InvalidInput`, and the transfer goes on untouched. (It was taken as
/// the transfer's: its state went wrong, and on io_uring a count
/// underflowed, a panic.)
fn a_completion_of_another_task_with_a_transfers_key_is_refused(kind: BackendKind) {
    let data = pattern(BIG);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (socket, theirs) = connection(&mut ring);
    let mut s = sender();
    let id = s
        .files
        .start(&mut ring, file, 0, BIG as u64, socket, 7)
        .unwrap();
    tick(&mut ring, &mut s, 5);
    ring.noop(Ctx::new(on_completion).msg(Msg::File).key(id));
    let refused = (0..100).find_map(|_| ring.run(&mut s, RunMode::NoWait).err());
    let err = refused.expect("the noop's completion is refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let reader = read_all_on_a_thread(theirs);
    sent_whole(&mut ring, &mut s, socket, reader, &data);
}

/// `close` ends the component with every pipe it holds: an idle one (left
/// by a finished transfer), a reserved one, and that of a transfer in
/// flight, which is cancelled. (A dropped component leaves them open in
/// the ring: a component per connection grew the ring's fds without end.)
fn closing_the_component_closes_every_pipe_it_holds(kind: BackendKind) {
    let data = pattern(BIG);
    let file = Rc::new(temp_file(&data));
    let mut ring = ring(kind, 16);
    let (done_socket, done_peer) = connection(&mut ring);
    let reader = read_all_on_a_thread(done_peer);
    let (stalled_socket, _stalled_peer) = connection(&mut ring);
    let mut s = sender();
    s.files
        .start(&mut ring, file.clone(), 0, 1000, done_socket, 1)
        .unwrap();
    run_until_sent(&mut ring, &mut s, 1);
    s.done.pop().unwrap().result.unwrap();
    s.files.reserve_pipe(&mut ring, 2).unwrap();
    s.files
        .start(&mut ring, file, 0, BIG as u64, stalled_socket, 3)
        .unwrap();
    tick(&mut ring, &mut s, 3);
    s.files.release_pipe(&mut ring, 2);
    s.files.reserve_pipe(&mut ring, 4).unwrap();
    s.files.reserve_pipe(&mut ring, 5).unwrap();
    s.files.release_pipe(&mut ring, 5);
    // Two sockets; an idle, a reserved and the stalled transfer's pipe.
    assert_eq!((s.files.idle_pipes(), ring.ring_fds()), (1, 2 + 3 * 2));
    let files = std::mem::replace(&mut s.files, sender().files);
    files.close(&mut ring);
    ring.close(done_socket, Ctx::none());
    ring.close(stalled_socket, Ctx::none());
    ring.run(&mut s, RunMode::UntilDone).unwrap();
    assert_eq!(ring.ring_fds(), 0);
    assert_eq!(reader.join().unwrap(), data[..1000]);
}
