//! Messages between rings and threads: delivery exactly once and in order,
//! on the MSG_RING path and on the mailbox path (forced, so it runs on every
//! kernel), stop/join with messages in flight, refused messages, fd
//! hand-over, and a ring polled from another ring. What does not depend on
//! io_uring runs on every backend (`per_backend!`), the mock included.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ouro::{
    is_canceled, BackendKind, Completion, Ctx, Outcome, Payload, PollMask, Ring, RingHandle,
    RunMode,
};

fn builder(kind: BackendKind, msg_ring: bool) -> ouro::RingBuilder {
    Ring::builder()
        .backend(kind)
        .entries(256)
        .msg_ring(msg_ring)
}

fn ring<S>(kind: BackendKind) -> io::Result<Ring<S>> {
    builder(kind, true).build()
}

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

use common::backends;
use common::fds::{apart_from_other_tests, beside_other_tests, open_fds};
use common::watchdog::AbortAfter;

/// One `#[test]` per backend for each test function.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::call, $name);)+
    };
}

fn call(test: fn(BackendKind) -> io::Result<()>, kind: BackendKind) {
    let _shared = beside_other_tests();
    if backends::skipped(kind) {
        return;
    }
    if let Err(err) = test(kind) {
        panic!("on {kind:?}: {err}");
    }
}

/// Runs a test that counts the process's open fds while no other test of
/// this binary runs.
fn call_exclusive(test: fn(BackendKind) -> io::Result<()>, kind: BackendKind) {
    let _exclusive = apart_from_other_tests();
    if backends::skipped(kind) {
        return;
    }
    if let Err(err) = test(kind) {
        panic!("on {kind:?}: {err}");
    }
}

// -- what several groups of tests use -----------------------------------------

/// What a receiving thread saw, shared with the test.
#[derive(Default, Debug)]
struct Tally {
    received: u64,
    /// Next number expected from each sender (the message key).
    next: HashMap<u64, u64>,
    /// Messages that did not carry the next number of their sender.
    out_of_order: u64,
}

struct Receiver {
    tally: Arc<Mutex<Tally>>,
    /// Counted locally, published when the thread stops.
    local: Tally,
    /// Stop the ring once this many have arrived.
    stop_at: u64,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        *self.tally.lock().unwrap() = std::mem::take(&mut self.local);
    }
}

fn on_number(state: &mut Receiver, ring: &mut Ring<Receiver>, c: Completion) -> io::Result<()> {
    let sender = c.key();
    let Outcome::Message(Payload::U64(n)) = c.outcome else {
        return Err(io::Error::other(format!("unexpected {:?}", c.outcome)));
    };
    let tally = &mut state.local;
    let expected = tally.next.entry(sender).or_insert(0);
    if n != *expected {
        tally.out_of_order += 1;
    }
    *expected = n + 1;
    tally.received += 1;
    if tally.received == state.stop_at {
        ring.stop();
    }
    Ok(())
}

fn spawn_receiver<S>(
    ring: &Ring<S>,
) -> io::Result<(ouro::RingThread<Receiver>, Arc<Mutex<Tally>>)> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let shared = tally.clone();
    let thread = ring.spawn_thread(256, move |_ring| {
        Ok(Receiver {
            tally: shared,
            local: Tally::default(),
            stop_at: u64::MAX,
        })
    })?;
    Ok((thread, tally))
}

struct Sender {
    target: RingHandle<Receiver>,
    key: u64,
    next: u64,
    total: u64,
    acked: u64,
    refused: u64,
}

impl Sender {
    fn send_next(&mut self, ring: &mut Ring<Sender>) {
        if self.next == self.total {
            return;
        }
        let message = Ctx::new(on_number).key(self.key);
        ring.msg_ring(
            &self.target,
            message,
            Payload::U64(self.next),
            Ctx::new(Sender::on_ack),
        );
        self.next += 1;
    }

    fn on_ack(&mut self, ring: &mut Ring<Sender>, c: Completion) -> io::Result<()> {
        let Outcome::MsgRing(result, payload) = c.outcome else {
            return Err(io::Error::other("expected a msg_ring outcome"));
        };
        match result {
            Ok(()) => {
                assert!(payload.is_none(), "an accepted message keeps no payload");
                self.acked += 1;
                self.send_next(ring);
            }
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
                assert!(payload.as_u64().is_some(), "a refused payload comes back");
                self.refused += 1;
            }
        }
        Ok(())
    }
}

/// A socket pair: the first end is handed around, the second tells whether
/// it is still open (reading 0 bytes means every copy of the first is closed).
fn socket_pair() -> io::Result<(OwnedFd, UnixStream)> {
    let (a, b) = common::fds::socket_pair();
    let b = UnixStream::from(b);
    b.set_nonblocking(true)?;
    Ok((a, b))
}

fn peer_closed(peer: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(peer.read(&mut byte), Ok(0))
}

#[derive(Default)]
struct Refusals {
    returned: Vec<Payload>,
    errors: Vec<io::Error>,
}

fn on_refused(state: &mut Refusals, _: &mut Ring<Refusals>, c: Completion) -> io::Result<()> {
    let Outcome::MsgRing(result, payload) = c.outcome else {
        return Err(io::Error::other("expected a msg_ring outcome"));
    };
    state.errors.extend(result.err());
    state.returned.push(payload);
    Ok(())
}

struct Idle;

fn never_called(_: &mut Idle, _: &mut Ring<Idle>, _: Completion) -> io::Result<()> {
    Err(io::Error::other("a refused message must not be delivered"))
}

/// A handle to a thread's ring that has stopped (its mailbox closed).
fn stopped_thread<S>(ring: &Ring<S>) -> io::Result<RingHandle<Idle>> {
    let thread = ring.spawn_thread(16, |_| Ok(Idle))?;
    let target = thread.handle().clone();
    thread.join()?;
    Ok(target)
}

/// The main ring's state: the answer it got back.
#[derive(Default)]
struct Asker {
    answer: Option<String>,
}

fn on_answer(state: &mut Asker, ring: &mut Ring<Asker>, c: Completion) -> io::Result<()> {
    let Outcome::Message(payload) = c.outcome else {
        return Err(io::Error::other("expected a message"));
    };
    state.answer = payload.into_value().ok();
    ring.stop();
    Ok(())
}

mod order;
mod payloads;
mod send_fd;
mod stopping;
mod threads;
