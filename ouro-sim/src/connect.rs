//! The connect scenario: ouro-net's connect by name (Happy Eyeballs v2)
//! on a client ring, against names whose AAAA and A records lead to
//! addresses that listen (an echo server), refuse (nothing listens), or
//! never answer (a blackhole, see [`World::blackhole`]), with the name
//! server holding back some AAAA answers (`connect_dns.rs`) and the
//! seed's faults and partitions in between.
//!
//! Checked: each connect ends exactly once; a connection is to a listening
//! address of its name and carries an echo exchange; an error comes only
//! when it may (with the faults off: only for names where nothing listens,
//! and then the right one); the attempts' sockets are all closed at the
//! end (no simulated fd open). With the faults off (the liveness phase)
//! the timing rules are checked against the world's clock: which address
//! wins and when, for the 50 ms resolution delay, the 250 ms stagger and
//! the next attempt at once after a failure.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use ouro::sim::{Config as WorldConfig, World};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd};
use ouro_net::connect::{connected, Connector};
use ouro_net::dns::{Config, Hosts};

use crate::connect_dns::NameServer;
use crate::echo_server::EchoServer;
use crate::Load;

/// Where the name server answers.
const NAME_SERVER: ([u8; 4], u16) = ([10, 0, 0, 53], 53);
/// The port every address of the table is asked on.
pub const PORT: u16 = 80;
/// Each connect's deadline, for the whole operation.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(3);
const SAFETY_TIME: Duration = Duration::from_secs(60);
/// Half the seeds end their safety phase at a seeded time below this.
const SAFETY_CUT_NS: u64 = 600_000_000;
const LIVENESS_BOUND: Duration = Duration::from_secs(10);
const ECHO_PROBE: usize = 24;

/// What an address of the table does with a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Does {
    /// The echo server listens on it.
    Listens,
    /// Nothing listens: refused at once.
    Refuses,
    /// A blackhole: no answer ever.
    Blackhole,
}

/// One address of the table.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// The address.
    pub ip: IpAddr,
    /// What it does with a connect.
    pub does: Does,
}

const fn v6(last: u16, does: Does) -> Host {
    Host {
        ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)),
        does,
    }
}

const fn v4(last: u8, does: Does) -> Host {
    Host {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        does,
    }
}

/// One name of the table, and what connecting to it must come to with
/// the faults off.
#[derive(Debug)]
pub struct Name {
    /// The name.
    pub name: &'static str,
    /// Its AAAA records, in the server's order.
    pub v6: &'static [Host],
    /// Its A records, in the server's order.
    pub v4: &'static [Host],
    /// How long the server holds back its AAAA answer.
    pub aaaa_delay: Duration,
    /// With the faults off: the address that wins (`None`: the connect
    /// fails) and the window of virtual time in which it ends.
    pub calm: (Option<IpAddr>, Range<Duration>),
}

use Does::{Blackhole, Listens, Refuses};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The names, the rule each one checks in its comment.
pub const NAMES: &[Name] = &[
    // IPv6 first when both answers come at once (RFC 6724 puts a global
    // IPv6 address before an IPv4 one).
    Name {
        name: "both.sim",
        v6: &[v6(1, Listens)],
        v4: &[v4(1, Listens)],
        aaaa_delay: ms(0),
        calm: (Some(v6(1, Listens).ip), ms(0)..ms(50)),
    },
    // A failed attempt starts the next at once.
    Name {
        name: "v6-refused.sim",
        v6: &[v6(2, Refuses)],
        v4: &[v4(2, Listens)],
        aaaa_delay: ms(0),
        calm: (Some(v4(2, Listens).ip), ms(0)..ms(50)),
    },
    // An attempt without answer: the next starts 250 ms later.
    Name {
        name: "v6-blackhole.sim",
        v6: &[v6(3, Blackhole)],
        v4: &[v4(3, Listens)],
        aaaa_delay: ms(0),
        calm: (Some(v4(3, Listens).ip), ms(250)..ms(300)),
    },
    // AAAA late: IPv4 goes ahead 50 ms after the A answer.
    Name {
        name: "slow-aaaa.sim",
        v6: &[v6(4, Listens)],
        v4: &[v4(4, Listens)],
        aaaa_delay: ms(150),
        calm: (Some(v4(4, Listens).ip), ms(50)..ms(100)),
    },
    // AAAA within the resolution delay: IPv6 still goes first.
    Name {
        name: "quick-aaaa.sim",
        v6: &[v6(5, Listens)],
        v4: &[v4(5, Listens)],
        aaaa_delay: ms(20),
        calm: (Some(v6(5, Listens).ip), ms(20)..ms(50)),
    },
    // Families interleaved: v6 blackhole, v4 refused, v6 refused, v4
    // blackhole (after 250 ms), v6 listening (after 500 ms).
    Name {
        name: "many.sim",
        v6: &[v6(6, Blackhole), v6(7, Refuses), v6(8, Listens)],
        v4: &[v4(6, Refuses), v4(7, Blackhole), v4(8, Listens)],
        aaaa_delay: ms(0),
        calm: (Some(v6(8, Listens).ip), ms(500)..ms(550)),
    },
    // No AAAA records: IPv4 at once.
    Name {
        name: "v4-only.sim",
        v6: &[],
        v4: &[v4(11, Listens)],
        aaaa_delay: ms(0),
        calm: (Some(v4(11, Listens).ip), ms(0)..ms(50)),
    },
    // Everything refuses: the last refusal, at once.
    Name {
        name: "refused.sim",
        v6: &[v6(9, Refuses)],
        v4: &[v4(9, Refuses)],
        aaaa_delay: ms(0),
        calm: (None, ms(0)..ms(50)),
    },
    // Nothing listens and one never answers: the deadline.
    Name {
        name: "none.sim",
        v6: &[v6(10, Refuses)],
        v4: &[v4(10, Blackhole)],
        aaaa_delay: ms(0),
        calm: (
            None,
            CONNECT_DEADLINE..CONNECT_DEADLINE.saturating_add(ms(10)),
        ),
    },
    // Not in the table: NXDOMAIN.
    Name {
        name: "missing.sim",
        v6: &[],
        v4: &[],
        aaaa_delay: ms(0),
        calm: (None, ms(0)..ms(50)),
    },
];

impl Name {
    fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.v6.iter().chain(self.v4)
    }

    fn listens_on(&self, ip: IpAddr) -> bool {
        self.hosts().any(|h| h.ip == ip && h.does == Listens)
    }

    /// The error connecting must end with when nothing listens.
    fn calm_error(&self, err: &io::Error) -> bool {
        if self.hosts().next().is_none() {
            err.kind() == io::ErrorKind::NotFound
        } else if self.hosts().any(|h| h.does == Blackhole) {
            err.raw_os_error() == Some(libc::ETIME)
        } else {
            err.kind() == io::ErrorKind::ConnectionRefused
        }
    }
}

/// Every address of `names` the echo server listens on.
pub fn listening(names: &[Name]) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = names
        .iter()
        .flat_map(Name::hosts)
        .filter(|h| h.does == Listens)
        .map(|h| SocketAddr::new(h.ip, PORT))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// One connect: which name, in which phase, when it started, each way it
/// ended, and what its echo exchange came to.
struct Record {
    name: &'static Name,
    liveness: bool,
    /// Started with the faults off: the table's outcome and window hold.
    calm: bool,
    started: Duration,
    ends: Vec<(Duration, io::Result<SocketAddr>)>,
    fd: Option<RingFd>,
    /// What is left to send of the echo probe.
    probe: Vec<u8>,
    echoed: Vec<u8>,
    echo: Option<Result<(), String>>,
}

ouro::messages! {
    enum Msg { Sent, Received }
}

/// The client: a connector making rounds of connects, one per name, each
/// round starting when the last one's connects and echoes have ended.
pub struct Client {
    names: &'static [Name],
    connector: Option<Connector<Client>>,
    world: World,
    rounds_left: u32,
    outstanding: usize,
    records: Vec<Record>,
}

impl Client {
    fn pass_to_connector(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        match self.connector.as_mut() {
            Some(connector) => connector.on_completion(ring, c),
            None => Ok(()),
        }
    }

    fn next_round(&mut self, ring: &mut Ring<Client>) {
        if self.rounds_left == 0 {
            return;
        }
        self.rounds_left -= 1;
        self.outstanding = self.names.len();
        self.connect_to_every_name(ring, false);
    }

    fn connect_to_every_name(&mut self, ring: &mut Ring<Client>, liveness: bool) {
        let Some(connector) = self.connector.as_mut() else {
            return;
        };
        let calm = self.world.config() == WorldConfig::calm();
        for name in self.names {
            let done = Ctx::new(Client::on_connected).key(self.records.len() as u64);
            let id = connector.connect(ring, name.name, PORT, done);
            let deadline = ring.now() + CONNECT_DEADLINE;
            if let Err(err) = connector.set_deadline(ring, id, deadline) {
                self.world
                    .report(format!("connect: no deadline for {}: {err}", name.name));
            }
            self.records.push(Record {
                name,
                liveness,
                calm,
                started: self.world.now(),
                ends: Vec::new(),
                fd: None,
                probe: Vec::new(),
                echoed: Vec::new(),
                echo: None,
            });
        }
    }

    fn on_connected(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        let key = c.key();
        let now = self.world.now();
        let record = &mut self.records[key as usize];
        let first_end = record.ends.is_empty();
        match connected(c) {
            Ok(conn) => {
                record.ends.push((now, Ok(conn.peer)));
                if !first_end {
                    // Its fd closes here: only the first end is used.
                    return Ok(());
                }
                let fd = ring.register_fd(conn.fd);
                record.fd = Some(fd);
                record.probe = (0..ECHO_PROBE as u64)
                    .map(|i| (key.wrapping_mul(31) + i) as u8)
                    .collect();
                let ctx = Ctx::new(Client::on_echo).msg(Msg::Sent).key(key);
                ring.send(fd, record.probe.clone(), ctx);
            }
            Err(err) => {
                record.ends.push((now, Err(err)));
                if first_end {
                    self.ended(ring, key);
                }
            }
        }
        Ok(())
    }

    fn on_echo(&mut self, ring: &mut Ring<Client>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let record = &mut self.records[key as usize];
        let Some(fd) = record.fd else {
            return Ok(());
        };
        let failed = match (msg, outcome) {
            (Msg::Sent, Outcome::Send(Ok(n), _)) => {
                // What is left of the probe goes next (after a short write).
                record.probe.drain(..n.min(record.probe.len()));
                if !record.probe.is_empty() {
                    let ctx = Ctx::new(Client::on_echo).msg(Msg::Sent).key(key);
                    ring.send(fd, record.probe.clone(), ctx);
                    return Ok(());
                }
                None
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 => {
                record.echoed.extend_from_slice(&buf);
                None
            }
            (_, other) => Some(format!("{other:?}")),
        };
        if let Some(failed) = failed {
            record.echo = Some(Err(failed));
        } else if record.echoed.len() >= ECHO_PROBE {
            let expected: Vec<u8> = (0..ECHO_PROBE as u64)
                .map(|i| (key.wrapping_mul(31) + i) as u8)
                .collect();
            record.echo = Some(match record.echoed == expected {
                true => Ok(()),
                false => Err(format!("echoed {:?}", record.echoed)),
            });
        } else {
            let ctx = Ctx::new(Client::on_echo).msg(Msg::Received).key(key);
            ring.recv(fd, Vec::with_capacity(ECHO_PROBE), ctx);
            return Ok(());
        }
        if let Some(fd) = record.fd.take() {
            ring.close(fd, Ctx::none());
        }
        self.ended(ring, key);
        Ok(())
    }

    /// A connect and its echo are over: the round goes on.
    fn ended(&mut self, ring: &mut Ring<Client>, key: u64) {
        if self.records[key as usize].liveness {
            return;
        }
        self.outstanding -= 1;
        if self.outstanding == 0 {
            self.next_round(ring);
        }
    }

    /// Reports each connect that did not end exactly once, reached an
    /// address where nothing listens, failed its echo when it need not,
    /// or (started with the faults off) failed or broke a timing rule.
    fn check(&self, world: &World) {
        for (i, r) in self.records.iter().enumerate() {
            let name = r.name.name;
            let phase = if r.liveness { "liveness" } else { "safety" };
            let [(at, end)] = &r.ends[..] else {
                world.report(format!(
                    "connect: {phase} connect {i} to {name} ended {} times (not once)",
                    r.ends.len()
                ));
                continue;
            };
            let took = *at - r.started;
            match end {
                Ok(peer) if peer.port() != PORT || !r.name.listens_on(peer.ip()) => world.report(
                    format!("connect: {phase} connect {i} to {name} reached {peer}, where nothing listens"),
                ),
                Ok(peer) => match &r.echo {
                    Some(Ok(())) => {}
                    Some(Err(why)) if r.calm || why.starts_with("echoed") => {
                        world.report(format!(
                            "connect: {phase} connect {i} to {name} ({peer}): echo failed: {why}"
                        ))
                    }
                    Some(Err(_)) => {}
                    None => world.report(format!(
                        "connect: {phase} connect {i} to {name} ({peer}): echo never ended"
                    )),
                },
                Err(_) if !r.calm => {}
                Err(err) if r.name.calm.0.is_some() || !r.name.calm_error(err) => {
                    world.report(format!(
                        "connect: {phase} connect {i} to {name} failed with the faults off: \
                         {err} ({:?})",
                        err.kind()
                    ))
                }
                Err(_) => {}
            }
            if !r.calm {
                continue;
            }
            let (winner, window) = &r.name.calm;
            let reached = end.as_ref().ok().map(|peer| peer.ip());
            if reached != *winner || !window.contains(&took) {
                world.report(format!(
                    "connect: Happy Eyeballs with the faults off: {name} reached {reached:?} \
                     after {took:?}; the rules say {winner:?} within {window:?}"
                ));
            }
        }
    }
}

/// Runs the connect scenario in `world`: `load.rounds` rounds of a connect
/// to every name of [`NAMES`] (each with a 3 s deadline), a round starting
/// when the last has ended, in a safety phase with the world's faults
/// (ended early at a seeded time in half the seeds); then a liveness phase
/// with the faults off in which one more connect to every name must come
/// to what the table says, in its window of virtual time; then shutdown.
/// `load.clients` is not used: one connector makes every connect.
/// Violations go to the world.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_with(world, load, NAMES)
}

/// [`run`] with another table of names (a test's, to see the checkers
/// catch a rule broken).
pub fn run_with(world: &World, load: Load, table: &'static [Name]) -> io::Result<()> {
    for host in table.iter().flat_map(Name::hosts) {
        if host.does == Blackhole {
            world.blackhole(host.ip);
        }
    }
    let mut names_ring: Ring<NameServer> = Ring::simulated(world);
    let names = NameServer::start(&mut names_ring, table, SocketAddr::from(NAME_SERVER));
    let mut names = (names_ring, names);
    let mut echo_ring: Ring<EchoServer> = Ring::simulated(world);
    let echo = EchoServer::start(&mut echo_ring, &listening(table));
    let mut echo = (echo_ring, echo);
    // The servers are up before the first connect.
    world.run(&mut [&mut names, &mut echo], Duration::from_secs(1))?;
    let mut client_ring: Ring<Client> = Ring::simulated(world);
    let config = Config {
        nameservers: vec![SocketAddr::from(NAME_SERVER)],
        timeout: Duration::from_millis(200),
        attempts: 3,
        ..Config::default()
    };
    let connector = Connector::new(
        &mut client_ring,
        config,
        Hosts::default(),
        Ctx::new(Client::pass_to_connector),
    )?;
    let mut client = Client {
        names: table,
        connector: Some(connector),
        world: world.clone(),
        rounds_left: load.rounds,
        outstanding: 0,
        records: Vec::new(),
    };
    client.next_round(&mut client_ring);
    let mut client = (client_ring, client);
    let cut = world.seeded("connect/safety_phase");
    let safety = if cut % 2 == 0 {
        SAFETY_TIME
    } else {
        Duration::from_nanos((cut >> 1) % SAFETY_CUT_NS)
    };
    world.run(&mut [&mut names, &mut echo, &mut client], safety)?;
    world.set_config(WorldConfig::calm());
    let (ring, state) = &mut client;
    state.rounds_left = 0;
    state.connect_to_every_name(ring, true);
    world.run(&mut [&mut names, &mut echo, &mut client], LIVENESS_BOUND)?;
    client.1.check(world);
    // Every connect has ended (each has a deadline): the connector goes,
    // with its resolver.
    client.1.connector = None;
    let (ring, state) = &mut names;
    state.stop(ring);
    let (ring, state) = &mut echo;
    state.stop(ring);
    world.run(&mut [&mut names, &mut echo, &mut client], LIVENESS_BOUND)?;
    Ok(())
}
