//! The answers a lookup gets without a query: numeric names, `localhost`
//! and the hosts file, as glibc's `getaddrinfo` gives them.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ouro::Ring;

use super::hosts::Hosts;
use super::literal::ip_literal;
use super::resolver::Answer;
use super::search::{hosts_name, is_localhost, presentation};
use super::sort::sort_destinations;
use super::wire::{Record, RecordType};

/// Which address families a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    /// The families among `types`.
    pub fn of(types: &[RecordType]) -> Families {
        Families {
            v4: types.contains(&RecordType::A),
            v6: types.contains(&RecordType::Aaaa),
        }
    }

    fn wants(self, addr: IpAddr) -> bool {
        if addr.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }

    fn wants_record(self, record: &Record) -> bool {
        match record {
            Record::A(_) => self.v4,
            Record::Aaaa(_) => self.v6,
            _ => false,
        }
    }

    /// `addr` as an IPv4-only lookup takes it: glibc's AF_INET lookup
    /// reads an IPv4-mapped IPv6 address (`::ffff:192.0.2.9`), numeric or
    /// in the hosts file, as the IPv4 address it maps.
    fn adapt(self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V6(v6) if self.v4 && !self.v6 => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            _ => addr,
        }
    }

    /// `addr` of a hosts file line as an IPv4-only lookup takes it: as
    /// [`adapt`](Self::adapt), and `::1` is 127.0.0.1, as glibc's files
    /// module reads it (Debian lists `ip6-localhost` on `::1` alone).
    fn adapt_listed(self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V6(v6) if v6.is_loopback() && self.v4 && !self.v6 => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            _ => self.adapt(addr),
        }
    }
}

/// The answer to a lookup of `types` for `name` (well formed) that needs
/// no query, or `None` to ask the servers. Only address lookups have one:
/// - a numeric name is its address (one of the other family, or an
///   unknown IPv6 zone, ends the lookup with no query);
/// - `localhost` and names under it are the loopback addresses (and have
///   no records of other types);
/// - a name the hosts file lists answers with its addresses of the
///   families asked for, named by the first such line's official name;
///   a one-family lookup that finds none of its family there asks the
///   servers, as glibc's does, unless it is `half` of a lookup of both
///   (the connector's), which stops there as the whole would.
pub(crate) fn local_answer<S>(
    ring: &mut Ring<S>,
    hosts: &Hosts,
    name: &str,
    types: &[RecordType],
    half: bool,
) -> Option<io::Result<Answer>> {
    let families = Families::of(types);
    if half && (families.v4 || families.v6) {
        let both = [RecordType::Aaaa, RecordType::A];
        let mut answer = match local_answer(ring, hosts, name, &both, false)? {
            Ok(answer) => answer,
            Err(e) => return Some(Err(e)),
        };
        answer.records.retain(|r| families.wants_record(r));
        if answer.records.is_empty() {
            return Some(Err(not_found(name)));
        }
        return Some(Ok(answer));
    }
    if !families.v4 && !families.v6 {
        return is_localhost(name).then(|| Err(not_found(name)));
    }
    if let Some(literal) = ip_literal(name) {
        return Some(literal.and_then(|l| literal_answer(name, l.addr, families)));
    }
    let (canonical, mut addrs) = if is_localhost(name) {
        let loopback = [
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ];
        let addrs = loopback.into_iter().filter(|a| families.wants(*a));
        (presentation(name), addrs.collect())
    } else {
        hosts_answer(hosts, name, families)?
    };
    sort_destinations(&mut addrs, ring);
    let records = addrs.into_iter().map(record).collect();
    Some(Ok(Answer {
        name: canonical,
        records,
    }))
}

/// A numeric name's answer: its address if of a family asked for, else
/// no address (glibc's EAI_ADDRFAMILY), without a query.
fn literal_answer(name: &str, addr: IpAddr, families: Families) -> io::Result<Answer> {
    let addr = families.adapt(addr);
    if !families.wants(addr) {
        let why = format!("{name} is an address of the other family");
        return Err(io::Error::new(io::ErrorKind::NotFound, why));
    }
    Ok(Answer {
        name: name.to_string(),
        records: vec![record(addr)],
    })
}

/// The official name and the addresses (each once, in file order) of the
/// hosts file's lines for `name` with an address of `families`; `None`
/// if there is none.
fn hosts_answer(hosts: &Hosts, name: &str, families: Families) -> Option<(String, Vec<IpAddr>)> {
    let name = hosts_name(name)?;
    let mut official = None;
    let mut addrs = Vec::new();
    // A set, not a search of those before: a name may have many.
    let mut seen = HashSet::new();
    for (addr, line_name) in hosts.entries(&name) {
        let addr = families.adapt_listed(addr);
        if !families.wants(addr) {
            continue;
        }
        official.get_or_insert(line_name);
        if seen.insert(addr) {
            addrs.push(addr);
        }
    }
    // An official name of dots alone is empty once trimmed: no name to
    // hand out; the one looked up is.
    let official = official?;
    let canonical = match official.is_empty() {
        true => presentation(&name),
        false => official.to_string(),
    };
    Some((canonical, addrs))
}

fn record(addr: IpAddr) -> Record {
    match addr {
        IpAddr::V4(v4) => Record::A(v4),
        IpAddr::V6(v6) => Record::Aaaa(v6),
    }
}

/// The error of a lookup that found no records.
pub(crate) fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no records for {name}"))
}
