//! ouro-net's resolver under the simulator: a DNS server node answering
//! from a table over simulated UDP, with datagrams lost, duplicated and
//! reordered and a spoofed reply (wrong ID, wrong address) sent ahead of
//! some answers. Every lookup ends exactly once, with the table's answer
//! or an honest error, and a seed replays its run exactly.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{FaultCounts, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd};
use ouro_net::dns::{answer, Answer, Config, Hosts, Record, RecordType, Resolver};
use simple_dns::rdata::{RData, A};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 53], 53);
const NAMES: usize = 12;
const SEEDS: u64 = 200;

/// The table the server answers from: `hostN.sim` for even N; odd N do
/// not exist.
fn address_of(name: &str) -> Option<Ipv4Addr> {
    let n: u8 = name
        .strip_prefix("host")?
        .strip_suffix(".sim")?
        .parse()
        .ok()?;
    (n % 2 == 0).then_some(Ipv4Addr::new(192, 0, 2, n))
}

/// The server: answers each query from the table; when the world's user
/// stream says so, first sends a reply with another ID and a wrong
/// address, which the resolver must ignore.
struct DnsServer {
    fd: Option<RingFd>,
    world: World,
}

fn serve(server: &mut DnsServer, ring: &mut Ring<DnsServer>, c: Completion) -> io::Result<()> {
    match c.outcome {
        Outcome::Socket(fd) => {
            let fd = ring.register_fd(fd?);
            server.fd = Some(fd);
            ring.bind(fd, SocketAddr::from(SERVER), Ctx::new(serve));
        }
        Outcome::Bind(res) => {
            res?;
            let fd = server.fd.expect("bound");
            ring.recv_from(fd, Vec::with_capacity(512), Ctx::new(serve));
        }
        Outcome::RecvFrom(Ok(datagram), buf) => {
            let fd = server.fd.expect("bound");
            let query = buf.into_vec();
            if let Some(reply) = reply_to(&query, false) {
                if server.world.random() % 4 == 0 {
                    let spoofed = reply_to(&query, true).expect("parsed once");
                    ring.send_to(fd, spoofed, datagram.from.clone(), Ctx::new(serve));
                }
                ring.send_to(fd, reply, datagram.from, Ctx::new(serve));
            }
            ring.recv_from(fd, Vec::with_capacity(512), Ctx::new(serve));
        }
        Outcome::SendTo(res, _) => {
            res?;
        }
        other => return Err(io::Error::other(format!("server: {other:?}"))),
    }
    Ok(())
}

/// The reply to `query` from the table; a spoofed one has another ID and
/// a wrong address. `None` for a datagram that is no query.
fn reply_to(query: &[u8], spoofed: bool) -> Option<Vec<u8>> {
    let query = Packet::parse(query).ok()?;
    let question = query.questions.first()?.clone().into_owned();
    let id = if spoofed {
        query.id().wrapping_add(1)
    } else {
        query.id()
    };
    let mut packet = Packet::new_reply(id);
    packet.set_flags(PacketFlag::RECURSION_AVAILABLE);
    let name = question.qname.clone();
    let found = address_of(&name.to_string());
    let asks_a = question.qtype == QTYPE::TYPE(TYPE::A);
    packet.questions.push(question);
    match found {
        None if !spoofed => *packet.rcode_mut() = RCODE::NameError,
        _ if !asks_a => {}
        found => {
            let address = if spoofed {
                Ipv4Addr::new(203, 0, 113, 66)
            } else {
                found.expect("a name in the table")
            };
            let rdata = RData::A(A {
                address: address.into(),
            });
            packet
                .answers
                .push(ResourceRecord::new(name, CLASS::IN, 60, rdata));
        }
    }
    packet.build_bytes_vec().ok()
}

struct Client {
    resolver: Option<Resolver<Client>>,
    /// Each lookup's ends, by its number: exactly one is right.
    results: Ends,
}

fn to_resolver(client: &mut Client, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
    match client.resolver.as_mut() {
        Some(resolver) => resolver.on_completion(ring, c),
        None => Ok(()),
    }
}

fn on_answer(client: &mut Client, _: &mut Ring<Client>, c: Completion) -> io::Result<()> {
    let n = c.key() as usize;
    client.results[n].push(answer(c));
    Ok(())
}

/// Each lookup's ends, by its number.
type Ends = Vec<Vec<io::Result<Answer>>>;

/// Runs `NAMES` lookups under `seed`; their ends, the log's hash and the
/// faults injected.
fn lookups(seed: u64) -> (Ends, u64, FaultCounts) {
    let world = World::new(seed);
    let mut server: Ring<DnsServer> = Ring::simulated(&world);
    server.socket(Domain::IPV4, Type::DGRAM, None, Ctx::new(serve));
    let state = DnsServer {
        fd: None,
        world: world.clone(),
    };
    let mut server = (server, state);
    // The server is up before the first query.
    world
        .run(&mut [&mut server], Duration::from_secs(1))
        .expect("starting the server");
    let mut client_ring: Ring<Client> = Ring::simulated(&world);
    let config = Config {
        nameservers: vec![SocketAddr::from(SERVER)],
        timeout: Duration::from_millis(200),
        attempts: 3,
        ..Config::default()
    };
    let mut resolver = Resolver::new(
        &mut client_ring,
        config,
        Hosts::default(),
        Ctx::new(to_resolver),
    )
    .expect("a resolver");
    for n in 0..NAMES {
        let done = Ctx::new(on_answer).key(n as u64);
        resolver.lookup(
            &mut client_ring,
            &format!("host{n}.sim"),
            RecordType::A,
            done,
        );
    }
    let client = Client {
        resolver: Some(resolver),
        results: (0..NAMES).map(|_| Vec::new()).collect(),
    };
    let mut client = (client_ring, client);
    world
        .run(&mut [&mut server, &mut client], Duration::from_secs(60))
        .expect("running the world");
    (client.1.results, world.log_hash(), world.faults())
}

#[test]
fn every_lookup_ends_once_with_the_tables_answer_or_an_honest_error() {
    let mut answered = 0;
    let mut faults = FaultCounts::default();
    for seed in 0..SEEDS {
        let (results, _, injected) = lookups(seed);
        faults.merge(&injected);
        for (n, ends) in results.into_iter().enumerate() {
            let name = format!("host{n}.sim");
            assert_eq!(
                ends.len(),
                1,
                "seed {seed}: {name} ended {} times",
                ends.len()
            );
            let end = ends.into_iter().next().expect("one end");
            match (address_of(&name), end) {
                (Some(address), Ok(answer)) => {
                    assert_eq!(
                        answer.records,
                        vec![Record::A(address)],
                        "seed {seed}: {name}"
                    );
                    answered += 1;
                }
                (None, Ok(answer)) => panic!("seed {seed}: {name} does not exist: {answer:?}"),
                (Some(_), Err(err)) => assert_ne!(
                    err.kind(),
                    io::ErrorKind::NotFound,
                    "seed {seed}: {name} exists"
                ),
                (None, Err(_)) => {}
            }
        }
    }
    assert!(answered > 0, "some lookups were answered");
    for class in ["udp_loss", "udp_duplicate", "udp_reorder"] {
        assert!(faults.0.contains_key(class), "{class} injected: {faults:?}");
    }
}

#[test]
fn a_seed_replays_its_lookups_exactly() {
    for seed in [3, 17, 99] {
        let (first, hash, _) = lookups(seed);
        let (again, hash_again, _) = lookups(seed);
        assert_eq!(hash, hash_again, "seed {seed} replays");
        let show = |r: &Ends| format!("{r:?}");
        assert_eq!(show(&first), show(&again));
    }
}
