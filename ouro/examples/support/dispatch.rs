//! The accept-and-dispatch server: the main ring accepts TCP connections
//! as ring fds and moves each to one of N worker threads, round-robin
//! ([`Ring::send_fd`]); each worker echoes on its own ring and tells the
//! main ring, by message, how much a connection echoed once it has closed.
//! The server ends once the expected connections have come and gone
//! ([`Dispatcher::start`]: where no one else connects), or when told
//! ([`Dispatcher::start_until_ended`]: whoever connects); then the main
//! ring stops the workers, which close the connections still open, and
//! hears when each has stopped.
//!
//! A worker reads a connection again only once its echo is out, so a peer
//! that sends without reading holds one buffer (16 KiB) and stalls only
//! itself.
//!
//! The example `accept_and_dispatch` runs it on a real ring, and the
//! simulator's `dispatch` scenario (`ouro-sim/src/dispatch.rs`) runs the
//! same code on a simulated one.

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::{
    Completion, ConnTable, Ctx, Outcome, Payload, Ring, RingFd, RingHandle, RingThread, Task,
};

#[path = "accept_errors.rs"]
mod accept_errors;

use accept_errors::AcceptErrors;

ouro::messages! {
    enum Msg {
        Accepted, AcceptAgain, HandedOver, ConnectionClosed, WorkerStopped, End, NewConnection,
        CloseAll, Received, Sent,
    }
}

/// How long the server waits before accepting again after an accept
/// failed (out of fds, say): the connection waits in the backlog, except
/// one the kernel accepted into a fixed file table that filled meanwhile
/// (io_uring's `ENFILE`), which is lost (reset), as
/// `Ring::accept_multishot_direct` says.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// What the server did.
#[derive(Debug)]
pub struct Stats {
    /// Connections accepted and served (or refused, below).
    pub connections: usize,
    /// Connections each worker served.
    pub per_worker: Vec<usize>,
    /// Bytes the workers echoed.
    pub bytes_echoed: u64,
    /// Connections closed unserved: no worker could take them (its fixed
    /// file table full).
    pub refused: usize,
}

/// The main ring's state: accepts and hands out connections.
pub struct Dispatcher {
    /// Shared with the accept task, which keeps it open while it runs.
    listener: Rc<OwnedFd>,
    workers: Vec<RingThread<Worker>>,
    /// The worker the next connection goes to.
    next: usize,
    /// The connections to serve before ending; `None`: until told.
    limit: Option<usize>,
    /// The multishot accept, cancelled once `limit` connections came or
    /// the server is ending.
    accepting: Option<Task>,
    /// Told to end, or every connection expected has closed: accepts no
    /// more, and its workers are stopping.
    ending: bool,
    accepted: usize,
    closed: usize,
    stopped: usize,
    per_worker: Vec<usize>,
    bytes_echoed: u64,
    refused: usize,
    accept_errors: AcceptErrors,
    /// Connections a worker could not take (its fixed file table full).
    hand_over_errors: AcceptErrors,
}

impl Dispatcher {
    /// Starts the server on `ring`: `workers` (at least one) worker
    /// threads spawned from it, and `listener` accepting until
    /// `connections` have come. Run `ring` until it stops (all have closed
    /// and every worker has stopped), then [`finish`](Dispatcher::finish).
    /// For a listener no one else connects to (the simulator's): any other
    /// connection takes the place of an expected one.
    #[allow(dead_code)] // the simulator's scenario uses it, the example not
    pub fn start(
        ring: &mut Ring<Dispatcher>,
        listener: OwnedFd,
        workers: usize,
        connections: usize,
    ) -> io::Result<Dispatcher> {
        Dispatcher::start_with(ring, listener, workers, Some(connections))
    }

    /// Starts the server on `ring` as [`start`](Dispatcher::start) does,
    /// but accepting whoever connects until [`end`](Dispatcher::end) tells
    /// it to stop: then it stops its workers, which close every connection
    /// still open, and `ring` stops once they have.
    #[allow(dead_code)] // the example uses it, the simulator's scenario not
    pub fn start_until_ended(
        ring: &mut Ring<Dispatcher>,
        listener: OwnedFd,
        workers: usize,
    ) -> io::Result<Dispatcher> {
        Dispatcher::start_with(ring, listener, workers, None)
    }

    /// Tells the server on the ring behind `handle` (started with
    /// [`start_until_ended`](Dispatcher::start_until_ended)) to end; from
    /// any thread. A server that has ended already is left as it is.
    #[allow(dead_code)] // the example uses it, the simulator's scenario not
    pub fn end(handle: &RingHandle<Dispatcher>) {
        let _ = handle.send(Dispatcher::ctx(Msg::End, 0), Payload::None);
    }

    fn start_with(
        ring: &mut Ring<Dispatcher>,
        listener: OwnedFd,
        workers: usize,
        limit: Option<usize>,
    ) -> io::Result<Dispatcher> {
        let dispatcher = ring.handle()?;
        let workers = (0..workers.max(1))
            .map(|_| {
                let dispatcher = dispatcher.clone();
                ring.spawn_thread(256, move |_| Ok(Worker::new(dispatcher)))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut state = Dispatcher {
            listener: Rc::new(listener),
            per_worker: vec![0; workers.len()],
            workers,
            next: 0,
            limit,
            accepting: None,
            ending: false,
            accepted: 0,
            closed: 0,
            stopped: 0,
            bytes_echoed: 0,
            refused: 0,
            accept_errors: AcceptErrors::default(),
            hand_over_errors: AcceptErrors::named("hand-over"),
        };
        if limit == Some(0) {
            state.end_serving(ring);
        } else {
            state.accept(ring);
        }
        Ok(state)
    }

    /// Joins the workers and says what the server did.
    pub fn finish(mut self) -> io::Result<Stats> {
        for worker in self.workers.drain(..) {
            worker.join()?;
        }
        Ok(Stats {
            connections: self.accepted,
            per_worker: self.per_worker,
            bytes_echoed: self.bytes_echoed,
            refused: self.refused,
        })
    }

    fn ctx(msg: Msg, key: usize) -> Ctx<Dispatcher> {
        Ctx::new(Dispatcher::on_completion).msg(msg).key(key as u64)
    }

    fn on_completion(&mut self, ring: &mut Ring<Dispatcher>, c: Completion) -> io::Result<()> {
        let (key, last) = (c.key() as usize, c.is_final());
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::AcceptDirect(result)) => self.accepted(ring, result, last),
            (Msg::AcceptAgain, Outcome::Timer(_)) => self.accept(ring),
            (Msg::HandedOver, Outcome::MsgRing(Err(err), returned)) => {
                // A worker without room for it (its fixed file table
                // full): the connection is closed, the others go on. Still
                // ours (or, after travelling as a process fd, an fd that
                // closes as it drops): close it.
                if let Some(fd) = returned.ring_fd() {
                    ring.close(fd, Ctx::none());
                }
                self.hand_over_errors
                    .failed(&worker_table_named(err), ring.now());
                self.refused += 1;
                self.connection_closed(ring, 0);
            }
            (Msg::HandedOver, Outcome::MsgRing(Ok(_), _)) => {
                self.hand_over_errors.accepted(ring.now());
                self.per_worker[key] += 1;
            }
            (Msg::ConnectionClosed, Outcome::Message(echoed)) => {
                self.connection_closed(ring, echoed.as_u64().unwrap_or(0));
            }
            (Msg::End, Outcome::Message(_)) => self.end_serving(ring),
            (Msg::WorkerStopped, Outcome::ThreadStopped(result)) => {
                result?;
                self.stopped += 1;
                if self.stopped == self.workers.len() {
                    ring.stop();
                }
            }
            (msg, outcome) => return Err(unexpected("dispatcher", msg, outcome)),
        }
        Ok(())
    }

    /// Counts a connection that has ended, having echoed `echoed` bytes;
    /// the last one expected ends the server.
    fn connection_closed(&mut self, ring: &mut Ring<Dispatcher>, echoed: u64) {
        self.closed += 1;
        self.bytes_echoed += echoed;
        if Some(self.closed) == self.limit {
            self.end_serving(ring);
        }
    }

    /// Whether more connections are to be accepted.
    fn accepting_more(&self) -> bool {
        !self.ending && Some(self.accepted) != self.limit
    }

    fn accept(&mut self, ring: &mut Ring<Dispatcher>) {
        if !self.accepting_more() {
            return;
        }
        let ctx = Dispatcher::ctx(Msg::Accepted, 0);
        self.accepting = Some(ring.accept_multishot_direct(&self.listener, ctx));
    }

    fn accepted(&mut self, ring: &mut Ring<Dispatcher>, result: io::Result<RingFd>, last: bool) {
        if last {
            self.accepting = None;
        }
        if !self.accepting_more() {
            // The cancelled accept's last words: a connection that beat
            // the cancel is not served.
            if let Ok(fd) = result {
                ring.close(fd, Ctx::none());
            }
            return;
        }
        match result {
            Ok(fd) => {
                self.accept_errors.accepted(ring.now());
                self.hand_over(ring, fd);
            }
            Err(err) if ouro::is_canceled(&err) => return,
            Err(err) => {
                // Out of fds, say: accept again a little later, not at
                // once (which would fail again, in a busy loop), and log
                // it sparingly.
                self.accept_errors.failed(&err, ring.now());
                if last {
                    ring.timer(ACCEPT_PAUSE, Dispatcher::ctx(Msg::AcceptAgain, 0));
                    return;
                }
            }
        }
        // The kernel ends a multishot accept early (an error, a full
        // completion queue): take it up again.
        if last {
            self.accept(ring);
        }
    }

    fn hand_over(&mut self, ring: &mut Ring<Dispatcher>, fd: RingFd) {
        self.accepted += 1;
        if !self.accepting_more() {
            self.stop_accepting(ring);
        }
        let worker = self.next;
        self.next = (self.next + 1) % self.workers.len();
        let message = Ctx::new(Worker::on_completion).msg(Msg::NewConnection);
        let handed = Dispatcher::ctx(Msg::HandedOver, worker);
        ring.send_fd(self.workers[worker].handle(), fd, message, handed);
    }

    fn stop_accepting(&mut self, ring: &mut Ring<Dispatcher>) {
        if let Some(accepting) = self.accepting.take() {
            ring.cancel(accepting, Ctx::none());
        }
    }

    /// Accepts no more and stops the workers, after telling them to close
    /// the connections still open (a peer that neither sends nor reads
    /// would otherwise hold its worker's stop for ever).
    fn end_serving(&mut self, ring: &mut Ring<Dispatcher>) {
        if self.ending {
            return;
        }
        self.ending = true;
        self.stop_accepting(ring);
        let open = self.closed < self.accepted;
        for worker in &self.workers {
            if open {
                let close_all = Ctx::new(Worker::on_completion).msg(Msg::CloseAll);
                ring.msg_ring(worker.handle(), close_all, Payload::None, Ctx::none());
            }
            worker.stop(ring, Dispatcher::ctx(Msg::WorkerStopped, 0));
        }
    }
}

/// A hand-over's `ENFILE` says that the worker's fixed file table is full
/// (the kernel installs a moved file there; no new file is made, so the
/// system's file limit plays no part): named so, not left to read as the
/// system's limit.
fn worker_table_named(err: io::Error) -> io::Error {
    if err.raw_os_error() != Some(libc::ENFILE) {
        return err;
    }
    let why = format!("the worker ring's fixed file table is full ({err})");
    io::Error::new(err.kind(), why)
}

/// A worker thread's state: its connections.
pub struct Worker {
    dispatcher: RingHandle<Dispatcher>,
    /// Keyed by the `Ctx` key of the connection's tasks: a late
    /// completion of a closed connection finds nothing.
    conns: ConnTable<Conn>,
    /// Told to close every connection: the worker is stopping, and takes
    /// no new one.
    closing: bool,
}

struct Conn {
    fd: RingFd,
    echoed: u64,
}

const BUFFER_SIZE: usize = 16 * 1024;

impl Worker {
    fn new(dispatcher: RingHandle<Dispatcher>) -> Worker {
        Worker {
            dispatcher,
            conns: ConnTable::new(),
            closing: false,
        }
    }

    fn ctx(msg: Msg, key: u64) -> Ctx<Worker> {
        Ctx::new(Worker::on_completion).msg(msg).key(key)
    }

    fn on_completion(&mut self, ring: &mut Ring<Worker>, c: Completion) -> io::Result<()> {
        let key = c.key();
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::NewConnection, Outcome::Message(payload)) => {
                let fd = payload
                    .ring_fd()
                    .ok_or_else(|| io::Error::other("a new connection without its fd"))?;
                let key = self.conns.insert(Conn { fd, echoed: 0 });
                if self.closing {
                    self.close(ring, key);
                    return Ok(());
                }
                let buf = Vec::with_capacity(BUFFER_SIZE);
                ring.recv(fd, buf, Worker::ctx(Msg::Received, key));
            }
            (Msg::CloseAll, Outcome::Message(_)) => self.close_all(ring),
            // Closed since (by `CloseAll`): its cancelled task's last word.
            (Msg::Received | Msg::Sent, _) if !self.conns.contains(key) => {}
            (Msg::Received, Outcome::Recv(result, buf)) => match result {
                Ok(0) | Err(_) => self.close(ring, key),
                Ok(n) => {
                    let conn = self.conn(key)?;
                    conn.echoed += n as u64;
                    ring.send(conn.fd, buf, Worker::ctx(Msg::Sent, key));
                }
            },
            (Msg::Sent, Outcome::Send(result, mut buf)) => {
                let Ok(n) = result else {
                    self.close(ring, key);
                    return Ok(());
                };
                buf.consume(n);
                let fd = self.conn(key)?.fd;
                if !buf.is_empty() {
                    ring.send(fd, buf, Worker::ctx(Msg::Sent, key));
                    return Ok(());
                }
                let mut vec: Vec<u8> = buf.downcast().unwrap_or_default();
                vec.clear();
                vec.reserve(BUFFER_SIZE);
                ring.recv(fd, vec, Worker::ctx(Msg::Received, key));
            }
            (msg, outcome) => return Err(unexpected("worker", msg, outcome)),
        }
        Ok(())
    }

    fn conn(&mut self, key: u64) -> io::Result<&mut Conn> {
        self.conns
            .get_mut(key)
            .ok_or_else(|| io::Error::other(format!("no connection {key}")))
    }

    /// Closes every connection, and any that comes later.
    fn close_all(&mut self, ring: &mut Ring<Worker>) {
        self.closing = true;
        let keys: Vec<u64> = self.conns.keys().collect();
        for key in keys {
            self.close(ring, key);
        }
    }

    /// Closes a connection and tells the dispatcher how much it echoed.
    fn close(&mut self, ring: &mut Ring<Worker>, key: u64) {
        let Some(conn) = self.conns.remove(key) else {
            return;
        };
        ring.close(conn.fd, Ctx::none());
        let closed = Ctx::new(Dispatcher::on_completion).msg(Msg::ConnectionClosed);
        let echoed = Payload::U64(conn.echoed);
        ring.msg_ring(&self.dispatcher, closed, echoed, Ctx::none());
    }
}

fn unexpected(who: &str, msg: Msg, outcome: Outcome) -> io::Error {
    io::Error::other(format!("{who}: unexpected {msg:?} with {outcome:?}"))
}
