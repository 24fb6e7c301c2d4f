//! Queries out and replies in, IO-free: encoding a question, and judging a
//! reply (accept, ignore, or what to do next) with the wire format from
//! `simple-dns`.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, OPT};
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};

/// The UDP payload size announced with EDNS0 (the DNS flag day's 1232
/// bytes: no fragmentation on any usual path).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The most CNAMEs followed from the asked name to its records.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The record types a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// The canonical name an alias points to.
    Cname,
    /// Services: priority, weight, port, target.
    Srv,
    /// Text.
    Txt,
    /// Mail exchangers.
    Mx,
}

impl RecordType {
    fn wire(self) -> TYPE {
        match self {
            RecordType::A => TYPE::A,
            RecordType::Aaaa => TYPE::AAAA,
            RecordType::Cname => TYPE::CNAME,
            RecordType::Srv => TYPE::SRV,
            RecordType::Txt => TYPE::TXT,
            RecordType::Mx => TYPE::MX,
        }
    }
}

/// One record of an answer. Names in records are checked to be host names
/// (letters, digits, `-`, `_`, dots); a record naming anything else is
/// left out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// The canonical name of an alias.
    Cname(String),
    /// A service location (RFC 2782).
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Share among equal priorities.
        weight: u16,
        /// The service's port.
        port: u16,
        /// The host that serves it.
        target: String,
    },
    /// A text record, its strings joined (as Go's `LookupTXT` does); bytes
    /// that are not UTF-8 are replaced.
    Txt(String),
    /// A mail exchanger.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The exchanger's host name.
        exchange: String,
    },
}

/// The record's data as `dig +short` prints it: names end with a dot, SRV
/// and MX put their numbers first, TXT is one quoted string (with Rust's
/// escapes for quotes and control characters).
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::A(v4) => write!(f, "{v4}"),
            Record::Aaaa(v6) => write!(f, "{v6}"),
            Record::Cname(name) => write!(f, "{name}."),
            Record::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target}."),
            Record::Txt(text) => write!(f, "{text:?}"),
            Record::Mx {
                preference,
                exchange,
            } => write!(f, "{preference} {exchange}."),
        }
    }
}

/// What a reply means for the question it may answer.
#[derive(Debug)]
pub enum Verdict {
    /// Not an answer to this question (not a response, another ID or
    /// question, malformed): ignored, the wait goes on.
    Ignore,
    /// The records of the name (after following CNAMEs), and its canonical
    /// name.
    Answer {
        /// The name the records belong to.
        canonical: String,
        /// The records, in the server's order.
        records: Vec<Record>,
    },
    /// The name is an alias whose target's records the answer left out
    /// (without saying the target has none): ask for the target.
    Alias {
        /// The name the chain of CNAMEs ends at.
        target: String,
        /// The CNAMEs followed in this answer.
        hops: usize,
    },
    /// The name exists without records of this type.
    NoData,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// This server cannot answer (SERVFAIL, REFUSED, NOTIMP, a lame
    /// referral, FORMERR without EDNS): ask the next.
    NextServer,
    /// FORMERR to a query with EDNS0: ask again without it.
    RetryWithoutEdns,
    /// Truncated: ask again over TCP.
    Truncated,
    /// An answer that cannot be used (a CNAME loop or chain too long).
    Failed(io::Error),
}

/// The query for `name` (without its root dot) and `qtype`, with recursion
/// desired and, if `edns`, an EDNS0 OPT record.
pub fn encode_query(id: u16, name: &str, qtype: RecordType, edns: bool) -> io::Result<Vec<u8>> {
    let qname = Name::new(name).map_err(invalid_name)?;
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    let question = Question::new(
        qname,
        QTYPE::TYPE(qtype.wire()),
        QCLASS::CLASS(CLASS::IN),
        false,
    );
    packet.questions.push(question);
    if edns {
        *packet.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: EDNS_PAYLOAD,
            version: 0,
        });
    }
    packet.build_bytes_vec().map_err(invalid_name)
}

fn invalid_name(e: simple_dns::SimpleDnsError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot ask for this name: {e}"),
    )
}

/// Judges `reply` as an answer to the query `id` for `name` and `qtype`
/// (sent with EDNS0 if `edns`; over TCP if `over_tcp`, where TC means
/// nothing more can come).
pub fn judge(
    id: u16,
    name: &str,
    qtype: RecordType,
    edns: bool,
    over_tcp: bool,
    reply: &[u8],
) -> Verdict {
    let (Ok(packet), Ok(asked)) = (Packet::parse(reply), Name::new(name)) else {
        return Verdict::Ignore;
    };
    if !packet.has_flags(PacketFlag::RESPONSE) || packet.id() != id {
        return Verdict::Ignore;
    }
    let rcode = packet.rcode();
    // Some servers leave the question out of a FORMERR.
    let question_optional = rcode == RCODE::FormatError && packet.questions.is_empty();
    if !question_optional && !same_question(&packet, &asked, qtype) {
        return Verdict::Ignore;
    }
    if packet.has_flags(PacketFlag::TRUNCATION) && !over_tcp {
        return Verdict::Truncated;
    }
    match rcode {
        RCODE::NoError => records(&packet, name, qtype),
        RCODE::NameError => Verdict::NxDomain,
        RCODE::FormatError if edns => Verdict::RetryWithoutEdns,
        _ => Verdict::NextServer,
    }
}

/// Names are compared by their labels' bytes, ASCII case aside (simple-dns
/// compares them so): their text would differ for a label holding a dot,
/// which the question's text escapes one way and a reply's another.
fn same_question(packet: &Packet, asked: &Name, qtype: RecordType) -> bool {
    let [question] = packet.questions.as_slice() else {
        return false;
    };
    question.qtype == QTYPE::TYPE(qtype.wire())
        && question.qclass == QCLASS::CLASS(CLASS::IN)
        && question.qname == *asked
}

/// The records of `qtype` for `name`, following CNAMEs through the answer
/// section with a cap and loop detection.
fn records(packet: &Packet, name: &str, qtype: RecordType) -> Verdict {
    let mut owner = name.to_ascii_lowercase();
    let mut seen = HashSet::new();
    loop {
        // `name` was asked for, and CNAME targets are host names: both parse.
        let Ok(owner_name) = Name::new(&owner) else {
            return Verdict::Ignore;
        };
        let found: Vec<Record> = packet
            .answers
            .iter()
            .filter(|rr| rr.name == owner_name && rr.class == CLASS::IN)
            .filter_map(|rr| record(&rr.rdata, qtype))
            .collect();
        if !found.is_empty() {
            return Verdict::Answer {
                canonical: owner,
                records: found,
            };
        }
        let Some(target) = cname_of(packet, &owner_name) else {
            return match seen.len() {
                0 => no_records(packet),
                hops => alias(packet, owner, hops),
            };
        };
        seen.insert(owner);
        if seen.contains(&target) {
            return Verdict::Failed(io::Error::new(
                io::ErrorKind::InvalidData,
                "a CNAME loop in the answer",
            ));
        }
        if seen.len() > MAX_CNAME_CHAIN {
            return Verdict::Failed(io::Error::new(
                io::ErrorKind::InvalidData,
                "a CNAME chain longer than 8",
            ));
        }
        owner = target;
    }
}

/// NOERROR without records: no data, unless it is a referral without
/// authority (NS records and no SOA: a lame server).
fn no_records(packet: &Packet) -> Verdict {
    let has = |t: TYPE| {
        packet
            .name_servers
            .iter()
            .any(|rr| rr.rdata.type_code() == t)
    };
    if packet.answers.is_empty() && has(TYPE::NS) && !has(TYPE::SOA) {
        return Verdict::NextServer;
    }
    Verdict::NoData
}

/// A chain whose target has no records here: no data if the answer says
/// so (an SOA in the authority section, a negative answer for the target),
/// otherwise the target is to be asked for.
fn alias(packet: &Packet, target: String, hops: usize) -> Verdict {
    let negative = (packet.name_servers.iter()).any(|rr| rr.rdata.type_code() == TYPE::SOA);
    match negative {
        true => Verdict::NoData,
        false => Verdict::Alias { target, hops },
    }
}

fn cname_of(packet: &Packet, owner: &Name) -> Option<String> {
    packet.answers.iter().find_map(|rr| match &rr.rdata {
        RData::CNAME(cname) if rr.name == *owner => host_name(&cname.0),
        _ => None,
    })
}

fn record(rdata: &RData, qtype: RecordType) -> Option<Record> {
    match (rdata, qtype) {
        (RData::A(a), RecordType::A) => Some(Record::A(Ipv4Addr::from(a.address))),
        (RData::AAAA(aaaa), RecordType::Aaaa) => Some(Record::Aaaa(Ipv6Addr::from(aaaa.address))),
        (RData::CNAME(cname), RecordType::Cname) => host_name(&cname.0).map(Record::Cname),
        (RData::SRV(srv), RecordType::Srv) => Some(Record::Srv {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            target: host_name(&srv.target)?,
        }),
        (RData::TXT(txt), RecordType::Txt) => {
            let text = String::try_from(txt.clone())
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            Some(Record::Txt(text))
        }
        (RData::MX(mx), RecordType::Mx) => Some(Record::Mx {
            preference: mx.preference,
            exchange: host_name(&mx.exchange)?,
        }),
        _ => None,
    }
}

/// The name, lower-cased, if it is a host name (the root included, as
/// `.`, which an MX or SRV uses to say "no service").
fn host_name(name: &Name) -> Option<String> {
    let text = name.to_string().to_ascii_lowercase();
    let valid = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    match (valid, text.is_empty()) {
        (true, true) => Some(".".to_string()),
        (true, false) => Some(text),
        (false, _) => None,
    }
}
