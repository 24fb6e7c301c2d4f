//! The deterministic simulator: rings whose operations a simulated
//! [`World`] carries out, on a virtual clock, with the order of events,
//! the network's delays and the faults drawn from one seed. The same user
//! code runs on a real ring and on a simulated one; a failure found under
//! a seed is replayed exactly by running that seed again.
//!
//! ```
//! use ouro::sim::World;
//! use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
//! use std::time::Duration;
//!
//! let world = World::new(7);
//! let mut ring: Ring<u32> = Ring::simulated(&world);
//! fn fired(n: &mut u32, _: &mut Ring<u32>, c: Completion) -> std::io::Result<()> {
//!     assert!(matches!(c.outcome, Outcome::Timer(Ok(()))));
//!     *n += 1;
//!     Ok(())
//! }
//! ring.timer(Duration::from_secs(60), Ctx::new(fired));
//! let mut node = (ring, 0);
//! world.run(&mut [&mut node], Duration::from_secs(3600)).unwrap();
//! assert_eq!(node.1, 1);
//! // Virtual time: the minute passed at once, and the timer was not early.
//! assert!(world.now() >= Duration::from_secs(60));
//! ```
//!
//! A world holds every ring made on it. [`World::run`] steps each ring
//! (a [`Node`]) one turn at a time in an order drawn from the seed, and
//! when none has work ready, jumps the clock to the next event (a
//! completion, a segment arriving, a timer). A lone ring may also be run
//! with [`Ring::run`](crate::Ring::run) as usual: its waits jump the
//! clock too, but it can only wait for what is already scheduled. Rings
//! left out of a run keep their ready completions until they are run
//! again; the run goes on to what is scheduled. A timer due at the end of
//! virtual time (`u64::MAX` ns, where `Duration::MAX` lands) never fires,
//! as on a real ring.
//!
//! What is simulated: no-ops, timers, cancellation, TCP sockets (socket,
//! bind, listen, connect, accept, send, recv, shutdown, close; multishot
//! accept, direct or not, and multishot receive into a buffer group) and UDP
//! sockets (socket, bind, connect, send, recv, send_to, recv_from, close)
//! between the addresses of one world, and partitions between its hosts
//! (seeded, see [`Partitions`]) that hold TCP traffic until they heal;
//! files in memory (open, read, write, readv, writev, fsync, fdatasync,
//! ftruncate, fallocate, fadvise, stat, fstat, unlink, remove_dir, rename,
//! mkdir, hard_link, close), whose writes are pending until an fsync keeps
//! them, and crashes of the host ([`World::crash`]) that keep only what was
//! synced and a seeded, possibly torn, prefix of the rest; messages
//! between rings (delivered after a seeded delay); and the rings of [`Ring::spawn_thread`](crate::Ring::spawn_thread),
//! which start no OS thread but become nodes the world steps.
//! Every other operation fails with an
//! `Unsupported` error naming it. Each socket and file handed to user code is a real
//! fd (a memfd) that the world maps to its socket or file, checked by identity on
//! every use: a stale fd, or one the world did not make, is `EBADF`.
//!
//! See `docs/simulator.md` for the runner and the fault classes.

mod clock;
mod faults;
mod file_io;
mod files;
mod give_up;
mod groups;
mod multishot;
mod net;
mod partition;
mod queues;
mod socket_fds;
mod spoof;
mod threads;
mod udp;
mod world;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::driver::Driver;
use super::{BackendKind, OwnedFiles, RawCompletion, Started, Wake};
use crate::buffers::group::GroupInner;
use crate::error::bad_ring_fd;
use crate::fd::{Fd, Named};
use crate::op::Op;
use crate::time::Clock;
use clock::END_OF_TIME;
use multishot::Shot;
use net::{Parked, Reply};
use queues::Submissions;
use world::State;

pub use faults::{Config, FaultCounts, Latency, Partitions, CQ_ENTRIES, SQ_ENTRIES};
#[doc(hidden)]
pub use world::Bug;
pub use world::{Node, Stop, World};

pub(crate) use threads::{forget, run_to_end, Spawned};

/// A ring's backend in a simulated world.
pub(crate) struct SimBackend {
    world: World,
    node: u32,
    files: OwnedFiles,
    /// The socket behind each of the ring's files, checked by identity
    /// when the ring took the file: while the ring holds the fd open its
    /// number cannot go to another file, so using it needs no `fstat`.
    file_sockets: Vec<Option<usize>>,
    woken: Arc<SimWaker>,
    submissions: Submissions,
    /// When the ring's held messages go out (see `threads.rs`).
    messages_due: Option<u64>,
}

#[derive(Default)]
struct SimWaker(AtomicBool);

impl Wake for SimWaker {
    fn wake(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl SimBackend {
    /// A backend for a new ring of `world`.
    pub(crate) fn new(world: &World) -> SimBackend {
        let mut state = world.state.borrow_mut();
        state.ready.push(Vec::new());
        state.overflow.push(Default::default());
        SimBackend {
            world: world.clone(),
            node: (state.ready.len() - 1) as u32,
            files: OwnedFiles::default(),
            file_sockets: Vec::new(),
            woken: Arc::default(),
            submissions: Submissions::default(),
            messages_due: None,
        }
    }

    /// The socket `fd` names, if the world made it and it is still open.
    fn socket_of(&self, state: &State, fd: Fd) -> Option<usize> {
        match fd.named() {
            Named::Raw(raw) => state.lookup(raw),
            Named::Ring(file) => {
                let sock = (*self.file_sockets.get(file as usize)?)?;
                // Still open in the world: a close naming the same fd by
                // number would have dropped the record.
                let raw = self.files.raw(file);
                (state.net.fds.recorded(raw) == Some(sock)).then_some(sock)
            }
        }
    }

    /// Records which socket, if any, the ring's new `file` is.
    fn note_file(&mut self, file: u32, raw: RawFd) {
        let sock = self.world.state.borrow().lookup(raw);
        let i = file as usize;
        if i >= self.file_sockets.len() {
            self.file_sockets.resize(i + 1, None);
        }
        self.file_sockets[i] = sock;
        if let Some(sock) = sock {
            self.world.state.borrow_mut().own_socket(sock, self.node);
        }
    }

    /// Gives up every file's socket (the ring is dropping its files).
    fn disown_all(&mut self) {
        let mut state = self.world.state.borrow_mut();
        for sock in std::mem::take(&mut self.file_sockets).into_iter().flatten() {
            state.disown_socket(sock, self.node);
        }
    }

    /// Whether a turn now would find nothing for this ring: no completion
    /// ready for it, no event of the world due, no wake-up.
    pub(crate) fn nothing_due(&self) -> bool {
        let state = self.world.state.borrow();
        !state.has_completions(self.node)
            && !state.event_due()
            && !self.woken.0.load(Ordering::Acquire)
    }

    /// The ring's host crashed: see [`World::crash`].
    pub(crate) fn crash(&self) {
        let mut state = self.world.state.borrow_mut();
        state.crash_node(self.node);
        // The process's end closes the sockets in the ring's table: their
        // peers see the connection end, or reset if data was left unread.
        for (file, sock) in self.file_sockets.iter().enumerate() {
            if let Some(sock) = *sock {
                close_udp(&mut state, sock);
                state.close_known(self.files.raw(file as u32), sock);
            }
        }
    }

    /// Takes `file` out of the ring: what a file put in its place is gets
    /// checked anew.
    fn take_ring_file(&mut self, state: &mut State, file: u32) -> Option<OwnedFd> {
        if let Some(sock) = self
            .file_sockets
            .get_mut(file as usize)
            .and_then(Option::take)
        {
            state.disown_socket(sock, self.node);
        }
        self.files.take(file)
    }

    fn carry_out(
        &mut self,
        state: &mut State,
        user_data: u64,
        op: &mut Op,
    ) -> Result<Reply, io::Error> {
        if let Some(reply) = self.carry_out_file(state, op) {
            return reply;
        }
        let node = self.node;
        let parked_shot = |ptr: *mut u8, room: usize, shot: Shot| Parked {
            node,
            user_data,
            ptr,
            room,
            shot,
        };
        let parked = |ptr: *mut u8, room: usize| parked_shot(ptr, room, Shot::Once);
        let reply = match op {
            Op::Noop => Reply::Res(0),
            Op::Close { fd } => match fd.take() {
                Some(fd) => {
                    if let Some(sock) = state.lookup(fd.as_raw_fd()) {
                        close_udp(state, sock);
                    }
                    state.close(&fd);
                    Reply::Res(0)
                }
                None => Reply::Res(-libc::EBADF),
            },
            Op::CloseRing { file } => {
                let sock = self.socket_of(state, Fd::ring(*file));
                match self.take_ring_file(state, *file) {
                    Some(fd) => {
                        if let Some(sock) = sock {
                            close_udp(state, sock);
                            state.close_known(fd.as_raw_fd(), sock);
                        }
                        Reply::Res(0)
                    }
                    None => Reply::Res(-libc::EBADF),
                }
            }
            Op::Socket { domain, ty, .. } => {
                let stream = *ty & 0xf == libc::SOCK_STREAM;
                let datagram = *ty & 0xf == libc::SOCK_DGRAM;
                let ip = *domain == libc::AF_INET || *domain == libc::AF_INET6;
                if !(stream || datagram) || !ip {
                    return Err(unsupported("sockets other than TCP and UDP"));
                }
                let fd = state.socket()?;
                if datagram {
                    if let Some(sock) = state.lookup(fd.as_raw_fd()) {
                        state.udp.open(sock, *domain == libc::AF_INET6);
                    }
                }
                Reply::Fd(fd)
            }
            _ => {
                let Some(fd) = op.fds()[0] else {
                    return Err(unsupported(&format!("{:?}", op.kind())));
                };
                let Some(sock) = self.socket_of(state, fd) else {
                    return Ok(Reply::Res(-libc::EBADF));
                };
                if state.udp.is_datagram(sock) {
                    return udp::carry_out(state, self.node, user_data, op, sock);
                }
                if let Some(reply) = inject(state, op, sock) {
                    return Ok(reply);
                }
                match op {
                    Op::Bind { addr, .. } => match addr.get().and_then(|a| a.as_socket()) {
                        Some(addr) => state.bind(sock, addr),
                        None => Reply::Res(-libc::EAFNOSUPPORT),
                    },
                    Op::Listen { backlog, .. } => state.listen(sock, *backlog),
                    Op::Connect { addr, .. } => match addr.get().and_then(|a| a.as_socket()) {
                        Some(addr) => state.connect(parked(std::ptr::null_mut(), 0), sock, addr),
                        None => Reply::Res(-libc::EAFNOSUPPORT),
                    },
                    Op::Accept { addr, .. } => {
                        let block: *mut crate::net::AddrBuf = &mut **addr;
                        state.accept(parked(block.cast(), 0), sock)
                    }
                    Op::Send { buf, .. } => state.send(sock, &buf[..]),
                    Op::Recv { .. } => {
                        let (ptr, room) = op.read_target().unwrap_or((std::ptr::null_mut(), 0));
                        state.recv(parked(ptr, room), sock)
                    }
                    Op::Shutdown { how, .. } => state.shutdown(sock, *how),
                    Op::AcceptMulti { .. } | Op::AcceptDirect { .. } => {
                        state.accept(parked_shot(std::ptr::null_mut(), 0, Shot::Accept), sock)
                    }
                    Op::RecvMulti { group, .. } => {
                        let shot = Shot::Recv(Rc::as_ptr(group));
                        state.recv(parked_shot(std::ptr::null_mut(), 0, shot), sock)
                    }
                    op => return Err(unsupported(&format!("{:?}", op.kind()))),
                }
            }
        };
        Ok(reply)
    }
}

fn close_udp(state: &mut State, sock: usize) {
    if state.udp.is_datagram(sock) {
        state.udp_close(sock);
    }
}

/// An error the kernel could return for `op`, if the configuration draws
/// one; a connection it names as reset is reset at both ends.
fn inject(state: &mut State, op: &Op, sock: usize) -> Option<Reply> {
    let (errno, stream, class) = faults::injectable(op.kind())?;
    if !state.streams.chance(stream, state.config.errors) {
        return None;
    }
    state.faults.add(class);
    if matches!(op, Op::Recv { .. } | Op::Send { .. } | Op::RecvMulti { .. }) {
        state.reset_both(sock);
    }
    Some(Reply::Res(-errno))
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the simulator does not carry out {what} yet"),
    )
}

impl Driver for SimBackend {
    const KIND: BackendKind = BackendKind::Sim;

    unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        let _ = clock;
        let world = self.world.state.clone();
        let mut state = world.borrow_mut();
        if !self.submissions.push(&mut state) {
            return Started::Full;
        }
        let reply = match self.carry_out(&mut state, user_data, op) {
            Ok(reply) => reply,
            Err(err) => {
                // Refused before the kernel, as io_uring's are: no entry.
                self.submissions.take_back();
                return Started::Failed(err);
            }
        };
        state.started(self.node, user_data, op.kind());
        let at = state.now().saturating_add(state.delay());
        match reply {
            Reply::Res(res) => state.complete(self.node, user_data, res, at),
            Reply::Fd(fd) => state.complete_fd(self.node, user_data, 0, Some(fd), at),
            Reply::Parked => {}
        }
        Started::Yes
    }

    fn cancel(&mut self, user_data: u64) -> bool {
        let mut state = self.world.state.borrow_mut();
        if !self.submissions.push(&mut state) {
            return false;
        }
        state.cancel(self.node, user_data);
        true
    }

    fn flush(&mut self) -> io::Result<bool> {
        let mut state = self.world.state.borrow_mut();
        Ok(self.submissions.submit(&mut state, self.node))
    }

    /// Carries out the events due; a wait that may block jumps the clock
    /// to the next event or `timeout`, whichever is first.
    fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        let mut state = self.world.state.borrow_mut();
        // The wait enters the kernel, which takes the submissions (unless
        // it is busy with overflowed completions, as a flush).
        self.submissions.submit(&mut state, self.node);
        state.process_due();
        let woken = self.woken.0.swap(false, Ordering::Acquire);
        if woken || timeout == Some(0) || state.has_completions(self.node) {
            return Ok(());
        }
        // Before the clock moves: a socket whose fd the program dropped
        // closes now, and its peer's wait may end with it.
        state.close_dropped();
        if state.lost(self.node) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "simulated ring: an operation in flight will never complete \
                 (nothing is scheduled or waiting for it)",
            ));
        }
        let now = state.now();
        // Partitions starting and healing forever end no wait by themselves.
        let next_event = state.next_event().filter(|_| !state.only_partitions_left());
        let timer = timeout.map(|t| now.saturating_add(t));
        let until = match (next_event, timer.filter(|&at| at < END_OF_TIME)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) if timer.is_some() => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "simulated ring: the nearest timer is due at the end of virtual time \
                     (u64::MAX ns, where Duration::MAX lands), which never comes, and \
                     nothing else is scheduled",
                ))
            }
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "simulated ring: nothing is scheduled that could end this wait; \
                     run the world's rings together with World::run",
                ))
            }
        };
        // The world's clock, not `clock`: a dropped ring drains on a real
        // clock, and must still see the world's time move.
        let _ = clock;
        state.now.set(now.max(until));
        state.process_due();
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        self.world.state.borrow_mut().reap(self.node, out);
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Ok(self.woken.clone())
    }

    fn describe(&self) -> String {
        format!("simulated (seed {})", self.world.seed())
    }

    /// Under the simulator, `dest` itself (see the comment inside).
    fn source_address(
        &mut self,
        _probe: &mut crate::net::RouteProbe,
        dest: std::net::IpAddr,
    ) -> io::Result<std::net::IpAddr> {
        // Every address of the world is reachable directly, from an
        // address of its own family and scope: the same on every machine,
        // so that a seed orders addresses as it did before.
        Ok(dest)
    }

    /// Under the simulator no address has flags: the machine's own must
    /// not change how a seed orders addresses.
    fn local_address_flags(&mut self) -> io::Result<crate::net::LocalAddressFlags> {
        Ok(crate::net::LocalAddressFlags::default())
    }

    /// From the world's stream for ring components: a run replays.
    fn random_u64(&mut self) -> io::Result<u64> {
        let mut state = self.world.state.borrow_mut();
        Ok(state.streams.get(faults::Stream::Components).u64(..))
    }

    /// The group stays the free list that backends without provided buffer
    /// rings take from; the world remembers it for its end check.
    fn register_group(&mut self, group: &Rc<GroupInner>) {
        let mut state = self.world.state.borrow_mut();
        state.remember_group(self.node, group);
    }

    fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        let _ = may_use_table;
        self.note_file(file, fd.as_raw_fd());
        self.files.insert(file, fd)
    }

    fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        self.files
            .get(file)
            .map(AsFd::as_fd)
            .ok_or_else(bad_ring_fd)
    }

    fn take_file(&mut self, file: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd> {
        let _ = stash;
        let world = self.world.state.clone();
        let taken = self.take_ring_file(&mut world.borrow_mut(), file);
        taken.ok_or_else(bad_ring_fd)
    }

    fn forget_file(&mut self, file: u32) {
        let world = self.world.state.clone();
        let taken = self.take_ring_file(&mut world.borrow_mut(), file);
        drop(taken);
    }

    fn close_files(&mut self) {
        self.disown_all();
        self.files.close_all();
    }

    fn leak_files(&mut self) {
        self.disown_all();
        self.files.leak_all();
    }
}
