//! Steady state does not allocate: after a warm-up, 10,000 noops, timers,
//! reads, writes, sends and recvs, send_tos and recv_froms (each re-armed
//! from its callback, reusing its buffer; sends and recvs on shared fds and
//! on ring fds), rounds through a write queue, file transfers through
//! `SendFile`, and rounds of every file-system operation (paths in pooled
//! buffers) and of fadvise and madvise make no heap allocation at all.
//!
//! A counting global allocator counts allocations on the test's own thread
//! while a thread-local switch is on, so tests running in parallel do not
//! disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use ouro::{BackendKind, Completion, Ctx, Offset, Outcome, Ring, RingFd, RunMode, WriteQueue};

#[macro_use]
#[path = "common/mod.rs"]
mod common;

macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(per_backend!(crate::common::backends::unless_skipped, $name);)+
    };
}

backend_tests![
    noop_does_not_allocate,
    timer_does_not_allocate,
    read_does_not_allocate,
    write_does_not_allocate,
    send_and_recv_do_not_allocate,
    send_and_recv_on_ring_fds_do_not_allocate,
    send_to_and_recv_from_do_not_allocate,
    a_write_queue_does_not_allocate,
    send_file_transfers_do_not_allocate,
    file_system_ops_and_advice_do_not_allocate,
];

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Operations per measurement, after as many for warming up.
const OPS: u32 = 10_000;

/// The state of an operation loop: how many operations are left, and the
/// fds they work on (shared: each operation holds a clone, a count
/// increment that allocates nothing).
struct Loop {
    left: u32,
    fds: Vec<Rc<OwnedFd>>,
    ring_fds: Vec<RingFd>,
}

/// Runs `OPS` operations twice, the first scheduled by `start` and the
/// others by their callbacks: once to warm up, once counting allocations on
/// this thread (from the first operation's completion on).
fn allocations_in_steady_state(
    mut ring: Ring<Loop>,
    fds: Vec<OwnedFd>,
    start: fn(&mut Loop, &mut Ring<Loop>),
) -> u64 {
    let mut state = Loop {
        left: OPS,
        fds: fds.into_iter().map(Rc::new).collect(),
        ring_fds: Vec::new(),
    };
    start(&mut state, &mut ring);
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.left, 0);

    state.left = OPS;
    start(&mut state, &mut ring);
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let result = ring.run(&mut state, RunMode::UntilDone);
    COUNTING.with(|on| on.set(false));
    result.unwrap();
    assert_eq!(state.left, 0, "every operation ran");
    ALLOCATIONS.with(Cell::get)
}

/// Counts one operation; whether another is due.
fn another(state: &mut Loop, c: &Completion) -> io::Result<bool> {
    c.result()?;
    state.left -= 1;
    Ok(state.left > 0)
}

fn ring(kind: BackendKind) -> Ring<Loop> {
    Ring::builder().backend(kind).entries(16).build().unwrap()
}

fn noop_does_not_allocate(kind: BackendKind) {
    fn on_noop(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
        if another(state, &c)? {
            ring.noop(Ctx::new(on_noop));
        }
        Ok(())
    }
    let allocations = allocations_in_steady_state(ring(kind), Vec::new(), |_, ring| {
        ring.noop(Ctx::new(on_noop));
    });
    assert_eq!(allocations, 0, "allocations in {OPS} noops");
}

fn timer_does_not_allocate(kind: BackendKind) {
    fn on_timer(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
        if another(state, &c)? {
            ring.timer(Duration::from_micros(1), Ctx::new(on_timer));
        }
        Ok(())
    }
    let allocations = allocations_in_steady_state(ring(kind), Vec::new(), |_, ring| {
        ring.timer(Duration::from_micros(1), Ctx::new(on_timer));
    });
    assert_eq!(allocations, 0, "allocations in {OPS} timers");
}

fn read_does_not_allocate(kind: BackendKind) {
    fn on_read(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
        if !another(state, &c)? {
            return Ok(());
        }
        let Outcome::Read(Ok(64), buf) = c.outcome else {
            return Err(io::Error::other(format!("unexpected {:?}", c.outcome)));
        };
        let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("not a Vec"))?;
        vec.clear();
        ring.read(&state.fds[0], vec, Offset::At(0), Ctx::new(on_read));
        Ok(())
    }
    let file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &file, &[7; 64]).unwrap();
    let allocations = allocations_in_steady_state(ring(kind), vec![file.into()], |state, ring| {
        ring.read(
            &state.fds[0],
            Vec::with_capacity(64),
            Offset::At(0),
            Ctx::new(on_read),
        );
    });
    assert_eq!(allocations, 0, "allocations in {OPS} reads");
}

fn write_does_not_allocate(kind: BackendKind) {
    fn on_write(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
        if another(state, &c)? {
            let buf = c.into_buf().expect("a write's buffer");
            ring.write(&state.fds[0], buf, Offset::At(0), Ctx::new(on_write));
        }
        Ok(())
    }
    let file = tempfile::tempfile().unwrap();
    let allocations = allocations_in_steady_state(ring(kind), vec![file.into()], |state, ring| {
        ring.write(
            &state.fds[0],
            vec![1u8; 64],
            Offset::At(0),
            Ctx::new(on_write),
        );
    });
    assert_eq!(allocations, 0, "allocations in {OPS} writes");
}

ouro::messages! { enum Msg { Sent, Received } }

/// One round of a ping-pong over a socket pair: a message goes from one end
/// to the other and back to being sent, its buffer reused each time. It
/// goes through the ring fds if the test made some, else the shared fds.
fn ping_pong(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
    if !another(state, &c)? {
        return Ok(());
    }
    let msg = c.message::<Msg>()?;
    let buf = c.into_buf().expect("a buffer");
    let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("not a Vec"))?;
    match msg {
        Msg::Sent => {
            vec.clear();
            let ctx = Ctx::new(ping_pong).msg(Msg::Received);
            match state.ring_fds.get(1) {
                Some(&fd) => ring.recv(fd, vec, ctx),
                None => ring.recv(&state.fds[1], vec, ctx),
            };
        }
        Msg::Received => send_ping(state, ring, vec),
    }
    Ok(())
}

fn send_ping(state: &mut Loop, ring: &mut Ring<Loop>, vec: Vec<u8>) {
    let ctx = Ctx::new(ping_pong).msg(Msg::Sent);
    match state.ring_fds.first() {
        Some(&fd) => ring.send(fd, vec, ctx),
        None => ring.send(&state.fds[0], vec, ctx),
    };
}

/// One send and one recv per round, on shared fds.
fn send_and_recv_do_not_allocate(kind: BackendKind) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fds = vec![a.into(), b.into()];
    let allocations = allocations_in_steady_state(ring(kind), fds, |state, ring| {
        send_ping(state, ring, vec![9u8; 64]);
    });
    assert_eq!(allocations, 0, "allocations in {OPS} sends and recvs");
}

/// The same through ring fds (on io_uring: fixed files).
fn send_and_recv_on_ring_fds_do_not_allocate(kind: BackendKind) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fds = vec![a.into(), b.into()];
    let allocations = allocations_in_steady_state(ring(kind), fds, |state, ring| {
        if state.ring_fds.is_empty() {
            let fds = state
                .fds
                .drain(..)
                .map(|fd| Rc::try_unwrap(fd).expect("no operation holds it yet"));
            state.ring_fds = fds.map(|fd| ring.register_fd(fd)).collect();
        }
        send_ping(state, ring, vec![9u8; 64]);
    });
    assert_eq!(
        allocations, 0,
        "allocations in {OPS} sends and recvs on ring fds"
    );
}

/// One round of a ping-pong of datagrams: a send_to from the first UDP
/// socket to the second, then a recv_from there, the buffer reused.
fn datagram_ping_pong(state: &mut Loop, ring: &mut Ring<Loop>, c: Completion) -> io::Result<()> {
    if !another(state, &c)? {
        return Ok(());
    }
    let msg = c.message::<Msg>()?;
    let buf = c.into_buf().expect("a buffer");
    let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("not a Vec"))?;
    match msg {
        Msg::Sent => {
            vec.clear();
            let ctx = Ctx::new(datagram_ping_pong).msg(Msg::Received);
            ring.recv_from(&state.fds[1], vec, ctx);
        }
        Msg::Received => send_datagram(state, ring, vec)?,
    }
    Ok(())
}

fn send_datagram(state: &mut Loop, ring: &mut Ring<Loop>, vec: Vec<u8>) -> io::Result<()> {
    let to = ouro::net::local_addr(&state.fds[1])?;
    let ctx = Ctx::new(datagram_ping_pong).msg(Msg::Sent);
    ring.send_to(&state.fds[0], vec, to, ctx);
    Ok(())
}

/// One send_to and one recv_from per round, over loopback UDP.
fn send_to_and_recv_from_do_not_allocate(kind: BackendKind) {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let fds = vec![
        ouro::net::udp_socket(loopback).unwrap(),
        ouro::net::udp_socket(loopback).unwrap(),
    ];
    let allocations = allocations_in_steady_state(ring(kind), fds, |state, ring| {
        send_datagram(state, ring, vec![9u8; 64]).unwrap();
    });
    assert_eq!(
        allocations, 0,
        "allocations in {OPS} send_tos and recv_froms"
    );
}

/// Two buffers circling through a `WriteQueue` (one queued behind the one
/// in flight) and back through a recv on the other end.
struct Circling {
    queue: WriteQueue<Circling, Rc<OwnedFd>>,
    theirs: Rc<OwnedFd>,
    left: u32,
}

fn circle(state: &mut Circling, ring: &mut Ring<Circling>, c: Completion) -> io::Result<()> {
    if c.message::<Msg>()? == Msg::Sent {
        let progress = state.queue.on_sent(ring, c)?;
        if let Some(buf) = progress.finished {
            let mut vec: Vec<u8> = buf.downcast().map_err(|_| io::Error::other("not a Vec"))?;
            vec.clear();
            let ctx = Ctx::new(circle).msg(Msg::Received);
            ring.recv(&state.theirs, vec, ctx);
        }
        return Ok(());
    }
    c.result()?;
    state.left = state.left.saturating_sub(1);
    if state.left > 0 {
        let buf = c.into_buf().expect("a recv's buffer");
        state.queue.push(ring, buf)?;
    }
    Ok(())
}

fn a_write_queue_does_not_allocate(kind: BackendKind) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut ring: Ring<Circling> = Ring::builder().backend(kind).entries(16).build().unwrap();
    let ours = Rc::new(OwnedFd::from(a));
    let mut state = Circling {
        queue: WriteQueue::new(ours, Ctx::new(circle).msg(Msg::Sent)),
        theirs: Rc::new(OwnedFd::from(b)),
        left: 0,
    };
    let mut allocations = 0;
    for counting in [false, true] {
        state.left = OPS;
        for _ in 0..2 {
            state.queue.push(&mut ring, vec![5u8; 64]).unwrap();
        }
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|on| on.set(counting));
        let result = ring.run(&mut state, RunMode::UntilDone);
        COUNTING.with(|on| on.set(false));
        result.unwrap();
        allocations = ALLOCATIONS.with(Cell::get);
    }
    assert_eq!(state.left, 0, "every round ran");
    assert!(state.queue.is_idle());
    assert_eq!(
        allocations, 0,
        "allocations in {OPS} rounds through a write queue"
    );
}

/// Transfers of a small file through `SendFile`, one after another, the
/// peer reading each before the next starts.
struct Transfers {
    files: ouro::SendFile<Transfers, Rc<std::fs::File>, RingFd>,
    file: Rc<std::fs::File>,
    socket: RingFd,
    peer: std::os::unix::net::UnixStream,
    received: Vec<u8>,
    left: u32,
}

const TRANSFER: usize = 4096;

fn transferred(state: &mut Transfers, ring: &mut Ring<Transfers>, c: Completion) -> io::Result<()> {
    let Some(sent) = state.files.on_completion(ring, c)? else {
        return Ok(());
    };
    sent.result?;
    std::io::Read::read_exact(&mut state.peer, &mut state.received)?;
    state.left -= 1;
    if state.left > 0 {
        start_transfer(state, ring)?;
    }
    Ok(())
}

fn start_transfer(state: &mut Transfers, ring: &mut Ring<Transfers>) -> io::Result<()> {
    let file = state.file.clone();
    let len = TRANSFER as u64;
    state.files.start(ring, file, 0, len, state.socket, 0)?;
    Ok(())
}

fn send_file_transfers_do_not_allocate(kind: BackendKind) {
    use std::io::Write;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&[7; TRANSFER]).unwrap();
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut ring: Ring<Transfers> = Ring::builder().backend(kind).entries(16).build().unwrap();
    let socket = ring.register_fd(OwnedFd::from(ours));
    let mut state = Transfers {
        files: ouro::SendFile::new(Ctx::new(transferred)),
        file: Rc::new(file),
        socket,
        peer,
        received: vec![0; TRANSFER],
        left: 0,
    };
    let mut allocations = 0;
    for counting in [false, true] {
        state.left = OPS / 10;
        start_transfer(&mut state, &mut ring).unwrap();
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|on| on.set(counting));
        let result = ring.run(&mut state, RunMode::UntilDone);
        COUNTING.with(|on| on.set(false));
        result.unwrap();
        allocations = ALLOCATIONS.with(Cell::get);
    }
    assert_eq!(state.left, 0, "every transfer ran");
    assert_eq!(state.received, [7; TRANSFER]);
    assert_eq!(state.files.idle_pipes(), 1, "one pipe, reused");
    assert_eq!(
        allocations,
        0,
        "allocations in {} transfers through SendFile",
        OPS / 10
    );
}

/// Rounds of every file-system operation and both kinds of advice, one at
/// a time, on a file and names in a temporary directory.
struct FsRounds {
    file: Rc<std::fs::File>,
    /// A buffer for madvise, passed back in each time.
    memory: Option<Vec<u8>>,
    /// `[file, link, directory, renamed directory]` in the directory.
    paths: [std::path::PathBuf; 4],
    step: usize,
    left: u32,
}

/// The operations of a round, in order; each leaves the directory as the
/// round found it once the round is done.
const FS_STEPS: usize = 14;

fn fs_step(state: &mut FsRounds, ring: &mut Ring<FsRounds>) {
    use ouro::fs::{Advice, MemoryAdvice};
    let ctx = Ctx::new(fs_done);
    let [file, link, dir, renamed] = &state.paths;
    match state.step {
        0 => ring.mkdir(dir, 0o755, ctx),
        1 => ring.rename(dir, renamed, ctx),
        2 => ring.remove_dir(renamed, ctx),
        3 => ring.symlink(file, link, ctx),
        4 => ring.lstat(link, ctx),
        5 => ring.unlink(link, ctx),
        6 => ring.hard_link(file, link, ctx),
        7 => ring.stat(link, ctx),
        8 => ring.unlink(link, ctx),
        9 => ring.ftruncate(&state.file, 4096, ctx),
        10 => ring.fallocate(&state.file, 0, 0, 4096, ctx),
        11 => ring.fstat(&state.file, ctx),
        12 => ring.fadvise(&state.file, 0, 0, Advice::Sequential, ctx),
        _ => {
            let memory = state.memory.take().expect("the buffer is back");
            ring.madvise(memory, MemoryAdvice::WillNeed, ctx)
        }
    };
}

fn fs_done(state: &mut FsRounds, ring: &mut Ring<FsRounds>, c: Completion) -> io::Result<()> {
    c.result()?;
    if c.op() == ouro::OpKind::Madvise {
        let buf = c.into_buf().expect("madvise gives its buffer back");
        let memory = buf.downcast().map_err(|_| io::Error::other("not a Vec"))?;
        state.memory = Some(memory);
    }
    state.step = (state.step + 1) % FS_STEPS;
    if state.step == 0 {
        state.left -= 1;
        if state.left == 0 {
            return Ok(());
        }
    }
    fs_step(state, ring);
    Ok(())
}

fn file_system_ops_and_advice_do_not_allocate(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["file", "link", "dir", "renamed"];
    let paths = names.map(|name| dir.path().join(name));
    let file = std::fs::File::create(&paths[0]).unwrap();
    let mut ring: Ring<FsRounds> = Ring::builder().backend(kind).entries(16).build().unwrap();
    let mut state = FsRounds {
        file: Rc::new(file),
        memory: Some(vec![1; 3 * 4096]),
        paths,
        step: 0,
        left: 0,
    };
    let rounds = OPS / FS_STEPS as u32;
    let mut allocations = 0;
    for counting in [false, true] {
        state.left = rounds;
        fs_step(&mut state, &mut ring);
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|on| on.set(counting));
        let result = ring.run(&mut state, RunMode::UntilDone);
        COUNTING.with(|on| on.set(false));
        result.unwrap();
        allocations = ALLOCATIONS.with(Cell::get);
    }
    assert_eq!(state.left, 0, "every round ran");
    assert_eq!(state.memory.as_deref(), Some(&[1; 3 * 4096][..]));
    assert_eq!(
        allocations, 0,
        "allocations in {rounds} rounds of file-system operations and advice"
    );
}
