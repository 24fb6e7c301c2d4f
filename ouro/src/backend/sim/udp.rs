//! The simulated network's UDP: datagram sockets between addresses of one
//! world. A datagram keeps its boundaries, arrives once, twice or not at
//! all, after its sender's earlier ones unless reordered; a connected
//! socket takes datagrams from its peer only, and a datagram to a port
//! nothing is bound to makes the next operation of a connected sender fail
//! with `ECONNREFUSED`, as the kernel's ICMP "port unreachable" does.
//! Datagrams across a path a partition cuts are dropped, and spoofed ones
//! (see `spoof.rs`) arrive from sources that sent nothing. `sendmsg` and
//! `recvmsg` gather and scatter one datagram; `shutdown` works as the
//! kernel's does for io_uring: shut for writing, sends fail with `EPIPE`;
//! shut for reading, receives go on as before (the kernel ends only a
//! blocking receive, and io_uring's are not); an unconnected socket is
//! shut all the same but says `ENOTCONN`.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::faults::{Fault, Stream};
use super::net::{this_host_if_unspecified, Reply};
use super::world::{State, What};
use crate::op::{MsgBuf, Op};

/// The most payload bytes a socket queues (the kernel's default receive
/// buffer); datagrams beyond it are dropped, as the kernel drops them.
const QUEUE_MOST: usize = 212_992;

/// The largest UDP payload over IPv4 and over IPv6.
const PAYLOAD_MOST_V4: usize = 65_507;
const PAYLOAD_MOST_V6: usize = 65_527;

/// Spare payload buffers kept for reuse, at most.
const SPARE_MOST: usize = 1024;

/// The address an unbound or wildcard-bound socket sends from.
const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// A receive waiting for a datagram, and where it writes.
struct Waiting {
    node: u32,
    user_data: u64,
    /// Where the datagram goes; null for a `recvmsg`, which scatters it
    /// over its header's iovecs.
    ptr: *mut u8,
    room: usize,
    /// A `recv_from`'s or `recvmsg`'s header, which gets the sender and `MSG_TRUNC`;
    /// null for a `recv`.
    msg: *mut MsgBuf,
}

pub(crate) struct Packet {
    pub(crate) from: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// A datagram on its way.
pub(crate) struct Flight {
    /// The socket that sent it; `None` for a spoofed one.
    pub(crate) sender: Option<usize>,
    pub(crate) to: SocketAddr,
    pub(crate) packet: Packet,
}

#[derive(Default)]
struct Endpoint {
    v6: bool,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    queue: VecDeque<Packet>,
    queued: usize,
    /// An ICMP error not yet reported.
    error: Option<i32>,
    /// When the sender's last datagram arrives: datagrams keep order.
    arrival: u64,
    waiting: VecDeque<Waiting>,
    closed: bool,
    write_shut: bool,
}

/// The world's UDP sockets, by the network's socket number.
#[derive(Default)]
pub(crate) struct Udp {
    endpoints: Vec<Option<Endpoint>>,
    bound: BTreeMap<SocketAddr, usize>,
    flights: Vec<Option<Flight>>,
    free_flights: Vec<usize>,
    spare: Vec<Vec<u8>>,
    next_port: u16,
    /// A `sendmsg`'s buffers gathered, kept for the next one.
    gathered: Vec<u8>,
}

impl Udp {
    /// Makes socket `sock` a UDP socket.
    pub(crate) fn open(&mut self, sock: usize, v6: bool) {
        if sock >= self.endpoints.len() {
            self.endpoints.resize_with(sock + 1, || None);
        }
        self.endpoints[sock] = Some(Endpoint {
            v6,
            ..Endpoint::default()
        });
    }

    /// Whether socket `sock` is a UDP socket.
    pub(crate) fn is_datagram(&self, sock: usize) -> bool {
        matches!(self.endpoints.get(sock), Some(Some(_)))
    }

    fn endpoint(&mut self, sock: usize) -> &mut Endpoint {
        self.endpoints[sock]
            .as_mut()
            .expect("a UDP socket's endpoint")
    }

    /// Takes the waiting receive `user_data` of `node` off its socket.
    pub(crate) fn unpark(&mut self, node: u32, user_data: u64) -> bool {
        for endpoint in self.endpoints.iter_mut().flatten() {
            let found = endpoint
                .waiting
                .iter()
                .position(|w| w.node == node && w.user_data == user_data);
            if let Some(i) = found {
                endpoint.waiting.remove(i);
                return true;
            }
        }
        false
    }

    /// Whether a receive of `node` waits on a UDP socket.
    pub(crate) fn has_parked(&self, node: u32) -> bool {
        self.endpoints
            .iter()
            .flatten()
            .any(|e| e.waiting.iter().any(|w| w.node == node))
    }

    fn taken(&self, addr: SocketAddr) -> bool {
        self.bound.keys().any(|a| {
            a.port() == addr.port()
                && (a.ip() == addr.ip() || a.ip().is_unspecified() || addr.ip().is_unspecified())
        })
    }

    /// A free port on `ip`.
    fn ephemeral(&mut self, ip: IpAddr) -> Option<SocketAddr> {
        for _ in 0..20_000 {
            self.next_port = self.next_port.wrapping_add(1);
            let addr = SocketAddr::new(ip, 40_000 + self.next_port % 20_000);
            if !self.taken(addr) {
                return Some(addr);
            }
        }
        None
    }

    /// The socket a datagram to `to` is for: one bound to it, else one
    /// bound to the wildcard of its port (IPv6's also takes IPv4).
    fn receiver(&self, to: SocketAddr) -> Option<usize> {
        let wildcard = |ip: IpAddr| SocketAddr::new(ip, to.port());
        let v4_any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let v6_any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let family_any = if to.is_ipv4() { v4_any } else { v6_any };
        self.bound
            .get(&to)
            .or_else(|| self.bound.get(&wildcard(family_any)))
            .or_else(|| to.is_ipv4().then(|| self.bound.get(&wildcard(v6_any)))?)
            .copied()
    }

    fn bind_to(&mut self, sock: usize, addr: SocketAddr) -> i32 {
        let endpoint = self.endpoint(sock);
        if endpoint.local.is_some() {
            return -libc::EINVAL;
        }
        if !endpoint.v6 && addr.is_ipv6() {
            return -libc::EAFNOSUPPORT;
        }
        if endpoint.v6 && addr.is_ipv4() {
            return -libc::EINVAL;
        }
        let addr = if addr.port() == 0 {
            match self.ephemeral(addr.ip()) {
                Some(addr) => addr,
                None => return -libc::EADDRINUSE,
            }
        } else if self.taken(addr) {
            return -libc::EADDRINUSE;
        } else {
            addr
        };
        self.bound.insert(addr, sock);
        self.endpoint(sock).local = Some(addr);
        0
    }

    /// Binds an unbound socket to an ephemeral port of the wildcard
    /// address, as the kernel does on its first send or connect.
    fn autobind(&mut self, sock: usize) -> i32 {
        let endpoint = self.endpoint(sock);
        if endpoint.local.is_some() {
            return 0;
        }
        let any = if endpoint.v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        self.bind_to(sock, SocketAddr::new(any, 0))
    }

    pub(crate) fn buffer(&mut self, data: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.extend_from_slice(data);
        buf
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_MOST {
            buf.clear();
            self.spare.push(buf);
        }
    }
}

/// Carries out `op` on UDP socket `sock` for `node`.
pub(super) fn carry_out(
    state: &mut State,
    node: u32,
    user_data: u64,
    op: &mut Op,
    sock: usize,
) -> io::Result<Reply> {
    let addr_of = |addr: Option<socket2::SockAddr>| addr.and_then(|a| a.as_socket());
    let res = match op {
        Op::Bind { addr, .. } => match addr_of(addr.get()) {
            Some(addr) => state.udp.bind_to(sock, addr),
            None => -libc::EAFNOSUPPORT,
        },
        Op::Connect { addr, .. } => match addr_of(addr.get()) {
            Some(addr) => state.udp_connect(sock, addr),
            None => -libc::EAFNOSUPPORT,
        },
        Op::Send { buf, .. } => state.udp_send(sock, &buf[..], None),
        Op::SendTo { buf, msg, .. } => match addr_of(msg.addr.get()) {
            Some(to) => state.udp_send(sock, &buf[..], Some(to)),
            None => -libc::EAFNOSUPPORT,
        },
        Op::Recv { buf, .. } => {
            let (ptr, room) = buf.spare_parts();
            let msg = std::ptr::null_mut();
            return Ok(state.udp_recv(sock, node, user_data, ptr, room, msg));
        }
        Op::RecvFrom { buf, msg, .. } => {
            let (ptr, room) = buf.spare_parts();
            let msg: *mut MsgBuf = &mut **msg;
            return Ok(state.udp_recv(sock, node, user_data, ptr, room, msg));
        }
        Op::SendMsg { bufs, msg, .. } => {
            bufs.fill_iovecs(&mut msg.iov, false);
            let to = match msg.addr.len {
                0 => None,
                _ => match addr_of(msg.addr.get()) {
                    Some(to) => Some(to),
                    None => return Ok(Reply::Res(-libc::EAFNOSUPPORT)),
                },
            };
            let mut data = std::mem::take(&mut state.udp.gathered);
            data.clear();
            for iov in &msg.iov {
                // SAFETY: the iovecs point into the op's buffers, which
                // its task keeps alive and in place while it runs.
                let part =
                    unsafe { std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len) };
                data.extend_from_slice(part);
            }
            let res = state.udp_send(sock, &data, to);
            state.udp.gathered = data;
            res
        }
        Op::RecvMsg { bufs, msg, .. } => {
            bufs.fill_iovecs(&mut msg.iov, true);
            msg.prepare(true);
            let room = msg.iov.iter().map(|v| v.iov_len).sum();
            let msg: *mut MsgBuf = &mut **msg;
            return Ok(state.udp_recv(sock, node, user_data, std::ptr::null_mut(), room, msg));
        }
        Op::Shutdown { how, .. } => state.udp_shutdown(sock, *how),
        Op::Listen { .. } | Op::Accept { .. } => -libc::EOPNOTSUPP,
        op => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the simulator does not carry out {:?} on UDP sockets yet",
                    op.kind()
                ),
            ))
        }
    };
    Ok(Reply::Res(res))
}

impl State {
    fn udp_connect(&mut self, sock: usize, peer: SocketAddr) -> i32 {
        let peer = this_host_if_unspecified(peer);
        if !self.udp.endpoint(sock).v6 && peer.is_ipv6() {
            return -libc::EAFNOSUPPORT;
        }
        let bound = self.udp.autobind(sock);
        if bound < 0 {
            return bound;
        }
        let udp = &mut self.udp;
        let endpoint = udp.endpoint(sock);
        endpoint.peer = Some(peer);
        // Connecting picks the local address a wildcard left open.
        if let Some(local) = endpoint.local.filter(|l| l.ip().is_unspecified()) {
            let specific = SocketAddr::new(host_ip(peer), local.port());
            endpoint.local = Some(specific);
            udp.bound.remove(&local);
            udp.bound.insert(specific, sock);
        }
        0
    }

    fn udp_send(&mut self, sock: usize, data: &[u8], to: Option<SocketAddr>) -> i32 {
        let endpoint = self.udp.endpoint(sock);
        if let Some(errno) = endpoint.error.take() {
            return -errno;
        }
        let Some(to) = to.map(this_host_if_unspecified).or(endpoint.peer) else {
            return -libc::EDESTADDRREQ;
        };
        if !endpoint.v6 && to.is_ipv6() {
            return -libc::EAFNOSUPPORT;
        }
        if to.port() == 0 {
            return -libc::EINVAL;
        }
        let most = if to.is_ipv6() {
            PAYLOAD_MOST_V6
        } else {
            PAYLOAD_MOST_V4
        };
        if data.len() > most {
            return -libc::EMSGSIZE;
        }
        if self.udp.endpoint(sock).write_shut {
            return -libc::EPIPE;
        }
        let bound = self.udp.autobind(sock);
        if bound < 0 {
            return bound;
        }
        let local = self.udp.endpoint(sock).local.expect("bound just now");
        let from = if local.ip().is_unspecified() {
            SocketAddr::new(host_ip(to), local.port())
        } else {
            local
        };
        self.net.add_host(from.ip());
        self.net.add_host(to.ip());
        let sent = data.len() as i32;
        if self
            .streams
            .chance(Stream::DatagramLoss, self.config.datagram_loss)
        {
            self.faults.add(Fault::DatagramLoss);
            return sent;
        }
        let copies = if self
            .streams
            .chance(Stream::DatagramDuplicate, self.config.datagram_duplicate)
        {
            self.faults.add(Fault::DatagramDuplicate);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = self.now().saturating_add(self.delay());
            if self
                .streams
                .chance(Stream::DatagramReorder, self.config.datagram_reorder)
            {
                // Held back: later datagrams of this sender may pass it.
                let most = self
                    .config
                    .latency
                    .base_ns
                    .saturating_mul(10)
                    .max(1_000_000);
                let held = self.streams.get(Stream::DatagramReorder).u64(1..=most);
                at = at.saturating_add(held);
                self.faults.add(Fault::DatagramReorder);
            } else {
                let endpoint = self.udp.endpoint(sock);
                at = at.max(endpoint.arrival);
                endpoint.arrival = at;
            }
            let packet = Packet {
                from,
                data: self.udp.buffer(data),
            };
            let flight = Flight {
                sender: Some(sock),
                to,
                packet,
            };
            self.launch(flight, at);
        }
        sent
    }

    fn udp_recv(
        &mut self,
        sock: usize,
        node: u32,
        user_data: u64,
        ptr: *mut u8,
        room: usize,
        msg: *mut MsgBuf,
    ) -> Reply {
        self.udp.endpoint(sock).waiting.push_back(Waiting {
            node,
            user_data,
            ptr,
            room,
            msg,
        });
        self.wake_datagram(sock);
        Reply::Parked
    }

    /// The datagram in flight `slot` arrives.
    pub(crate) fn datagram_arrives(&mut self, slot: usize) {
        let Some(Flight {
            sender,
            to,
            mut packet,
        }) = self.udp.flights[slot].take()
        else {
            return;
        };
        self.udp.free_flights.push(slot);
        if self.is_cut(packet.from.ip().to_canonical(), to.ip().to_canonical()) {
            self.faults.add(Fault::DatagramCut);
            self.udp.recycle(packet.data);
            return;
        }
        if sender.is_some() && self.streams.chance(Stream::Spoofed, self.config.spoofed) {
            self.spoof(to, &packet);
        }
        let receiver = self.udp.receiver(to).filter(|&r| {
            let endpoint = self.udp.endpoint(r);
            !endpoint.closed && endpoint.peer.is_none_or(|peer| same(peer, packet.from))
        });
        let Some(receiver) = receiver else {
            // Port unreachable: a connected sender hears of it.
            let connected = sender.filter(|&sender| {
                let endpoint = self.udp.endpoint(sender);
                !endpoint.closed && endpoint.peer.is_some_and(|peer| same(peer, to))
            });
            if let Some(sender) = connected {
                let at = self.now().saturating_add(self.delay());
                self.schedule(at, What::Unreachable { sock: sender });
            }
            self.udp.recycle(packet.data);
            return;
        };
        let endpoint = self.udp.endpoint(receiver);
        if endpoint.queued + packet.data.len() > QUEUE_MOST {
            self.udp.recycle(packet.data);
            return;
        }
        if endpoint.v6 {
            if let IpAddr::V4(ip) = packet.from.ip() {
                packet.from = SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), packet.from.port());
            }
        }
        endpoint.queued += packet.data.len();
        endpoint.queue.push_back(packet);
        self.wake_datagram(receiver);
    }

    /// Puts `flight` on its way, to arrive at `at`.
    pub(crate) fn launch(&mut self, flight: Flight, at: u64) {
        let flight = Some(flight);
        let slot = match self.udp.free_flights.pop() {
            Some(slot) => {
                self.udp.flights[slot] = flight;
                slot
            }
            None => {
                self.udp.flights.push(flight);
                self.udp.flights.len() - 1
            }
        };
        self.schedule(at, What::Datagram { slot });
    }

    /// An ICMP "port unreachable" reaches `sock`.
    pub(crate) fn unreachable(&mut self, sock: usize) {
        let endpoint = self.udp.endpoint(sock);
        if !endpoint.closed {
            endpoint.error = Some(libc::ECONNREFUSED);
            self.wake_datagram(sock);
        }
    }

    /// Hands queued datagrams (or a pending error) to waiting receives.
    fn wake_datagram(&mut self, sock: usize) {
        loop {
            let endpoint = self.udp.endpoint(sock);
            if endpoint.waiting.is_empty() {
                return;
            }
            let res = if let Some(errno) = endpoint.error.take() {
                -errno
            } else if let Some(packet) = endpoint.queue.pop_front() {
                endpoint.queued -= packet.data.len();
                let waiting = endpoint.waiting.front().expect("a waiting receive");
                let n = packet.data.len().min(waiting.room);
                // SAFETY: a receive parks its spare room, `room` bytes its
                // task keeps in place until its completion, and a
                // `recv_from` or `recvmsg` its boxed header (whose iovecs,
                // `room` bytes in all, point into the task's buffers);
                // `n <= room`, and the world's packet never overlaps a
                // task's buffer.
                unsafe {
                    if waiting.ptr.is_null() {
                        let iov = &(*waiting.msg).iov;
                        scatter(&packet.data[..n], iov);
                    } else {
                        std::ptr::copy_nonoverlapping(packet.data.as_ptr(), waiting.ptr, n);
                    }
                    if let Some(msg) = waiting.msg.as_mut() {
                        msg.addr.set(&packet.from.into());
                        msg.hdr.msg_namelen = msg.addr.len;
                        msg.hdr.msg_flags = if n < packet.data.len() {
                            libc::MSG_TRUNC
                        } else {
                            0
                        };
                    }
                }
                self.udp.recycle(packet.data);
                n as i32
            } else {
                return;
            };
            let waiting = self
                .udp
                .endpoint(sock)
                .waiting
                .pop_front()
                .expect("a waiting receive");
            let now = self.now();
            self.complete(waiting.node, waiting.user_data, res, now);
        }
    }

    /// Shuts `sock` for writing if `how` says so (see the module docs for
    /// reading); `ENOTCONN` if it is not connected, though shut all the
    /// same, as the kernel does.
    fn udp_shutdown(&mut self, sock: usize, how: i32) -> i32 {
        let endpoint = self.udp.endpoint(sock);
        if how != libc::SHUT_RD {
            endpoint.write_shut = true;
        }
        if endpoint.peer.is_some() {
            0
        } else {
            -libc::ENOTCONN
        }
    }

    /// Closes UDP socket `sock`: it is unbound and what it queued dropped.
    pub(crate) fn udp_close(&mut self, sock: usize) {
        let endpoint = self.udp.endpoint(sock);
        endpoint.closed = true;
        let local = endpoint.local.take();
        let queue = std::mem::take(&mut endpoint.queue);
        endpoint.queued = 0;
        if let Some(local) = local {
            self.udp.bound.remove(&local);
        }
        for packet in queue {
            self.udp.recycle(packet.data);
        }
    }
}

/// Copies `data` over the buffers `iov` describes, in order.
///
/// # Safety
///
/// Each iovec must describe writable memory that nothing else uses, and
/// together they must hold at least `data.len()` bytes.
unsafe fn scatter(mut data: &[u8], iov: &[libc::iovec]) {
    for part in iov {
        let n = data.len().min(part.iov_len);
        // SAFETY: the caller's promise, for this iovec's first `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), part.iov_base.cast::<u8>(), n) };
        data = &data[n..];
    }
}

/// The address this host sends to `to` from.
fn host_ip(to: SocketAddr) -> IpAddr {
    if to.is_ipv4() {
        IpAddr::V4(HOST_V4)
    } else {
        IpAddr::V6(HOST_V6)
    }
}

/// Whether two addresses are the same, an IPv4 one and its IPv6 mapping
/// alike.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    canonical(a) == canonical(b)
}
