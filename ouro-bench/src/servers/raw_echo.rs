//! `raw`: the echo server written directly on the `io-uring` crate, as a
//! careful programmer would without a runtime — the practical limit for
//! ouro's echo server, which does the same work:
//!
//! - one multishot accept straight into the ring's fixed file table
//!   (`IORING_FILE_INDEX_ALLOC`; the connections are used by slot, so the
//!   kernel looks no fd up per operation, and closed by slot), as ouro's
//!   ring fds are; per connection one multishot receive into a provided
//!   buffer ring of 1024 buffers of 4 KiB (an idle connection holds none),
//!   on raw's fixed ring setup, the one ouro takes on Linux 6.1 and later
//!   (`crate::raw::ring`);
//! - each received buffer is sent back as it is (no copy), one send at a
//!   time per connection, in order, and given back to the kernel's ring when
//!   its send is done;
//! - a connection with 16 buffers waiting is paused (its receive cancelled,
//!   re-armed when half are sent); a receive that finds no buffer
//!   (`ENOBUFS`) is re-armed when a send gives one back; a failed send ends
//!   the receive (cancelled) and the connection.
//!
//! One `io_uring_enter` per turn (submit and wait), then every completion
//! is handled, pushing new submissions straight into the queue.

use std::alloc::{self, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd, Fixed};
use io_uring::{cqueue, opcode, squeue, IoUring, SubmissionQueue, Submitter};
use slab::Slab;

const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 4096;
const GROUP: u16 = 0;
const MAX_QUEUED: usize = 16;
const PAGE: usize = 4096;

/// `user_data`: what the submission was, in the top byte, and the
/// connection's key below.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;
const CANCEL: u64 = 4 << 56;
const CLOSE: u64 = 5 << 56;
const KIND: u64 = 0xff << 56;

/// Serves echo on `listener` until the process ends.
pub fn serve(listener: OwnedFd) -> io::Result<()> {
    let mut ring = crate::raw::ring(256)?;
    // As many slots as the process may have files open, as ouro sizes its
    // table (the kernel allows no more).
    ring.submitter().register_files_sparse(fixed_table_size())?;
    // Accepted sockets inherit it: they have no fd to set it on.
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    let buffers = BufferRing::register(&ring)?;
    let mut server = Server {
        listener,
        buffers,
        conns: Slab::new(),
        starved: Vec::new(),
    };
    {
        let (submitter, mut sq, _) = ring.split();
        server.accept(&mut Queue {
            submitter: &submitter,
            sq: &mut sq,
        })?;
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        let (submitter, mut sq, mut cq) = ring.split();
        let mut queue = Queue {
            submitter: &submitter,
            sq: &mut sq,
        };
        for cqe in &mut cq {
            server.handle(&mut queue, cqe.user_data(), cqe.result(), cqe.flags())?;
        }
    }
}

/// The submission queue, and what flushes it when full.
struct Queue<'a, 'b> {
    submitter: &'a Submitter<'a>,
    sq: &'a mut SubmissionQueue<'b>,
}

impl Queue<'_, '_> {
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in the entries pushed here points into
            // the buffer ring's memory, which lives as long as the process.
            if unsafe { self.sq.push(&entry) }.is_ok() {
                return Ok(());
            }
            self.sq.sync();
            match self.submitter.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            self.sq.sync();
        }
    }
}

/// A received piece of a connection's stream, still to be echoed: bytes
/// `start..end` of buffer `bid`.
struct Piece {
    bid: u16,
    start: u32,
    end: u32,
}

struct Conn {
    /// The connection's slot in the fixed file table.
    slot: u32,
    queue: VecDeque<Piece>,
    sending: bool,
    receiving: bool,
    paused: bool,
    peer_done: bool,
}

struct Server {
    listener: OwnedFd,
    buffers: BufferRing,
    conns: Slab<Conn>,
    starved: Vec<usize>,
}

impl Server {
    fn accept(&mut self, queue: &mut Queue) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd()))
            .allocate_file_index(true)
            .build()
            .user_data(ACCEPT);
        queue.push(entry)
    }

    fn receive(&mut self, queue: &mut Queue, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if conn.receiving || conn.paused || conn.peer_done {
            return Ok(());
        }
        conn.receiving = true;
        let entry = opcode::RecvMulti::new(Fixed(conn.slot), GROUP)
            .build()
            .user_data(RECV | key as u64);
        queue.push(entry)
    }

    fn handle(
        &mut self,
        queue: &mut Queue,
        user_data: u64,
        res: i32,
        flags: u32,
    ) -> io::Result<()> {
        let key = (user_data & !KIND) as usize;
        match user_data & KIND {
            ACCEPT => self.accepted(queue, res, flags),
            RECV => self.received(queue, key, res, flags),
            SEND => self.sent(queue, key, res),
            _ => Ok(()),
        }
    }

    fn accepted(&mut self, queue: &mut Queue, res: i32, flags: u32) -> io::Result<()> {
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        let key = self.conns.insert(Conn {
            slot: res as u32,
            queue: VecDeque::new(),
            sending: false,
            receiving: false,
            paused: false,
            peer_done: false,
        });
        self.receive(queue, key)?;
        if !cqueue::more(flags) {
            self.accept(queue)?;
        }
        Ok(())
    }

    fn received(&mut self, queue: &mut Queue, key: usize, res: i32, flags: u32) -> io::Result<()> {
        let conn = &mut self.conns[key];
        let more = cqueue::more(flags);
        if !more {
            conn.receiving = false;
        }
        let resumable = match res {
            n if n > 0 => {
                let bid = cqueue::buffer_select(flags)
                    .ok_or_else(|| io::Error::other("a receive without a buffer"))?;
                conn.queue.push_back(Piece {
                    bid,
                    start: 0,
                    end: n as u32,
                });
                true
            }
            0 => {
                conn.peer_done = true;
                false
            }
            e if -e == libc::ENOBUFS => {
                self.starved.push(key);
                false
            }
            e if -e == libc::ECANCELED => true,
            _ => {
                conn.peer_done = true;
                false
            }
        };
        if conn.queue.len() >= MAX_QUEUED && !conn.paused {
            conn.paused = true;
            if conn.receiving {
                cancel_receive(queue, key)?;
            }
        }
        if !more && resumable {
            self.receive(queue, key)?;
        }
        self.send_next(queue, key)
    }

    fn sent(&mut self, queue: &mut Queue, key: usize, res: i32) -> io::Result<()> {
        let conn = &mut self.conns[key];
        conn.sending = false;
        if res < 0 {
            for piece in conn.queue.drain(..) {
                self.buffers.give_back(piece.bid);
            }
            conn.peer_done = true;
            if conn.receiving {
                cancel_receive(queue, key)?;
            }
            return self.send_next(queue, key);
        }
        let front = conn.queue.front_mut().expect("the piece in flight");
        front.start += res as u32;
        if front.start == front.end {
            let bid = front.bid;
            conn.queue.pop_front();
            self.buffers.give_back(bid);
            if let Some(starved) = self.starved.pop() {
                self.receive(queue, starved)?;
            }
        }
        let conn = &mut self.conns[key];
        if conn.paused && conn.queue.len() <= MAX_QUEUED / 2 {
            conn.paused = false;
            self.receive(queue, key)?;
        }
        self.send_next(queue, key)
    }

    fn send_next(&mut self, queue: &mut Queue, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        if conn.sending {
            return Ok(());
        }
        if let Some(piece) = conn.queue.front() {
            conn.sending = true;
            let start = self
                .buffers
                .address(piece.bid)
                .wrapping_add(piece.start as usize);
            let entry = opcode::Send::new(Fixed(conn.slot), start, piece.end - piece.start)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(SEND | key as u64);
            return queue.push(entry);
        }
        if conn.peer_done && !conn.receiving {
            let conn = self.conns.remove(key);
            let close = opcode::Close::new(Fixed(conn.slot))
                .build()
                .user_data(CLOSE);
            return queue.push(close);
        }
        Ok(())
    }
}

fn cancel_receive(queue: &mut Queue, key: usize) -> io::Result<()> {
    let cancel = opcode::AsyncCancel::new(RECV | key as u64)
        .build()
        .user_data(CANCEL);
    queue.push(cancel)
}

/// The fixed table's size: the open-file limit, up to 65536, as ouro's.
fn fixed_table_size() -> u32 {
    // SAFETY: getrlimit writes into the struct we pass.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    u32::try_from(limit.rlim_cur)
        .unwrap_or(u32::MAX)
        .min(1 << 16)
}

/// The provided buffer ring: `BUFFERS` entries shared with the kernel, and
/// the buffers they point to.
struct BufferRing {
    entries: NonNull<BufRingEntry>,
    memory: NonNull<u8>,
    tail: u16,
}

impl BufferRing {
    fn register(ring: &IoUring) -> io::Result<BufferRing> {
        let entries = Layout::from_size_align(BUFFERS as usize * 16, PAGE).expect("valid");
        let memory = Layout::from_size_align(BUFFERS as usize * BUFFER_SIZE, PAGE).expect("valid");
        // SAFETY: both layouts have a non-zero size. The memory is never
        // freed: the server runs until the process ends.
        let (entries, memory) = unsafe { (alloc::alloc_zeroed(entries), alloc::alloc(memory)) };
        let entries = NonNull::new(entries.cast()).ok_or_else(|| io::Error::other("no memory"))?;
        let memory = NonNull::new(memory).ok_or_else(|| io::Error::other("no memory"))?;
        let mut buffers = BufferRing {
            entries,
            memory,
            tail: 0,
        };
        for bid in 0..BUFFERS {
            buffers.give_back(bid);
        }
        // SAFETY: the entries are page aligned, `BUFFERS` long, and live as
        // long as the process.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                BUFFERS,
                GROUP,
                0,
            )
        }?;
        Ok(buffers)
    }

    fn address(&self, bid: u16) -> *const u8 {
        self.memory
            .as_ptr()
            .wrapping_add(bid as usize * BUFFER_SIZE)
    }

    /// Puts buffer `bid` back in the ring for the kernel to fill.
    fn give_back(&mut self, bid: u16) {
        let index = (self.tail & (BUFFERS - 1)) as usize;
        // SAFETY: `index < BUFFERS`; the entry at the tail is not the
        // kernel's (it reads only between its head and our tail, and at most
        // `BUFFERS` buffers are ever in the ring). The tail field shares entry
        // 0 and is written only below, atomically.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(index);
            entry.set_addr(self.address(bid) as u64);
            entry.set_len(BUFFER_SIZE as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field of the first entry, which the kernel reads
        // atomically.
        let tail =
            unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.entries.as_ptr()) as *mut u16) };
        tail.store(self.tail, Ordering::Release);
    }
}
