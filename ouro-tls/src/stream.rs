//! `TlsStream`: a TLS session over a connected socket, as a component of a
//! ring: one receive in flight into an owned buffer, records written
//! through a `WriteQueue`, a timer for the handshake deadline.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use ouro::{
    Buf, Completion, Ctx, IoBuf, OpFd, OpKind, Outcome, Ring, RingFd, Slice, Task, WriteQueue,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use crate::session::{Outbox, Session};
use crate::{Handshake, TlsEvent};

/// The receive buffer's size by default: two full TLS records (16 KiB of
/// plaintext each, and their overhead), so that a busy stream takes more
/// than one record per ring turn.
const RECV_CAPACITY: usize = 2 * (16 * 1024 + 512);
/// A receive that fills the buffer doubles it, up to eight full records:
/// a busy stream then takes more records per receive (fewer receives and
/// ring turns per MB), while an idle one keeps what it started with.
const BUSY_RECV_CAPACITY: usize = 8 * (16 * 1024 + 512);
/// Spare vectors kept for records, and for plaintext; more are dropped.
const SPARE_VECS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started, or handshaking.
    Handshaking,
    /// The handshake is done; data flows both ways.
    Open,
    /// The peer's `close_notify` arrived: nothing more is received, and
    /// sending may go on.
    PeerClosed,
    /// The session failed: nothing more is received or sent.
    Failed,
}

/// A TLS client or server session over a connected socket `F` (a
/// [`RingFd`] or a shared owner such as `Rc<TcpStream>`), driven by the
/// completions of its tasks.
///
/// Every task the stream schedules carries the `ctx` it was made with, so
/// the user's callback gets them (its key says which stream) and hands
/// each to [`on_completion`](TlsStream::on_completion); what happened comes
/// out of [`next_event`](TlsStream::next_event) as [`TlsEvent`]s.
///
/// The stream keeps one receive in flight into a buffer it owns and
/// reuses, and sends records through a [`WriteQueue`]; once the vectors it
/// recycles have grown to their peak, its own buffers allocate nothing per
/// record, but rustls still allocates a vector for each record it seals
/// and each it decrypts. The fd stays the caller's: close it once [`is_idle`](TlsStream::is_idle).
pub struct TlsStream<S, F = RingFd> {
    session: Session,
    fd: F,
    ctx: Ctx<S>,
    out: WriteQueue<S, F>,
    /// Records made while a send was in flight, for the next send.
    waiting: Outbox,
    phase: Phase,
    /// [`start`](TlsStream::start) was called.
    started: bool,
    recv_buf: Option<Vec<u8>>,
    /// The room a receive gets: the capacity asked for, doubled by busy
    /// receives (the session may hand back another vector than it took).
    recv_capacity: usize,
    /// The capacity asked for, which `recv_capacity` returns to while
    /// nothing is received.
    base_capacity: usize,
    recv_task: Option<Task>,
    /// [`cancel`](TlsStream::cancel) was called with `recv_task` in flight.
    recv_canceled: bool,
    /// The user paused receiving: no receive is armed until resumed.
    recv_paused: bool,
    handshake_timeout: Option<Duration>,
    timer: Option<Task>,
    close_notify_sent: bool,
    socket_shutdown: SocketShutdown,
    spare: Vec<Vec<u8>>,
    /// Vectors records were sent from, their contents kept (see [`Outbox`]).
    spare_records: Vec<Vec<u8>>,
    events: VecDeque<TlsEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketShutdown {
    NotYet,
    InFlight,
    Done,
}

impl<S, F: OpFd + Clone> TlsStream<S, F> {
    /// A client session to `server_name` (checked against the server's
    /// certificate, and sent as SNI when it is a DNS name) over the
    /// connected socket `fd`. [`start`](TlsStream::start) it on a ring.
    ///
    /// An `InvalidInput` error for a name that is neither a DNS name nor
    /// an IP address.
    pub fn client(
        fd: F,
        config: Arc<ClientConfig>,
        server_name: &str,
        ctx: Ctx<S>,
    ) -> io::Result<TlsStream<S, F>> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad server name {server_name:?}: {err}"),
            )
        })?;
        Ok(TlsStream::new(Session::client(config, name)?, fd, ctx))
    }

    /// A server session over the accepted socket `fd`.
    /// [`start`](TlsStream::start) it on a ring.
    pub fn server(fd: F, config: Arc<ServerConfig>, ctx: Ctx<S>) -> io::Result<TlsStream<S, F>> {
        Ok(TlsStream::new(Session::server(config)?, fd, ctx))
    }

    fn new(session: Session, fd: F, ctx: Ctx<S>) -> TlsStream<S, F> {
        TlsStream {
            session,
            out: WriteQueue::new(fd.clone(), ctx),
            waiting: Outbox::default(),
            fd,
            ctx,
            phase: Phase::Handshaking,
            started: false,
            recv_buf: Some(Vec::with_capacity(RECV_CAPACITY)),
            recv_capacity: RECV_CAPACITY,
            base_capacity: RECV_CAPACITY,
            recv_task: None,
            recv_canceled: false,
            recv_paused: false,
            handshake_timeout: None,
            timer: None,
            close_notify_sent: false,
            socket_shutdown: SocketShutdown::NotYet,
            spare: Vec::new(),
            spare_records: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Receives into a buffer of `capacity` bytes (at least 1) instead of
    /// the default 33 KiB: larger takes more records per receive on a busy
    /// stream, smaller holds less memory per idle one. The buffer grows
    /// when a record (or a handshake message) does not fit, since records
    /// are decrypted where they were received, and doubles, up to 132 KiB,
    /// when a receive fills it.
    pub fn with_receive_capacity(mut self, capacity: usize) -> TlsStream<S, F> {
        self.recv_capacity = capacity.max(1);
        self.base_capacity = self.recv_capacity;
        self.recv_buf = Some(Vec::with_capacity(self.recv_capacity));
        self
    }

    /// Fails the session with `TimedOut` if its handshake has not finished
    /// within `timeout` of [`start`](TlsStream::start).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsStream<S, F> {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Starts the session: the client sends its hello, both sides start
    /// receiving, and the handshake deadline (if any) starts running.
    /// Works on every backend (receive and send; io_uring 5.11). A stream
    /// starts once: calling it again does nothing, as does calling it on a
    /// stream that has ended (cancelled before it started).
    pub fn start(&mut self, ring: &mut Ring<S>) {
        if std::mem::replace(&mut self.started, true) || self.receiving_ended() {
            return;
        }
        if let Some(timeout) = self.handshake_timeout {
            self.timer = Some(ring.timer(timeout, self.ctx));
        }
        let started = self.session.start(&mut self.waiting);
        self.send_records(ring, started);
        self.receive(ring);
    }

    /// Takes a completion of one of the stream's tasks; then read what it
    /// did with [`next_event`](TlsStream::next_event).
    ///
    /// An `InvalidInput` error (and nothing changed) for a completion of
    /// another kind of operation.
    pub fn on_completion(&mut self, ring: &mut Ring<S>, c: Completion) -> io::Result<()> {
        if c.op() == OpKind::Send {
            self.on_sent(ring, c);
            return Ok(());
        }
        match c.outcome {
            Outcome::Recv(result, buf) => self.on_received(ring, result, into_vec(buf)),
            Outcome::Timer(result) => self.on_timer(ring, result),
            Outcome::Shutdown(_) => self.socket_shutdown = SocketShutdown::Done,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a completion of a TLS stream: {other:?}"),
                ))
            }
        }
        Ok(())
    }

    /// The next thing that happened, oldest first.
    pub fn next_event(&mut self) -> Option<TlsEvent> {
        self.events.pop_front()
    }

    /// Queues `plaintext` to be sent (encrypted once the handshake is done;
    /// before that it waits) and returns the bytes now queued (see
    /// [`queued`](TlsStream::queued)): the backpressure signal, also
    /// reported by [`TlsEvent::Written`]. Stop producing while it is high.
    ///
    /// `BrokenPipe` after [`shutdown`](TlsStream::shutdown) or a failure.
    pub fn write(&mut self, ring: &mut Ring<S>, plaintext: &[u8]) -> io::Result<usize> {
        if self.close_notify_sent || self.out.has_failed() || self.phase == Phase::Failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session is shut down or has failed",
            ));
        }
        self.session.write(plaintext, &mut self.waiting)?;
        self.send_waiting(ring);
        Ok(self.queued())
    }

    /// Sends `close_notify` after everything written so far, then shuts
    /// down the socket's sending side. Receiving goes on until the peer
    /// closes. Further writes fail; a second call does nothing.
    pub fn shutdown(&mut self, ring: &mut Ring<S>) {
        if self.close_notify_sent {
            return;
        }
        self.close_notify_sent = true;
        let sealed = self.session.send_close_notify(&mut self.waiting);
        self.send_records(ring, sealed);
        self.shutdown_socket_when_sent(ring);
    }

    /// Cancels the stream's receive and its handshake deadline: the
    /// receive's completion then reports the cancellation as
    /// [`TlsEvent::Failed`] (see [`ouro::is_canceled`]) unless the session
    /// had already ended; with no receive in flight (receiving paused, or
    /// not started) the stream fails so at once. Either way nothing more is
    /// received. Sends in flight finish on their own.
    pub fn cancel(&mut self, ring: &mut Ring<S>) {
        self.cancel_timer(ring);
        match self.recv_task {
            Some(task) => {
                self.recv_canceled = true;
                ring.cancel(task, Ctx::none());
            }
            // `fail` comes back here with the session failed: no loop.
            None if !self.receiving_ended() => self.fail(ring, ouro::canceled_error()),
            None => {}
        }
    }

    /// Stops receiving: no receive is armed after the one in flight (at
    /// most one buffer more, see
    /// [`with_receive_capacity`](TlsStream::with_receive_capacity)), so
    /// the peer's bytes wait in the kernel and TCP's flow control holds
    /// the peer back. This is how a server whose answers pile up (see
    /// [`queued`](TlsStream::queued)) stops a peer that sends and never
    /// reads. While paused nothing is received: not the rest of the
    /// handshake (its deadline still runs), not the peer's close; and
    /// what receiving holds is freed (the receive buffer, back to the
    /// size asked for or to none if it is empty, and the vectors kept for
    /// reuse), so a paused stream holds little beyond what it queued.
    pub fn pause_receiving(&mut self) {
        self.recv_paused = true;
        if self.recv_task.is_none() {
            self.shed_receive_memory();
        }
    }

    /// Receives again after [`pause_receiving`](TlsStream::pause_receiving);
    /// does nothing if receiving was not paused.
    pub fn resume_receiving(&mut self, ring: &mut Ring<S>) {
        if !std::mem::take(&mut self.recv_paused) {
            return;
        }
        self.receive(ring);
    }

    /// Whether receiving is paused.
    pub fn is_receiving_paused(&self) -> bool {
        self.recv_paused
    }

    /// Whether the handshake is done and the session not ended.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the session has ended: the peer closed cleanly, or it
    /// failed. Nothing more is received; once [`is_idle`](TlsStream::is_idle)
    /// too, everything queued (such as this side's `close_notify`) is sent.
    pub fn is_ended(&self) -> bool {
        self.receiving_ended()
    }

    /// Whether no task of the stream is in flight: the fd may be closed and
    /// the stream dropped without cutting anything short.
    pub fn is_idle(&self) -> bool {
        self.recv_task.is_none()
            && self.timer.is_none()
            && self.out.is_idle()
            && self.socket_shutdown != SocketShutdown::InFlight
    }

    /// Bytes queued and not yet sent: records, and plaintext written
    /// during the handshake that waits for its keys. Each byte counts once:
    /// plaintext sealed before the handshake is done (a server's 0.5-RTT
    /// data, with `send_half_rtt_data`) counts as the records it became.
    /// Once the stream has failed only records already queued (such as the
    /// alert telling the peer why) count: plaintext never sealed is never
    /// sent, so a writer waiting for `queued` to drain is not left waiting.
    pub fn queued(&self) -> usize {
        if self.phase == Phase::Failed {
            return self.out.queued();
        }
        self.out.queued() + self.waiting.len() + self.session.unsealed_len()
    }

    /// The socket the stream runs on.
    pub fn fd(&self) -> &F {
        &self.fd
    }

    /// Gives back a vector from [`TlsEvent::Received`] for the stream to
    /// reuse, so that the stream's own buffers allocate nothing in steady
    /// state (rustls's allocations per record remain).
    pub fn recycle(&mut self, mut vec: Vec<u8>) {
        if self.spare.len() < SPARE_VECS && !self.recv_paused {
            vec.clear();
            self.spare.push(vec);
        }
    }

    fn on_sent(&mut self, ring: &mut Ring<S>, c: Completion) {
        match self.out.on_sent(ring, c) {
            Ok(progress) => {
                if let Some(done) = progress.finished {
                    self.recycle_records(done);
                }
                self.send_waiting(ring);
                let queued = self.queued();
                self.events.push_back(TlsEvent::Written { queued });
                self.shutdown_socket_when_sent(ring);
            }
            Err(err) => {
                self.waiting.take(Vec::new());
                self.fail(ring, err);
            }
        }
    }

    fn on_received(&mut self, ring: &mut Ring<S>, result: io::Result<usize>, mut buf: Vec<u8>) {
        self.recv_task = None;
        let canceled = std::mem::take(&mut self.recv_canceled);
        let received = match result {
            // The receive finished before the cancel reached it: the cancel
            // still ends receiving (its bytes are dropped, as a receive the
            // cancel had reached would have left them unread).
            Ok(_) if canceled => {
                self.recv_buf = Some(buf);
                return self.fail(ring, ouro::canceled_error());
            }
            Ok(received) => received,
            Err(err) => {
                self.recv_buf = Some(buf);
                return self.fail(ring, err);
            }
        };
        if self.receiving_ended() {
            self.recv_buf = Some(buf);
            return;
        }
        if received == 0 {
            self.recv_buf = Some(buf);
            return self.fail(ring, truncated(self.phase));
        }
        let mut plaintext = self.take_spare();
        let was_handshaking = self.session.is_handshaking();
        if buf.len() == buf.capacity() {
            self.recv_capacity = busy_capacity(buf.capacity()).max(self.recv_capacity);
        }
        let fed = self
            .session
            .feed(&mut buf, &mut plaintext, &mut self.waiting);
        self.recv_buf = Some(buf);
        // Whatever the session answers (handshake messages, or the alert
        // that tells the peer why it failed) goes out first.
        self.send_waiting(ring);
        // A failed handshake has not ended, but plaintext says it had.
        let handshaken = fed.is_ok() || !plaintext.is_empty();
        if was_handshaking && !self.session.is_handshaking() && handshaken {
            self.handshake_done(ring);
        }
        // Records before a bad one were authenticated: their plaintext
        // comes before the error.
        if plaintext.is_empty() {
            self.recycle(plaintext);
        } else {
            self.events.push_back(TlsEvent::Received(plaintext));
        }
        let fed = match fed {
            Ok(fed) => fed,
            Err(err) => return self.fail(ring, err),
        };
        if fed.peer_closed {
            self.phase = Phase::PeerClosed;
            self.cancel_timer(ring);
            self.events.push_back(TlsEvent::Closed);
            return;
        }
        self.receive(ring);
    }

    fn handshake_done(&mut self, ring: &mut Ring<S>) {
        self.phase = Phase::Open;
        self.cancel_timer(ring);
        let Some(version) = self.session.protocol_version() else {
            return self.fail(
                ring,
                io::Error::other("TLS handshake ended without a protocol version"),
            );
        };
        self.events.push_back(TlsEvent::HandshakeDone(Handshake {
            alpn: self.session.alpn_protocol(),
            version,
            key_exchange: self.session.key_exchange(),
        }));
    }

    fn on_timer(&mut self, ring: &mut Ring<S>, result: io::Result<()>) {
        self.timer = None;
        // A cancelled timer is one whose handshake finished (or that the
        // user cancelled): nothing to report.
        if result.is_err() || self.phase != Phase::Handshaking {
            return;
        }
        let err = io::Error::new(
            io::ErrorKind::TimedOut,
            "the TLS handshake did not finish before its deadline",
        );
        self.fail(ring, err);
    }

    /// Reports `err` once and stops receiving; what is already queued
    /// (such as the alert telling the peer why) is still sent.
    fn fail(&mut self, ring: &mut Ring<S>, err: io::Error) {
        if self.phase == Phase::Failed {
            return;
        }
        self.phase = Phase::Failed;
        self.events.push_back(TlsEvent::Failed(err));
        self.cancel(ring);
    }

    fn receiving_ended(&self) -> bool {
        matches!(self.phase, Phase::PeerClosed | Phase::Failed)
    }

    fn receive(&mut self, ring: &mut Ring<S>) {
        if self.recv_task.is_some() {
            return;
        }
        if self.recv_paused || self.receiving_ended() {
            return self.shed_receive_memory();
        }
        let Some(mut buf) = self.recv_buf.take() else {
            return;
        };
        buf.reserve_exact(self.recv_capacity.saturating_sub(buf.len()));
        // What is left of a record waits for the rest in front.
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        self.recv_task = Some(ring.recv(self.fd.clone(), buf, self.ctx));
    }

    /// Sends the records the session sealed, or fails with its error
    /// (after sending the alert it sealed for the peer).
    fn send_records(&mut self, ring: &mut Ring<S>, sealed: io::Result<()>) {
        self.send_waiting(ring);
        if let Err(err) = sealed {
            self.fail(ring, err);
        }
    }

    /// Hands the records waiting to the write queue when no send is in
    /// flight. While one is, records gather in `waiting`, so that the next
    /// send takes all of them at once (one send per record would cost a
    /// ring turn per record).
    fn send_waiting(&mut self, ring: &mut Ring<S>) {
        if self.waiting.is_empty() || !self.out.is_idle() {
            return;
        }
        if self.out.has_failed() {
            self.waiting.take(Vec::new());
            return;
        }
        let (records, len) = self
            .waiting
            .take(self.spare_records.pop().unwrap_or_default());
        // Only an earlier send's failure, already reported, refuses a push.
        let _ = self.out.push(ring, records.slice(..len));
    }

    fn recycle_records(&mut self, buf: Buf) {
        if let Ok(records) = buf.downcast::<Slice<Vec<u8>>>() {
            if self.spare_records.len() < SPARE_VECS && !self.recv_paused {
                self.spare_records.push(records.into_inner());
            }
        }
    }

    fn shutdown_socket_when_sent(&mut self, ring: &mut Ring<S>) {
        if self.close_notify_sent
            && (self.session.close_notify_sealed() || self.phase == Phase::Failed)
            && self.waiting.is_empty()
            && self.socket_shutdown == SocketShutdown::NotYet
            && self.out.is_idle()
        {
            self.socket_shutdown = SocketShutdown::InFlight;
            ring.shutdown(self.fd.clone(), Shutdown::Write, self.ctx);
        }
    }

    fn cancel_timer(&mut self, ring: &mut Ring<S>) {
        if let Some(timer) = self.timer {
            ring.cancel(timer, Ctx::none());
        }
    }

    /// Frees what receiving holds while nothing is received (paused, or
    /// ended): a stream whose peer does not read its answers then holds
    /// what it has queued and little more, however busy it was.
    fn shed_receive_memory(&mut self) {
        self.spare = Vec::new();
        self.spare_records = Vec::new();
        self.recv_capacity = self.base_capacity;
        if let Some(buf) = &mut self.recv_buf {
            if buf.is_empty() {
                *buf = Vec::new();
            } else {
                buf.shrink_to(self.base_capacity);
            }
        }
    }

    fn take_spare(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }
}

/// The receive buffer's capacity after a receive filled it.
fn busy_capacity(capacity: usize) -> usize {
    (2 * capacity).clamp(capacity, BUSY_RECV_CAPACITY.max(capacity))
}

/// The vector a stream's buffer was made from (the stream only hands
/// vectors to the ring), whatever was consumed of it.
fn into_vec(buf: Buf) -> Vec<u8> {
    buf.downcast::<Vec<u8>>().unwrap_or_else(Buf::into_vec)
}

/// The error for an end of stream without `close_notify`: during the
/// handshake, or after it (the plaintext may have been cut short by an
/// attacker, so it must not be taken as complete).
fn truncated(phase: Phase) -> io::Error {
    let why = if phase == Phase::Handshaking {
        "the peer closed the connection during the TLS handshake"
    } else {
        "the peer closed the connection without close_notify: the data may be truncated"
    };
    io::Error::new(io::ErrorKind::UnexpectedEof, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_receive_buffer_doubles_up_to_eight_records_and_a_larger_one_stays() {
        assert_eq!(busy_capacity(1), 2);
        assert_eq!(busy_capacity(RECV_CAPACITY), 2 * RECV_CAPACITY);
        assert_eq!(busy_capacity(2 * RECV_CAPACITY), BUSY_RECV_CAPACITY);
        assert_eq!(busy_capacity(BUSY_RECV_CAPACITY), BUSY_RECV_CAPACITY);
        assert_eq!(busy_capacity(1 << 20), 1 << 20);
    }
}
