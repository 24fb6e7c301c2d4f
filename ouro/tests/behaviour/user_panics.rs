//! User code the ring calls outside callbacks: an `as_fd`, an `into_buf`,
//! the drop of a shared owner an operation held, and a callback that swaps
//! the ring it was given for another. A panic there, or the swap, must
//! leave the ring's books straight: no owner given to the wrong task or
//! lost (an operation on a closed number would reach whatever file took
//! it next), every completion delivered once, no fd leaked, no panic of
//! the ring's own.

use std::fs::{self, File};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use ouro::{BackendKind, Buf, Completion, Ctx, IntoBuf, Offset, Outcome, PollMask, Ring, RunMode};

use crate::common::fds::open_fds;
use crate::harness::{ctx, ring, run_all, socket_pair, Got};

backend_tests![a_callback_that_swaps_the_ring_loses_no_cancel];

exclusive_backend_tests![
    a_panic_between_naming_an_fd_and_making_the_task_loses_no_owner,
    a_shared_owner_whose_drop_panics_cuts_no_delivery_short,
    an_accepted_fd_outlives_a_panicking_drop_of_the_listeners_owner,
    a_dropped_ring_closes_an_undelivered_accepted_fd_whatever_its_owners_drop_does,
];

backend_tests![
    a_dropped_ring_drops_every_owner_though_two_drops_panic,
    a_dropped_ring_drops_every_undelivered_message_though_two_drops_panic,
];

/// A buffer whose conversion panics.
struct ExplodingBuf;

impl IntoBuf for ExplodingBuf {
    fn into_buf(self) -> Buf {
        panic!("into_buf exploded (on purpose)")
    }
}

/// An fd owner whose `as_fd` panics.
struct ExplodingFd;

impl AsFd for ExplodingFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        panic!("as_fd exploded (on purpose)")
    }
}

/// An fd owner whose drop panics (unless the thread unwinds already); the
/// fd itself still closes, as a field dropped after it.
struct LoudDrop(OwnedFd);

impl AsFd for LoudDrop {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Drop for LoudDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("an owner's drop panicked (on purpose)");
        }
    }
}

/// Calls into the ring expecting user code in it to panic.
fn panics(f: impl FnOnce()) {
    assert!(catch_unwind(AssertUnwindSafe(f)).is_err(), "it panicked");
}

/// An operation that panics in user code after naming a shared owner, and
/// before making its task, leaves nothing that the next operation takes
/// for its own or that crowds out the owner of the next: the write below
/// keeps its file open, so the number is not reused under it, and it
/// lands in its own file. (The owners were staged in two places and
/// nothing cleared them: after two such panics the write's owner was
/// dropped, the file closed under the write, and the write reached the
/// next file opened, under the same number.)
fn a_panic_between_naming_an_fd_and_making_the_task_loses_no_owner(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut ring = ring(kind, 8);
    let decoy = Rc::new(File::create(dir.path().join("decoy")).unwrap());
    for _ in 0..2 {
        panics(|| {
            ring.write(&decoy, ExplodingBuf, Offset::At(0), ctx(9));
        });
    }
    panics(|| {
        ring.splice(&decoy, None, Rc::new(ExplodingFd), None, 4, ctx(9));
    });
    let victim = Rc::new(File::create(dir.path().join("victim")).unwrap());
    let number = victim.as_raw_fd();
    ring.write(&victim, &b"mine"[..], Offset::At(0), ctx(1));
    drop(victim);
    let innocent = File::create(dir.path().join("innocent")).unwrap();
    assert_ne!(
        innocent.as_raw_fd(),
        number,
        "the write keeps its file open under its number"
    );
    let got = run_all(&mut ring);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        matches!(got[0].outcome, Outcome::Write(Ok(4), _)),
        "{got:?}"
    );
    assert_eq!(fs::read(dir.path().join("victim")).unwrap(), b"mine");
    assert_eq!(fs::read(dir.path().join("innocent")).unwrap(), b"");
    assert_eq!(
        Rc::strong_count(&decoy),
        1,
        "what the panicking calls named is let go"
    );
}

/// The owner a poll held panics as it drops (before the poll's callback,
/// which may take the file out of its own `Rc` then): the poll's
/// completion is still delivered and the cancel that waited for it told,
/// and then the panic comes out of `run`. (It cut the delivery short: the
/// poll's completion was lost and the cancel waited for ever.)
fn a_shared_owner_whose_drop_panics_cuts_no_delivery_short(kind: BackendKind) {
    let mut ring = ring(kind, 8);
    let (a, _b) = socket_pair();
    let owner = Rc::new(LoudDrop(a));
    let poll = ring.poll(&owner, PollMask::READABLE, ctx(1));
    drop(owner);
    ring.cancel(poll, ctx(2));
    let mut got = Vec::new();
    panics(|| {
        let _ = ring.run(&mut got, RunMode::UntilDone);
    });
    got.extend(run_all(&mut ring));
    let keys: Vec<u64> = got.iter().map(Completion::key).collect();
    assert_eq!(keys, [1, 2], "each completion once: {got:?}");
    assert!(
        matches!(&got[0].outcome, Outcome::Poll(Err(e)) if ouro::is_canceled(e)),
        "{got:?}"
    );
    assert!(matches!(got[1].outcome, Outcome::Cancel(Ok(()))), "{got:?}");
}

/// An accept whose listener's owner panics as it drops still delivers
/// the connection it accepted, which closes with the completion: no fd is
/// left open. (The drop came first: the accepted fd was never owned by
/// anyone, and stayed open for good.)
fn an_accepted_fd_outlives_a_panicking_drop_of_the_listeners_owner(kind: BackendKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut ring = ring(kind, 8);
    let before = open_fds();
    let owner = Rc::new(LoudDrop(listener.into()));
    ring.accept(&owner, ctx(1));
    drop(owner);
    let mut got = Vec::new();
    panics(|| {
        let _ = ring.run(&mut got, RunMode::UntilDone);
    });
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(got[0].outcome, Outcome::Accept(Ok(_))), "{got:?}");
    drop(got);
    assert_eq!(ring.live_tasks(), 0);
    assert_eq!(
        open_fds(),
        before - 1,
        "the listener closed, the accepted fd with its completion"
    );
    drop(client);
}

fn panic_in_callback(_: &mut Got, _: &mut Ring<Got>, _: Completion) -> io::Result<()> {
    panic!("a callback panicked (on purpose)")
}

/// A ring dropped with a completion reaped and not delivered (the callback
/// before it panicked) closes the fd that completion carries, before it
/// drops the operation's shared owner, whose drop panics. (The owner went
/// first: its panic left the accepted fd unowned and open.)
fn a_dropped_ring_closes_an_undelivered_accepted_fd_whatever_its_owners_drop_does(
    kind: BackendKind,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let before = open_fds();
    let mut ring = ring(kind, 8);
    let owner = Rc::new(LoudDrop(listener.into()));
    ring.noop(Ctx::new(panic_in_callback));
    ring.accept(&owner, ctx(1));
    drop(owner);
    let mut got = Vec::new();
    panics(|| {
        let _ = ring.run(&mut got, RunMode::UntilDone);
    });
    assert!(got.is_empty(), "the accept waits undelivered: {got:?}");
    panics(|| drop(ring));
    assert_eq!(
        open_fds(),
        before - 1,
        "the listener, the ring and the accepted fd closed"
    );
    drop(client);
}

/// A message value whose drop panics, even while the thread unwinds
/// (when a second panic aborts the process).
struct LoudValue;

impl Drop for LoudValue {
    fn drop(&mut self) {
        panic!("a message's drop panicked (on purpose)");
    }
}

/// An fd owner whose drop panics, even while the thread unwinds; the fd
/// closes all the same.
struct AlwaysLoud(OwnedFd);

impl AsFd for AlwaysLoud {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Drop for AlwaysLoud {
    fn drop(&mut self) {
        panic!("an owner's drop panicked (on purpose)");
    }
}

/// Drops `ring`, expecting the first panic of what it drops to come out
/// of it, and nothing to abort the process.
fn drop_panics<S>(ring: Ring<S>) {
    panics(move || drop(ring));
}

/// Two tasks not yet delivered (rejected reads) whose fds' shared owners
/// panic as they drop: the ring's drop drops both, and its first panic
/// comes out. (The owners were dropped together after the ring's own
/// drop: the second panic, during the first's unwinding, aborted the
/// process.)
fn a_dropped_ring_drops_every_owner_though_two_drops_panic(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let mut closed = Vec::new();
    for _ in 0..2 {
        let (a, b) = socket_pair();
        let owner = Rc::new(AlwaysLoud(a));
        ring.read(&owner, Vec::new(), Offset::Current, ctx(1));
        closed.push(crate::harness::peer(b));
    }
    drop_panics(ring);
    for peer in &closed {
        assert!(crate::harness::peer_closed(peer), "each owner's fd closed");
    }
}

/// Two messages taken in and not delivered, whose values panic as they
/// drop: the ring's drop drops both. (They were dropped in one piece: the
/// second panic aborted the process.)
fn a_dropped_ring_drops_every_undelivered_message_though_two_drops_panic(kind: BackendKind) {
    let mut ring: Ring<Got> = ring(kind, 8);
    let handle = ring.handle().unwrap();
    for _ in 0..2 {
        handle
            .send(ctx(1), ouro::Payload::value(LoudValue))
            .unwrap();
    }
    drop_panics(ring);
}

/// A state whose callback swaps the ring it is given for another.
struct Swapper {
    other: Option<Ring<Swapper>>,
    got: Vec<(u64, String)>,
}

fn swap_rings(swapper: &mut Swapper, ring: &mut Ring<Swapper>, c: Completion) -> io::Result<()> {
    swapper.got.push((c.key(), format!("{:?}", c.outcome)));
    if let Some(other) = swapper.other.as_mut() {
        std::mem::swap(ring, other);
    }
    Ok(())
}

/// A callback may swap the ring it was given for another (`mem::swap`):
/// the cancel that waited for its task stays with its own ring and is
/// told when that ring runs next, once. (The ring looked for the cancel
/// on the ring swapped in, and panicked on an index out of range.)
fn a_callback_that_swaps_the_ring_loses_no_cancel(kind: BackendKind) {
    let mut first = ring(kind, 8);
    let mut swapper = Swapper {
        other: Some(ring(kind, 8)),
        got: Vec::new(),
    };
    let swap = Ctx::new(swap_rings);
    let timer = first.timer(Duration::from_secs(60), swap.key(1));
    first.cancel(timer, swap.key(2));
    first.run(&mut swapper, RunMode::UntilDone).unwrap();
    assert_eq!(swapper.got.len(), 1, "{:?}", swapper.got);
    // `first` is the other ring now, and the other holds the first ring.
    let mut home = swapper.other.take().unwrap();
    home.run(&mut swapper, RunMode::UntilDone).unwrap();
    let keys: Vec<u64> = swapper.got.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, [1, 2], "each completion once: {:?}", swapper.got);
    assert!(swapper.got[1].1.contains("Cancel(Ok"), "{:?}", swapper.got);
    assert_eq!((home.live_tasks(), first.live_tasks()), (0, 0));
}

/// A timer's callback that swaps the ring for another leaves the other's
/// timers to the other's own clock: none fires before it is due. (The
/// turn went on taking the swapped-in ring's timers against the first
/// ring's clock, 50 s ahead here: they fired at once.)
#[test]
fn a_callback_that_swaps_the_ring_fires_none_of_the_others_timers_early() {
    let mut first: Ring<Swapper> = Ring::mock(ouro::mock::Mock::new());
    let mut second: Ring<Swapper> = Ring::mock(ouro::mock::Mock::new());
    let second_made = second.now();
    let later = second.timer(Duration::from_secs(50), Ctx::new(swap_rings).key(2));
    first.timer(Duration::from_secs(100), Ctx::new(swap_rings).key(1));
    let mut swapper = Swapper {
        other: Some(second),
        got: Vec::new(),
    };
    first.run(&mut swapper, RunMode::Once).unwrap();
    assert_eq!(
        swapper.got.len(),
        1,
        "only the first ring's timer: {:?}",
        swapper.got
    );
    // `first` holds the second ring now.
    assert!(first.is_live(later), "its timer waits for its own clock");
    swapper.other = None;
    first.run(&mut swapper, RunMode::UntilDone).unwrap();
    assert_eq!(swapper.got.len(), 2, "{:?}", swapper.got);
    assert!(first.now() >= second_made + Duration::from_secs(50));
}
