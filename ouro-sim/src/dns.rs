//! The dns scenario: ouro-net's resolver on a client ring asking a DNS
//! server node that answers from a table over simulated UDP, with
//! datagrams lost, duplicated and reordered by the seed and a spoofed
//! reply (another ID, a wrong address) sent ahead of a quarter of the
//! answers. A third of the names have answers too large for UDP: the
//! server sends them with TC set and no records, and serves them over
//! simulated TCP (`dns_tcp.rs`), where the resolver must ask again.
//! Every lookup must end exactly once, with the table's answer or an
//! honest error, and with the faults off every name must resolve.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ouro::net::{Domain, Type};
use ouro::sim::{Config as WorldConfig, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd, Task};
use ouro_net::dns::{answer, Answer, Config, Hosts, Record, RecordType, Resolver};
use simple_dns::rdata::{RData, A};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

use crate::dns_tcp::TcpSide;
use crate::Load;

const SERVER: ([u8; 4], u16) = ([10, 0, 0, 53], 53);
const QUERY_SIZE: usize = 512;
/// Virtual time the safety phase may take.
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Half the seeds end their safety phase at a seeded time below this, so
/// that their liveness phase starts with lookups under way.
const SAFETY_CUT_NS: u64 = 300_000_000;
/// Virtual time, with faults off, in which every lookup must end.
const LIVENESS_BOUND: Duration = Duration::from_secs(10);

/// The address the server's table gives `name`: `hostN.sim` has one for
/// even N; odd N do not exist.
pub fn address_of(name: &str) -> Option<Ipv4Addr> {
    let n: u8 = name
        .strip_prefix("host")?
        .strip_suffix(".sim")?
        .parse()
        .ok()?;
    (n % 2 == 0).then_some(Ipv4Addr::new(192, 0, 2, n))
}

/// Whether the server answers `name` over TCP only: `hostN.sim` for N a
/// multiple of 3 (in the table or not).
pub fn only_over_tcp(name: &str) -> bool {
    name.strip_prefix("host")
        .and_then(|n| n.strip_suffix(".sim"))
        .and_then(|n| n.parse::<u8>().ok())
        .is_some_and(|n| n % 3 == 0)
}

/// The server: answers each query from the table; when the world's user
/// stream says so, first sends a reply with another ID and a wrong
/// address, which the resolver must ignore.
pub struct DnsServer {
    tcp: TcpSide<DnsServer>,
    fd: Option<RingFd>,
    receiving: Option<Task>,
    stopping: bool,
    world: World,
}

impl DnsServer {
    fn on_completion(&mut self, ring: &mut Ring<DnsServer>, c: Completion) -> io::Result<()> {
        match c.outcome {
            Outcome::Socket(fd) => {
                let fd = ring.register_fd(fd?);
                self.fd = Some(fd);
                let ctx = Ctx::new(DnsServer::on_completion);
                ring.bind(fd, SocketAddr::from(SERVER), ctx);
            }
            Outcome::Bind(res) => {
                res?;
                self.receive(ring, Vec::with_capacity(QUERY_SIZE))?;
            }
            Outcome::RecvFrom(res, buf) => {
                self.receiving = None;
                if self.stopping {
                    if let Some(fd) = self.fd.take() {
                        ring.close(fd, Ctx::none());
                    }
                    return Ok(());
                }
                let mut query = buf.into_vec();
                if let (Ok(datagram), Some(fd)) = (res, self.fd) {
                    if let Some(reply) = reply_to(&query, Reply::OverUdp) {
                        if self.world.random() % 4 == 0 {
                            if let Some(spoofed) = reply_to(&query, Reply::Spoofed) {
                                let ctx = Ctx::new(DnsServer::on_completion);
                                ring.send_to(fd, spoofed, datagram.from.clone(), ctx);
                            }
                        }
                        ring.send_to(fd, reply, datagram.from, Ctx::new(DnsServer::on_completion));
                    }
                }
                // A failed receive (an injected error) leaves the socket
                // as it was; the same buffer takes the next query.
                query.clear();
                self.receive(ring, query)?;
            }
            // A reply that could not be sent is a lost datagram.
            Outcome::SendTo(..) => {}
            other => return Err(io::Error::other(format!("dns server: {other:?}"))),
        }
        Ok(())
    }

    fn on_tcp_completion(&mut self, ring: &mut Ring<DnsServer>, c: Completion) -> io::Result<()> {
        self.tcp
            .on_completion(ring, c, |query| reply_to(query, Reply::OverTcp))
    }

    fn receive(&mut self, ring: &mut Ring<DnsServer>, buf: Vec<u8>) -> io::Result<()> {
        let fd = self
            .fd
            .ok_or_else(|| io::Error::other("dns server: no socket"))?;
        let ctx = Ctx::new(DnsServer::on_completion);
        self.receiving = Some(ring.recv_from(fd, buf, ctx));
        Ok(())
    }

    /// Stops receiving; the socket closes once the receive has ended.
    fn stop(&mut self, ring: &mut Ring<DnsServer>) {
        self.stopping = true;
        self.tcp.stop(ring);
        match self.receiving {
            Some(task) => {
                ring.cancel(task, Ctx::none());
            }
            None => {
                if let Some(fd) = self.fd.take() {
                    ring.close(fd, Ctx::none());
                }
            }
        }
    }
}

/// Which reply the server makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Over UDP: the table's answer, or TC set for a name answered over
    /// TCP only.
    OverUdp,
    /// Over TCP: the table's answer.
    OverTcp,
    /// Over UDP, ahead of the real one: another ID and a wrong address.
    Spoofed,
}

/// The reply to `query` from the table. `None` for a message that is no
/// query.
fn reply_to(query: &[u8], kind: Reply) -> Option<Vec<u8>> {
    let query = Packet::parse(query).ok()?;
    let question = query.questions.first()?.clone().into_owned();
    let spoofed = kind == Reply::Spoofed;
    if kind == Reply::OverUdp && only_over_tcp(&question.qname.to_string()) {
        let mut packet = Packet::new_reply(query.id());
        packet.set_flags(PacketFlag::RECURSION_AVAILABLE | PacketFlag::TRUNCATION);
        packet.questions.push(question);
        return packet.build_bytes_vec().ok();
    }
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
    let address = match (found, spoofed) {
        (None, false) => {
            *packet.rcode_mut() = RCODE::NameError;
            None
        }
        _ if !asks_a => None,
        (_, true) => Some(Ipv4Addr::new(203, 0, 113, 66)),
        (found, false) => found,
    };
    if let Some(address) = address {
        let rdata = RData::A(A {
            address: address.into(),
        });
        packet
            .answers
            .push(ResourceRecord::new(name, CLASS::IN, 60, rdata));
    }
    packet.build_bytes_vec().ok()
}

/// One lookup: its name, whether it belongs to the liveness phase, and
/// each way it ended (exactly one is right).
struct Lookup {
    name: String,
    liveness: bool,
    ends: Vec<io::Result<Answer>>,
}

/// The client: a resolver making rounds of lookups, one per name, each
/// round starting when the last one's lookups have all ended.
pub struct Client {
    resolver: Option<Resolver<Client>>,
    names: usize,
    rounds_left: u32,
    /// Lookups of the current round not yet ended.
    outstanding: usize,
    lookups: Vec<Lookup>,
}

impl Client {
    fn pass_to_resolver(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        match self.resolver.as_mut() {
            Some(resolver) => resolver.on_completion(ring, c),
            None => Ok(()),
        }
    }

    fn on_answer(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        let lookup = &mut self.lookups[c.key() as usize];
        let first_end = lookup.ends.is_empty();
        let liveness = lookup.liveness;
        lookup.ends.push(answer(c));
        if first_end && !liveness {
            self.outstanding -= 1;
            if self.outstanding == 0 {
                self.next_round(ring);
            }
        }
        Ok(())
    }

    /// Starts a lookup of every name, unless the rounds are done.
    fn next_round(&mut self, ring: &mut Ring<Client>) {
        if self.rounds_left == 0 {
            return;
        }
        self.rounds_left -= 1;
        self.outstanding = self.names;
        self.look_up_every_name(ring, false);
    }

    fn look_up_every_name(&mut self, ring: &mut Ring<Client>, liveness: bool) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        for n in 0..self.names {
            let name = format!("host{n}.sim");
            let done = Ctx::new(Client::on_answer).key(self.lookups.len() as u64);
            resolver.lookup(ring, &name, RecordType::A, done);
            self.lookups.push(Lookup {
                name,
                liveness,
                ends: Vec::new(),
            });
        }
    }

    /// Reports every lookup that did not end exactly once, or ended with
    /// an answer the table does not give; liveness lookups of names in the
    /// table must have been answered, and of the others refused.
    fn check(&self, world: &World) -> Answered {
        let mut answered = Answered::default();
        for (i, lookup) in self.lookups.iter().enumerate() {
            let name = &lookup.name;
            let phase = if lookup.liveness {
                "liveness"
            } else {
                "safety"
            };
            let [end] = &lookup.ends[..] else {
                world.report(format!(
                    "dns: {phase} lookup {i} of {name} ended {} times (not once)",
                    lookup.ends.len()
                ));
                continue;
            };
            match (address_of(name), end) {
                (Some(address), Ok(answer)) if answer.records == [Record::A(address)] => {
                    answered.lookups += 1;
                }
                (Some(address), Ok(answer)) => world.report(format!(
                    "dns: lookup {i} of {name} answered {:?}, the table says {address}",
                    answer.records
                )),
                (None, Ok(answer)) => world.report(format!(
                    "dns: lookup {i} of {name}, which does not exist, answered {:?}",
                    answer.records
                )),
                (Some(_), Err(err)) if err.kind() == io::ErrorKind::NotFound || lookup.liveness => {
                    world.report(format!(
                        "dns: {phase} lookup {i} of {name}, which exists, failed: {err}"
                    ))
                }
                (None, Err(err)) if lookup.liveness && err.kind() != io::ErrorKind::NotFound => {
                    world.report(format!(
                        "dns: liveness lookup {i} of {name}, which does not exist, \
                         failed otherwise: {err}"
                    ))
                }
                _ => {}
            }
        }
        answered
    }
}

/// What the lookups came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Lookups answered with the table's address.
    pub lookups: usize,
    /// Replies the server sent whole over TCP.
    pub over_tcp: usize,
}

/// Runs the dns scenario in `world`: one resolver making `load.rounds`
/// rounds of lookups of `2 × load.clients` names (half in the table), a
/// round starting when the last has ended, in a safety phase with the
/// world's faults (ended early at a seeded time in half the seeds); then a
/// liveness phase with the faults off in which one more lookup of every
/// name must end with the table's answer (or `NotFound`) within 10 s of
/// virtual time; then shutdown. Violations go to the world.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_phases(world, load).map(|_| ())
}

/// [`run`], returning how many lookups were answered with the table's
/// address and how many replies went over TCP.
pub fn run_phases(world: &World, load: Load) -> io::Result<Answered> {
    let mut server_ring: Ring<DnsServer> = Ring::simulated(world);
    server_ring.socket(
        Domain::IPV4,
        Type::DGRAM,
        None,
        Ctx::new(DnsServer::on_completion),
    );
    let tcp = TcpSide::start(
        &mut server_ring,
        world,
        SocketAddr::from(SERVER),
        Ctx::new(DnsServer::on_tcp_completion),
    );
    let server = DnsServer {
        tcp,
        fd: None,
        receiving: None,
        stopping: false,
        world: world.clone(),
    };
    let mut server = (server_ring, server);
    // The server is up before the first query.
    world.run(&mut [&mut server], Duration::from_secs(1))?;
    let mut client_ring: Ring<Client> = Ring::simulated(world);
    let config = Config {
        nameservers: vec![SocketAddr::from(SERVER)],
        timeout: Duration::from_millis(200),
        attempts: 3,
        ..Config::default()
    };
    let resolver = Resolver::new(
        &mut client_ring,
        config,
        Hosts::default(),
        Ctx::new(Client::pass_to_resolver),
    )?;
    let mut client = Client {
        resolver: Some(resolver),
        names: 2 * load.clients as usize,
        rounds_left: load.rounds,
        outstanding: 0,
        lookups: Vec::new(),
    };
    client.next_round(&mut client_ring);
    let mut client = (client_ring, client);
    let cut = world.seeded("dns/safety_phase");
    let safety = if cut % 2 == 0 {
        SAFETY_TIME
    } else {
        Duration::from_nanos((cut >> 1) % SAFETY_CUT_NS)
    };
    world.run(&mut [&mut server, &mut client], safety)?;
    world.set_config(WorldConfig::calm());
    let (ring, state) = &mut client;
    state.look_up_every_name(ring, true);
    world.run(&mut [&mut server, &mut client], LIVENESS_BOUND)?;
    let mut answered = client.1.check(world);
    let (ring, state) = &mut client;
    state.rounds_left = 0;
    if let Some(mut resolver) = state.resolver.take() {
        resolver.cancel_all(ring);
    }
    let (ring, state) = &mut server;
    state.stop(ring);
    world.run(&mut [&mut server, &mut client], LIVENESS_BOUND)?;
    answered.over_tcp = server.1.tcp.replies;
    Ok(answered)
}
