//! The flags of the machine's IPv6 addresses that RFC 6724's source rules
//! read (rule 3: deprecated, rule 4: home address), from the kernel's
//! address table: on Linux one netlink `RTM_GETADDR` dump, as glibc's
//! `getaddrinfo` reads them, its messages parsed by `netlink-packet-route`.
//! Other systems: an `Unsupported` error, which the address sort takes as
//! "no flags".

use std::io;
use std::net::{IpAddr, Ipv6Addr};

/// What the kernel says of one local address that RFC 6724's source
/// rules read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressFlags {
    /// Its preferred lifetime is over (`IFA_F_DEPRECATED`): it still
    /// works, but new connections should avoid it (rule 3).
    pub deprecated: bool,
    /// A Mobile IPv6 home address (`IFA_F_HOMEADDRESS`), preferred as a
    /// source (rule 4).
    pub home: bool,
}

/// The flags of the machine's IPv6 addresses, as one look at the
/// kernel's table found them. The default is an empty table: no address
/// has flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddressFlags {
    addresses: Vec<(Ipv6Addr, AddressFlags)>,
}

impl LocalAddressFlags {
    /// The flags of `addr`: none for an address the table does not hold,
    /// and none for an IPv4 address (only IPv6 addresses are read, as
    /// glibc reads them).
    pub fn of(&self, addr: IpAddr) -> AddressFlags {
        let IpAddr::V6(addr) = addr else {
            return AddressFlags::default();
        };
        self.addresses
            .iter()
            .find(|(local, _)| *local == addr)
            .map_or_else(AddressFlags::default, |(_, flags)| *flags)
    }

    /// Each address the table holds, with its flags, in the kernel's
    /// order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv6Addr, AddressFlags)> + '_ {
        self.addresses.iter().copied()
    }
}

impl FromIterator<(Ipv6Addr, AddressFlags)> for LocalAddressFlags {
    fn from_iter<I: IntoIterator<Item = (Ipv6Addr, AddressFlags)>>(entries: I) -> Self {
        LocalAddressFlags {
            addresses: entries.into_iter().collect(),
        }
    }
}

/// The flags of this machine's IPv6 addresses: on Linux a netlink
/// `RTM_GETADDR` dump of the IPv6 addresses (system calls on the calling
/// thread: socket, send, a non-blocking receive per part of the answer,
/// close; the kernel answers a dump before `send` returns, so nothing
/// waits). Fails with the socket's error where netlink is refused (a
/// seccomp filter) and with `InvalidData` for an answer that does not
/// parse; on other systems with `Unsupported`.
pub fn local_address_flags() -> io::Result<LocalAddressFlags> {
    #[cfg(target_os = "linux")]
    return netlink::dump_ipv6_addresses();
    #[cfg(not(target_os = "linux"))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "address flags are read on Linux only (netlink)",
    ));
}

#[cfg(target_os = "linux")]
mod netlink {
    use std::io::{self, Read};
    use std::net::IpAddr;

    use netlink_packet_core::{
        NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
    };
    use netlink_packet_route::address::{
        AddressAttribute, AddressFlags as IfaFlags, AddressHeaderFlags, AddressMessage,
    };
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use socket2::{Domain, Protocol, Socket, Type};

    use super::{AddressFlags, LocalAddressFlags};

    /// The request's sequence number; the socket is new, so any will do.
    const SEQUENCE: u32 = 1;

    /// Room for one datagram of a dump: the kernel sizes its parts after
    /// the reader's buffer, up to 32 KiB.
    const RECEIVE_BUFFER: usize = 32 * 1024;

    pub(super) fn dump_ipv6_addresses() -> io::Result<LocalAddressFlags> {
        // Non-blocking: the kernel queues the first part of a dump before
        // `send` returns and each next one before `recv` does, so a wait
        // would only ever hide a kernel that answers nothing.
        let socket = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW.nonblocking(),
            Some(Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        socket.send(&request())?;
        let mut buffer = vec![0; RECEIVE_BUFFER];
        let mut addresses = Vec::new();
        loop {
            let len = (&socket).read(&mut buffer)?;
            if read_part(&buffer[..len], &mut addresses)? == Part::Last {
                return Ok(LocalAddressFlags { addresses });
            }
        }
    }

    /// An `RTM_GETADDR` dump request for the IPv6 addresses.
    fn request() -> Vec<u8> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet6;
        let mut request = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::GetAddress(message)),
        );
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        request.header.sequence_number = SEQUENCE;
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        bytes
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Part {
        More,
        Last,
    }

    /// Adds the addresses of one datagram of the answer to `addresses`;
    /// `Last` once the dump's end (`NLMSG_DONE`) is in it.
    pub(super) fn read_part(
        mut datagram: &[u8],
        addresses: &mut Vec<(std::net::Ipv6Addr, AddressFlags)>,
    ) -> io::Result<Part> {
        while !datagram.is_empty() {
            let message: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(datagram).map_err(invalid)?;
            let len = NetlinkBuffer::new(datagram).length() as usize;
            // Each message starts 4-byte aligned; the last may lack padding.
            datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
            if message.header.sequence_number != SEQUENCE {
                continue;
            }
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(Part::Last),
                NetlinkPayload::Error(error) => return Err(error.to_io()),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
                    addresses.extend(ipv6_flags(&address));
                }
                _ => {}
            }
        }
        Ok(Part::More)
    }

    /// The address and flags of one `RTM_NEWADDR` message, if IPv6. The
    /// local address is `IFA_LOCAL` where there is one (a point-to-point
    /// link, whose `IFA_ADDRESS` is the peer), `IFA_ADDRESS` otherwise;
    /// the flags are `IFA_FLAGS` where the kernel gives them, the
    /// header's 8 bits otherwise.
    fn ipv6_flags(message: &AddressMessage) -> Option<(std::net::Ipv6Addr, AddressFlags)> {
        let mut local = None;
        let mut address = None;
        let header = message.header.flags;
        let (mut deprecated, mut home) = (
            header.contains(AddressHeaderFlags::Deprecated),
            header.contains(AddressHeaderFlags::Homeaddress),
        );
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(IpAddr::V6(addr)) => local = Some(*addr),
                AddressAttribute::Address(IpAddr::V6(addr)) => address = Some(*addr),
                AddressAttribute::Flags(flags) => {
                    deprecated = flags.contains(IfaFlags::Deprecated);
                    home = flags.contains(IfaFlags::Homeaddress);
                }
                _ => {}
            }
        }
        Some((local.or(address)?, AddressFlags { deprecated, home }))
    }

    fn invalid(error: netlink_packet_core::DecodeError) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("netlink address dump: {error}"),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use netlink_packet_core::{DoneMessage, ErrorMessage};
        use std::net::Ipv6Addr;
        use std::num::NonZeroI32;

        fn serialized(payload: NetlinkPayload<RouteNetlinkMessage>, sequence: u32) -> Vec<u8> {
            let mut message = NetlinkMessage::new(NetlinkHeader::default(), payload);
            message.header.sequence_number = sequence;
            message.finalize();
            let mut bytes = vec![0; message.buffer_len()];
            message.serialize(&mut bytes);
            bytes
        }

        fn new_address(
            header: AddressHeaderFlags,
            attributes: Vec<AddressAttribute>,
        ) -> NetlinkPayload<RouteNetlinkMessage> {
            let mut message = AddressMessage::default();
            message.header.family = AddressFamily::Inet6;
            message.header.flags = header;
            message.attributes = attributes;
            NetlinkPayload::from(RouteNetlinkMessage::NewAddress(message))
        }

        fn v6(text: &str) -> Ipv6Addr {
            text.parse().unwrap()
        }

        #[test]
        fn a_dump_gives_each_ipv6_address_its_flags_until_done() {
            let mut first = Vec::new();
            for payload in [
                // IFA_FLAGS, when present, is the whole truth.
                new_address(
                    AddressHeaderFlags::Homeaddress,
                    vec![
                        AddressAttribute::Address(IpAddr::V6(v6("2001:db8::1"))),
                        AddressAttribute::Flags(IfaFlags::Deprecated | IfaFlags::Permanent),
                    ],
                ),
                new_address(
                    AddressHeaderFlags::Homeaddress,
                    vec![AddressAttribute::Address(IpAddr::V6(v6("2001:db8::2")))],
                ),
                // Point to point: IFA_ADDRESS is the peer.
                new_address(
                    AddressHeaderFlags::empty(),
                    vec![
                        AddressAttribute::Address(IpAddr::V6(v6("2001:db8::99"))),
                        AddressAttribute::Local(IpAddr::V6(v6("2001:db8::3"))),
                    ],
                ),
                new_address(
                    AddressHeaderFlags::Deprecated,
                    vec![AddressAttribute::Address("192.0.2.1".parse().unwrap())],
                ),
            ] {
                first.extend(serialized(payload, SEQUENCE));
            }
            let mut addresses = Vec::new();
            assert_eq!(read_part(&first, &mut addresses).unwrap(), Part::More);
            let other_request = new_address(
                AddressHeaderFlags::Deprecated,
                vec![AddressAttribute::Address(IpAddr::V6(v6("2001:db8::4")))],
            );
            let mut last = serialized(other_request, SEQUENCE + 1);
            last.extend(serialized(
                NetlinkPayload::Done(DoneMessage::default()),
                SEQUENCE,
            ));
            assert_eq!(read_part(&last, &mut addresses).unwrap(), Part::Last);
            let flags = |deprecated, home| AddressFlags { deprecated, home };
            assert_eq!(
                addresses,
                [
                    (v6("2001:db8::1"), flags(true, false)),
                    (v6("2001:db8::2"), flags(false, true)),
                    (v6("2001:db8::3"), flags(false, false)),
                ]
            );
        }

        #[test]
        fn a_refused_dump_is_the_kernels_error_and_garbage_is_invalid_data() {
            let mut refusal = ErrorMessage::default();
            refusal.code = NonZeroI32::new(-libc::EPERM);
            let refusal = serialized(NetlinkPayload::Error(refusal), SEQUENCE);
            let err = read_part(&refusal, &mut Vec::new()).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
            let mut truncated = serialized(NetlinkPayload::Done(DoneMessage::default()), SEQUENCE);
            truncated.truncate(truncated.len() - 1);
            let err = read_part(&truncated, &mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_gives_the_flags_of_the_addresses_it_holds_and_none_for_others() {
        let deprecated = AddressFlags {
            deprecated: true,
            home: false,
        };
        let table: LocalAddressFlags = [("2001:db8::1".parse().unwrap(), deprecated)]
            .into_iter()
            .collect();
        assert_eq!(table.of("2001:db8::1".parse().unwrap()), deprecated);
        assert_eq!(
            table.of("2001:db8::2".parse().unwrap()),
            AddressFlags::default()
        );
        assert_eq!(
            table.of("192.0.2.1".parse().unwrap()),
            AddressFlags::default()
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    #[cfg_attr(miri, ignore = "needs the kernel's sockets")]
    fn the_machines_loopback_address_is_in_the_dump_without_flags() {
        let table = local_address_flags().unwrap();
        let loopback = std::net::Ipv6Addr::LOCALHOST;
        // Unless IPv6 is off on this machine, ::1 is on lo, neither
        // deprecated nor a home address.
        if crate::net::route_source(IpAddr::V6(loopback)).is_ok() {
            assert!(table.iter().any(|(addr, _)| addr == loopback), "{table:?}");
            assert_eq!(table.of(IpAddr::V6(loopback)), AddressFlags::default());
        }
    }
}
