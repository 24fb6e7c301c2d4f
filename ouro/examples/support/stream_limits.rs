//! What a stream server may hold and how it keeps count: its [`Limits`],
//! the [`Held`] figures it publishes for the tests, the pool of spare
//! vectors that lets an idle connection hold no buffer (see
//! `stream_server.rs`), and which connection goes when the server holds
//! too much.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use ouro::Ring;

use super::{Protocol, Server};

/// How much a server may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Unsent answers past which a connection answers no more requests and
    /// stops receiving until its peer has read half of them.
    pub output_per_conn: usize,
    /// Unsent answers across connections past which each connection's
    /// budget shrinks to [`OUTPUT_FLOOR`] (one request at a time for a
    /// peer that reads, none more for one that does not). Past twice it
    /// (each connection may hold one answer past its budget, and answers
    /// can be large), the connection whose answers have waited longest
    /// for its peer to read is closed.
    pub output_total: usize,
    /// Input held across connections (unfinished requests and requests
    /// not yet answered, counted by vector capacity) past which the
    /// connection holding the most gets the protocol's error and is closed.
    pub input_total: usize,
    /// Bytes of spare vectors kept for reuse.
    pub spares: usize,
    /// How long a request may take to arrive whole once it has begun; past
    /// it the connection is closed (slowloris, and peers that vanish
    /// mid-request without the server hearing of it).
    pub request_timeout: Duration,
    /// How long a peer may leave the answers unread (no byte of the send
    /// in flight taken); past it the connection is closed and its answers
    /// dropped.
    pub send_timeout: Duration,
    /// Where the server publishes what it holds, if anywhere.
    pub held: Option<Arc<Held>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            output_per_conn: 256 * 1024,
            output_total: 64 << 20,
            input_total: 64 << 20,
            spares: 4 << 20,
            request_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            held: None,
        }
    }
}

/// What a server holds, as it counts it when enforcing its [`Limits`],
/// published after every completion it handles.
#[derive(Debug, Default)]
pub struct Held {
    /// Bytes of input held across connections (vector capacity).
    pub input: AtomicUsize,
    /// Bytes of answers held across connections (vector capacity).
    pub output: AtomicUsize,
    /// Bytes of spare vectors in the pool (capacity).
    pub spares: AtomicUsize,
    /// The most `input` has been.
    pub most_input: AtomicUsize,
    /// The most `output` has been.
    pub most_output: AtomicUsize,
    /// The most unsent answers (bytes) one connection has had.
    pub most_unsent: AtomicUsize,
    /// Bytes of input the protocol has parsed over
    /// (`Protocol::examined`).
    pub examined: AtomicU64,
}

/// A connection's budget of unsent answers while the server holds more
/// than `Limits::output_total`: a peer that reads still gets its answers.
pub const OUTPUT_FLOOR: usize = 4096;

/// Spare vectors kept for reuse at most, and the largest capacity kept.
const SPARES: usize = 1024;
const SPARE_CAPACITY: usize = 64 * 1024;

/// Returns the allocator's free memory to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointer and only releases memory that
    // no allocation uses.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators return memory by themselves, or cannot be asked to.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

/// Emptied vectors kept for reuse, up to a total capacity.
pub struct Spares {
    vecs: Vec<Vec<u8>>,
    /// Their total capacity.
    bytes: usize,
    limit: usize,
}

impl Spares {
    /// An empty pool that keeps up to `limit` bytes of capacity.
    pub fn new(limit: usize) -> Spares {
        Spares {
            vecs: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// The kept vectors' total capacity.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A kept vector, or a new one (without capacity).
    pub fn take(&mut self) -> Vec<u8> {
        let vec = self.vecs.pop().unwrap_or_default();
        self.bytes -= vec.capacity();
        vec
    }

    /// Keeps an emptied vector for reuse, unless it is big or enough are
    /// kept (then it is freed).
    pub fn give(&mut self, mut vec: Vec<u8>) {
        let capacity = vec.capacity();
        let fits = self.bytes + capacity <= self.limit && self.vecs.len() < SPARES;
        if capacity > 0 && capacity <= SPARE_CAPACITY && fits {
            vec.clear();
            self.bytes += capacity;
            self.vecs.push(vec);
        }
    }
}

/// How long answers must have gone unread before the server, holding too
/// many, may cut their connection.
const STALLED: Duration = Duration::from_millis(500);

/// The limits across connections: which connection goes when the server
/// holds too much.
impl<P: Protocol> Server<P> {
    /// Past the limit on input held across connections, the connection
    /// holding the most gets the protocol's error and is closed, until the
    /// rest is under the limit.
    pub(super) fn enforce_input_limit(&mut self, ring: &mut Ring<Self>) {
        while self.input > self.limits.input_total {
            let most = self.conns.iter().max_by_key(|(_, conn)| conn.counted.0);
            let Some((key, _)) = most.filter(|(_, conn)| conn.counted.0 > 0) else {
                return;
            };
            let conn = &mut self.conns[key];
            self.protocol.too_large(&mut conn.output);
            conn.closing = true;
            self.settle(ring, key);
        }
    }

    /// Past twice the limit on answers held across connections (each
    /// connection may still hold one answer past its budget, and answers
    /// can be large), connections whose answers have gone unread for
    /// `STALLED` are cut, stalest first, until the rest is under it. A peer
    /// that reads is spared: its send progresses.
    pub(super) fn enforce_output_limit(&mut self, ring: &mut Ring<Self>) {
        let limit = self.limits.output_total.saturating_mul(2);
        if self.output <= limit {
            return;
        }
        // Connections cut already hold their answers until their cancelled
        // sends come back: that memory is on its way out.
        let cutting: usize = (self.conns.iter())
            .filter(|(_, conn)| conn.sending.is_some_and(|s| s.cut))
            .map(|(_, conn)| conn.counted.1)
            .sum();
        let mut over = (self.output.saturating_sub(cutting)).saturating_sub(limit);
        while over > 0 {
            let stalest = (self.conns.iter())
                .filter_map(|(key, conn)| {
                    let sending = conn.sending.filter(|s| !s.cut)?;
                    let stalled = self.now - sending.progressed >= STALLED;
                    stalled.then_some((key, sending.progressed, conn.counted.1))
                })
                .min_by_key(|&(_, progressed, _)| progressed);
            let Some((key, _, held)) = stalest else {
                return;
            };
            over = over.saturating_sub(held);
            self.cut(ring, key);
        }
    }
}
