//! `WriteQueue`: everything pushed is written, whole and in order, to a
//! reader slower than the writer; a failed write is reported once and
//! leaves nothing behind.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, Ring, RunMode, WriteQueue};

use crate::harness::{pipe, ring, socket_pair, tcp_pair};

backend_tests![
    a_write_queue_writes_everything_in_order_to_a_slow_reader,
    a_write_queue_on_a_pipe_writes_in_order,
    a_reset_peer_is_reported_once_and_empties_the_queue,
    a_completion_of_another_operation_is_invalid_input,
    a_stall_timeout_lets_a_reading_peer_have_everything,
    a_write_stalled_past_its_timeout_fails_once_and_empties_the_queue,
];

const PIECES: usize = 48;
const PIECE: usize = 48 * 1024;
/// Stop pushing while this much is queued (the backpressure signal).
const HIGH_WATER: usize = 4 * PIECE;

/// Piece `i`: its own byte pattern, so that order and completeness show.
fn piece(i: usize) -> Vec<u8> {
    (0..PIECE).map(|j| (i * 31 + j / 7) as u8).collect()
}

struct Writer {
    queue: Option<WriteQueue<Writer, Rc<OwnedFd>>>,
    pushed: usize,
    completions: usize,
    most_queued: usize,
    errors: Vec<std::io::Error>,
}

impl Writer {
    fn new(queue: WriteQueue<Writer, Rc<OwnedFd>>) -> Writer {
        Writer {
            queue: Some(queue),
            pushed: 0,
            completions: 0,
            most_queued: 0,
            errors: Vec::new(),
        }
    }

    /// Pushes pieces until the queue is over its high water mark.
    fn fill(&mut self, ring: &mut Ring<Writer>) {
        let queue = self.queue.as_mut().unwrap();
        while self.pushed < PIECES && queue.queued() < HIGH_WATER {
            let queued = queue.push(ring, piece(self.pushed)).unwrap();
            self.most_queued = self.most_queued.max(queued);
            self.pushed += 1;
        }
    }
}

fn sent(w: &mut Writer, ring: &mut Ring<Writer>, c: Completion) -> std::io::Result<()> {
    w.completions += 1;
    let queue = w.queue.as_mut().unwrap();
    match queue.on_sent(ring, c) {
        Ok(progress) => assert_eq!(progress.queued, queue.queued()),
        Err(e) => w.errors.push(e),
    }
    if w.errors.is_empty() {
        w.fill(ring);
    }
    let done = w.queue.as_ref().unwrap().is_idle() && w.pushed == PIECES;
    if done && w.errors.is_empty() {
        w.queue = None; // all written: closes our end, the reader sees the end
    }
    Ok(())
}

fn a_write_queue_writes_everything_in_order_to_a_slow_reader(kind: BackendKind) {
    writes_everything_to_a_slow_reader(kind, |queue| queue);
}

/// Every partial write gets a deadline of its own, which a reader that
/// keeps reading never lets pass.
fn a_stall_timeout_lets_a_reading_peer_have_everything(kind: BackendKind) {
    writes_everything_to_a_slow_reader(kind, |queue| queue.stall_timeout(Duration::from_secs(60)));
}

type Queue = WriteQueue<Writer, Rc<OwnedFd>>;

fn writes_everything_to_a_slow_reader(kind: BackendKind, configure: fn(Queue) -> Queue) {
    let mut ring: Ring<Writer> = ring(kind, 16);
    let (ours, theirs) = socket_pair();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(4096)
        .unwrap();
    socket2::SockRef::from(&theirs)
        .set_recv_buffer_size(4096)
        .unwrap();
    let reader = thread::spawn(move || {
        let mut theirs = crate::harness::peer(theirs);
        let (mut all, mut chunk) = (Vec::new(), [0u8; 1000]);
        loop {
            match theirs.read(&mut chunk).unwrap() {
                0 => return all,
                n => all.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let queue = configure(WriteQueue::new(Rc::new(ours), Ctx::new(sent)));
    let mut writer = Writer::new(queue);
    writer.fill(&mut ring);
    ring.run(&mut writer, RunMode::UntilDone).unwrap();
    assert!(writer.errors.is_empty(), "{:?}", writer.errors);
    assert!(writer.queue.is_none(), "the queue drained and was dropped");
    assert!(writer.most_queued <= HIGH_WATER + PIECE);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), PIECES * PIECE, "every byte arrives");
    for (i, piece_got) in got.chunks(PIECE).enumerate() {
        assert!(piece_got == piece(i), "piece {i} is whole and in its place");
    }
    // A piece is many times the socket's buffer: sends are partial.
    assert!(
        writer.completions > PIECES,
        "partial writes were re-submitted ({} completions)",
        writer.completions
    );
}

fn a_write_queue_on_a_pipe_writes_in_order(kind: BackendKind) {
    let mut ring: Ring<Writer> = ring(kind, 8);
    let (read_end, write_end) = pipe();
    let mut queue = WriteQueue::new(Rc::new(write_end), Ctx::new(sent)).using_write();
    let mut writer_pushes = 0;
    for part in [&b"one "[..], b"two ", b"three"] {
        queue.push(&mut ring, part).unwrap();
        writer_pushes += 1;
    }
    assert_eq!(queue.queued(), 13);
    let mut writer = Writer::new(queue);
    writer.pushed = PIECES; // push nothing more
    ring.run(&mut writer, RunMode::UntilDone).unwrap();
    assert!(writer.errors.is_empty(), "{:?}", writer.errors);
    assert_eq!(writer.completions, writer_pushes);
    let mut got = String::new();
    std::fs::File::from(read_end)
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "one two three");
}

fn a_reset_peer_is_reported_once_and_empties_the_queue(kind: BackendKind) {
    let mut ring: Ring<Writer> = ring(kind, 8);
    let (client, server) = tcp_pair();
    // Closing with a zero linger resets the connection.
    socket2::SockRef::from(&server)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(server);
    let queue = WriteQueue::new(Rc::new(OwnedFd::from(client)), Ctx::new(sent));
    let (err, data, mut writer) = fails_once(&mut ring, queue);
    assert!(
        matches!(err.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE)),
        "{err}"
    );
    let queue = writer.queue.as_mut().expect("kept after the failure");
    let refused = queue.push(&mut ring, data.clone()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::BrokenPipe);
    assert_eq!(ring.live_tasks(), 0, "nothing was submitted");
}

fn a_completion_of_another_operation_is_invalid_input(kind: BackendKind) {
    let mut ring: Ring<Vec<Completion>> = ring(kind, 8);
    let (ours, _theirs) = socket_pair();
    let mut queue = WriteQueue::new(Rc::new(ours), crate::harness::ctx(0));
    ring.noop(crate::harness::ctx(0));
    let mut got = Vec::new();
    ring.run(&mut got, RunMode::UntilDone).unwrap();
    let err = queue.on_sent(&mut ring, got.remove(0)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(queue.is_idle() && !queue.has_failed());
}

/// A peer that stops reading: the write that cannot move fails with
/// `ETIME` once its stall timeout passes, and the queue lets go of
/// everything it held.
fn a_write_stalled_past_its_timeout_fails_once_and_empties_the_queue(kind: BackendKind) {
    let mut ring: Ring<Writer> = ring(kind, 8);
    let (ours, _never_reads) = socket_pair();
    let queue =
        WriteQueue::new(Rc::new(ours), Ctx::new(sent)).stall_timeout(Duration::from_millis(50));
    let (err, _, _) = fails_once(&mut ring, queue);
    assert!(ouro::is_deadline(&err), "{err}");
    assert_eq!(ring.live_tasks(), 0);
}

/// Pushes four MiB into `queue`, whose writes are bound to fail, runs the
/// ring until it is done and checks the failure came once and left
/// nothing queued: the error, the data (held only by the caller now) and
/// the writer.
fn fails_once(ring: &mut Ring<Writer>, mut queue: Queue) -> (std::io::Error, Rc<[u8]>, Writer) {
    let data: Rc<[u8]> = vec![7u8; 1 << 20].into();
    for _ in 0..4 {
        queue.push(ring, data.clone()).unwrap();
    }
    let mut writer = Writer::new(queue);
    writer.pushed = PIECES; // push nothing more
    ring.run(&mut writer, RunMode::UntilDone).unwrap();
    assert_eq!(writer.errors.len(), 1, "reported once: {:?}", writer.errors);
    let queue = writer.queue.as_ref().expect("kept after the failure");
    assert!(queue.has_failed() && queue.is_idle());
    assert_eq!(queue.queued(), 0);
    assert_eq!(
        Rc::strong_count(&data),
        1,
        "every queued buffer was dropped"
    );
    (writer.errors.remove(0), data, writer)
}
