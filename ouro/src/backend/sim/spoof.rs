//! Spoofed datagrams: alongside a datagram arriving at a socket, one from
//! a source that sent nothing, a copy of it or random bytes, from another
//! port of its sender's host, from another host at the same port, or from
//! anywhere. A connected socket drops them, as the kernel's does (it takes
//! datagrams from its peer only); an unconnected one receives them, and
//! the program must tell them apart itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::faults::{Fault, Stream};
use super::udp::{Flight, Packet};
use super::world::State;

/// The most bytes of a spoofed datagram of random bytes.
const RANDOM_MOST: usize = 512;

impl State {
    /// Sends a spoofed datagram to `to`, made from `real`, which arrives
    /// there now.
    pub(crate) fn spoof(&mut self, to: SocketAddr, real: &Packet) {
        self.faults.add(Fault::Spoofed);
        let rng = self.streams.get(Stream::Spoofed);
        let other_port = |rng: &mut fastrand::Rng| {
            let port = rng.u16(1..);
            if port == real.from.port() {
                port % u16::MAX + 1
            } else {
                port
            }
        };
        let other_host = |rng: &mut fastrand::Rng| match real.from.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, rng.u8(1..255))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.u16(1..))),
        };
        let from = match rng.u8(..3) {
            0 => SocketAddr::new(real.from.ip(), other_port(rng)),
            1 => SocketAddr::new(other_host(rng), real.from.port()),
            _ => SocketAddr::new(other_host(rng), other_port(rng)),
        };
        let data = if rng.bool() {
            self.udp.buffer(&real.data)
        } else {
            let len = rng.usize(1..=RANDOM_MOST);
            let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            self.udp.buffer(&bytes)
        };
        let flight = Flight {
            sender: None,
            to,
            packet: Packet { from, data },
        };
        let now = self.now();
        self.launch(flight, now);
    }
}
