//! Dropping a ring is sound whatever user code does meanwhile: a buffer
//! whose drop panics, or a callback that panicked, cannot make the drop
//! free memory that the kernel or a pool thread still writes into.
//!
//! The reads' buffers here lend chunks of one long-lived block (an
//! "arena"); dropping a buffer zeroes the head of its chunk, as a fresh
//! allocation reusing that memory would. After the ring is dropped every
//! head must be zero and stay zero: file data showing up in one means a
//! read went on after its buffer was gone. (Only the head: zeroing whole
//! chunks would take long enough for the reads to finish meanwhile.)

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ouro::{BackendKind, Completion, Ctx, IoBuf, IoBufMut, Offset, Ring, RunMode};

use crate::harness::unchecked;
use crate::harness::{pipe, pipes_with_data, ring, temp_file};

backend_tests![
    a_panicking_buffer_drop_does_not_cut_the_drain_short,
    a_callback_panic_then_a_panicking_drop_does_not_cut_the_drain_short,
    a_ring_dropped_while_unwinding_keeps_a_panicking_drop_in,
];

/// Bytes per file read (each read into its own chunk of the arena).
const CHUNK: usize = 2 << 20;
/// File reads in flight when the ring is dropped.
const READS: usize = 16;
/// What the file holds; chunks of dropped buffers start with zeros.
const FILE_BYTE: u8 = 0xA5;
/// How much of its chunk a dropped buffer zeroes.
const HEAD: usize = 4096;
/// The message of a buffer's panicking drop.
const BOOM: &str = "a buffer's drop panics (on purpose)";

/// One block of memory that outlives the ring, lent out in chunks.
struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    fn new(len: usize) -> Arena {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: the layout is not zero-sized.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocating the arena");
        Arena { ptr, layout }
    }

    /// Chunk `i` as a read buffer; `drops` counts its drop.
    fn lend(&self, i: usize, drops: &Rc<Cell<u32>>) -> Lent {
        assert!((i + 1) * CHUNK <= self.layout.size());
        Lent {
            // SAFETY: within the arena (checked above).
            ptr: unsafe { self.ptr.add(i * CHUNK) },
            len: CHUNK,
            filled: 0,
            drops: drops.clone(),
        }
    }

    /// The first byte of a chunk's head that is not zero (read through a
    /// volatile load: a buggy ring lets the kernel write here behind our
    /// back).
    fn dirty(&self) -> Option<usize> {
        let heads = (0..self.layout.size()).step_by(CHUNK);
        heads.flat_map(|chunk| chunk..chunk + HEAD).find(|&at| {
            // SAFETY: within the arena, which is allocated and initialised.
            unsafe { self.ptr.add(at).read_volatile() != 0 }
        })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// A read buffer over a chunk of an [`Arena`]. Dropping it hands the chunk
/// back, its head zeroed, as an allocator reusing freed memory would.
struct Lent {
    ptr: *mut u8,
    len: usize,
    filled: usize,
    drops: Rc<Cell<u32>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        // SAFETY: the chunk is within the arena, which outlives every Lent.
        unsafe { self.ptr.write_bytes(0, HEAD.min(self.len)) };
        self.drops.set(self.drops.get() + 1);
    }
}

// SAFETY: the chunk stays at its address while the Lent lives (the arena
// outlives it) and nothing else writes it meanwhile.
unsafe impl IoBuf for Lent {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.filled
    }
}

// SAFETY: the bytes past `filled` are the chunk's writable spare room.
unsafe impl IoBufMut for Lent {
    fn spare_ptr(&mut self) -> *mut u8 {
        // SAFETY: `filled <= len`: within the chunk.
        unsafe { self.ptr.add(self.filled) }
    }
    fn spare_len(&self) -> usize {
        self.len - self.filled
    }
    unsafe fn advance(&mut self, n: usize) {
        self.filled += n;
    }
}

/// A read buffer whose drop panics (unless the thread is unwinding
/// already and `always` is not set: a panic out of a drop during unwinding
/// aborts).
struct Bomb {
    data: Vec<u8>,
    drops: Rc<Cell<u32>>,
    always: bool,
}

impl Bomb {
    fn new(drops: &Rc<Cell<u32>>) -> Bomb {
        Bomb {
            data: Vec::with_capacity(16),
            drops: drops.clone(),
            always: false,
        }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        if self.always || !std::thread::panicking() {
            panic!("{BOOM}");
        }
    }
}

// SAFETY: delegates to the Vec, whose heap block does not move with it.
unsafe impl IoBuf for Bomb {
    fn stable_ptr(&self) -> *const u8 {
        self.data.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.data.len()
    }
}

// SAFETY: delegates to the Vec's spare capacity.
unsafe impl IoBufMut for Bomb {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.data.spare_ptr()
    }
    fn spare_len(&self) -> usize {
        self.data.spare_len()
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.data.advance(n) }
    }
}

/// A file of `READS` chunks of `FILE_BYTE` whose reads take the disk, so
/// that they are in flight for a while and cannot be stopped once under
/// way. On io_uring it is opened `O_DIRECT`: the device writes straight
/// into the buffers. On the readiness backend its pages are dropped from
/// the cache, so reads go to pool threads.
fn big_file(kind: BackendKind) -> File {
    let file = temp_file(&vec![FILE_BYTE; READS * CHUNK]);
    // Only clean pages leave the cache.
    file.sync_all().expect("syncing the temporary file");
    // SAFETY: an advice on a valid fd; it touches no memory of ours.
    let res = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(
        res,
        0,
        "posix_fadvise: {}",
        io::Error::from_raw_os_error(res)
    );
    if kind != BackendKind::Uring {
        return file;
    }
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("reopening the temporary file O_DIRECT")
}

/// Counts file reads delivered; the ring is stopped at the first.
fn first_read(done: &mut u32, ring: &mut Ring<u32>, _: Completion) -> io::Result<()> {
    *done += 1;
    ring.stop();
    Ok(())
}

fn panic_always(_: &mut u32, _: &mut Ring<u32>, c: Completion) -> io::Result<()> {
    panic!("the callback for {} panics (on purpose)", c.key());
}

/// Drops `ring` and returns the panic that came out of it.
fn drop_and_catch(ring: Ring<u32>) -> String {
    let panic = catch_unwind(AssertUnwindSafe(move || drop(ring)))
        .expect_err("the buffer's panic comes out of the ring's drop");
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Every chunk was handed back (each buffer dropped once) and none is
/// written afterwards. The wait only gives a buggy ring's late writes time
/// to land; a correct ring has none in flight when its drop returns.
fn assert_arena_untouched(arena: &Arena, lent: &[Rc<Cell<u32>>]) {
    for (i, drops) in lent.iter().enumerate() {
        assert_eq!(drops.get(), 1, "buffer {i} dropped {} times", drops.get());
    }
    let until = Instant::now() + Duration::from_millis(200);
    loop {
        if let Some(at) = arena.dirty() {
            panic!(
                "byte {at} (chunk {}) of a dropped buffer was written after the ring's drop",
                at / CHUNK
            );
        }
        if Instant::now() > until {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads of a big file in flight (on the readiness backend, one after
/// another on pool threads; a pool thread cannot be stopped mid-read) and
/// reads whose buffers panic when dropped: dropping the ring cancels and
/// waits for every read, drops every buffer once, and only then lets the
/// first panic out.
fn a_panicking_buffer_drop_does_not_cut_the_drain_short(kind: BackendKind) {
    let file = big_file(kind);
    let arena = Arena::new(READS * CHUNK);
    let lent: Vec<_> = (0..READS).map(|_| Rc::new(Cell::new(0))).collect();
    let bombs = Rc::new(Cell::new(0));
    let pipes: Vec<_> = (0..4).map(|_| pipe()).collect();
    let mut ring: Ring<u32> = ring(kind, 64);
    for (i, drops) in lent.iter().enumerate() {
        let at = Offset::At((i * CHUNK) as u64);
        ring.read(
            unchecked(&file),
            arena.lend(i, drops),
            at,
            Ctx::new(first_read),
        );
    }
    // Nothing to read: cancelled by the drop, which then drops the buffers.
    for (reader, _) in &pipes {
        let buf = Bomb::new(&bombs);
        ring.read(unchecked(reader), buf, Offset::Current, Ctx::none());
    }
    let mut done = 0;
    ring.run(&mut done, RunMode::Forever).unwrap();
    assert!(done >= 1);
    assert_eq!(drop_and_catch(ring), BOOM, "the first panic comes out");
    assert_eq!(
        bombs.get(),
        pipes.len() as u32,
        "each panicking buffer dropped once"
    );
    assert_arena_untouched(&arena, &lent);
}

/// A callback panics with completions of its batch undelivered (reads
/// whose buffers panic when dropped) and the file's reads in flight: the
/// ring's drop still waits for every read before it lets a panic out.
fn a_callback_panic_then_a_panicking_drop_does_not_cut_the_drain_short(kind: BackendKind) {
    let file = big_file(kind);
    let arena = Arena::new(READS * CHUNK);
    let lent: Vec<_> = (0..READS).map(|_| Rc::new(Cell::new(0))).collect();
    let bombs = Rc::new(Cell::new(0));
    let pipes = pipes_with_data(4);
    let mut ring: Ring<u32> = ring(kind, 64);
    for (i, drops) in lent.iter().enumerate() {
        let at = Offset::At((i * CHUNK) as u64);
        ring.read(unchecked(&file), arena.lend(i, drops), at, Ctx::none());
    }
    // All finish at once, in the turn that starts the file's reads.
    let (first, rest) = pipes.split_first().unwrap();
    ring.read(
        unchecked(&first.0),
        Vec::with_capacity(16),
        Offset::Current,
        Ctx::new(panic_always),
    );
    for (reader, _) in rest {
        let buf = Bomb::new(&bombs);
        ring.read(unchecked(reader), buf, Offset::Current, Ctx::none());
    }
    let ran = catch_unwind(AssertUnwindSafe(|| ring.run(&mut 0, RunMode::UntilDone)));
    assert!(ran.is_err(), "the callback's panic goes through run");
    assert_eq!(drop_and_catch(ring), BOOM, "the first panic comes out");
    assert_eq!(
        bombs.get(),
        rest.len() as u32,
        "each panicking buffer dropped once"
    );
    assert_arena_untouched(&arena, &lent);
}

/// A ring dropped while its thread unwinds from another panic, with reads
/// whose buffers' drops panic all the same: the ring catches those (a
/// second panic out of a drop would abort the process), drops every buffer
/// once, and the first panic goes on unwinding.
fn a_ring_dropped_while_unwinding_keeps_a_panicking_drop_in(kind: BackendKind) {
    let bombs = Rc::new(Cell::new(0));
    let pipes: Vec<_> = (0..3).map(|_| pipe()).collect();
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let mut ring: Ring<u32> = ring(kind, 8);
        for (reader, _) in &pipes {
            let mut buf = Bomb::new(&bombs);
            buf.always = true;
            ring.read(unchecked(reader), buf, Offset::Current, Ctx::none());
        }
        ring.run(&mut 0, RunMode::NoWait).unwrap();
        panic!("the first panic");
    }));
    let panic = unwound.expect_err("the first panic comes out");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"the first panic"));
    assert_eq!(bombs.get(), pipes.len() as u32, "each buffer dropped once");
}
