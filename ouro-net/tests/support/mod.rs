//! What the resolver's tests share: a scripted DNS server on loopback, a
//! ring that runs one lookup, open fd counts.

#![allow(dead_code)]

pub mod dnsmasq;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_net::dns::{answer, Answer, Config, Hosts, RecordType, Resolver};
use simple_dns::rdata::{RData, A, AAAA, CNAME, TXT};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, RCODE};

/// What the server does with one query over UDP: the datagrams to send
/// back (each through `socket`, or through a socket of another port).
pub enum Send {
    Reply(Vec<u8>),
    FromOtherPort(Vec<u8>),
}

/// The script: called for every UDP query with its number (0 first).
pub type Script = Box<dyn FnMut(usize, &[u8]) -> Vec<Send> + std::marker::Send>;
/// The TCP script: the whole answer (without its length) to one query.
pub type TcpScript = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + std::marker::Send>;

/// A DNS server on 127.0.0.1 (UDP and TCP on one port) in a thread,
/// answering as its scripts say; stopped when dropped.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ScriptedServer {
    pub fn start(mut script: Script, tcp: Option<TcpScript>) -> ScriptedServer {
        let (udp, listener) = bind_pair();
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let stopping = stop.clone();
        // Made here, not in the thread: fd counts taken after `start` see it.
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            let mut count = 0;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                for send in script(count, &buf[..n]) {
                    let _ = match send {
                        Send::Reply(bytes) => udp.send_to(&bytes, peer),
                        Send::FromOtherPort(bytes) => other.send_to(&bytes, peer),
                    };
                }
                count += 1;
            }
        }));
        if let Some(tcp) = tcp {
            listener.set_nonblocking(true).unwrap();
            let stopping = stop.clone();
            threads.push(std::thread::spawn(move || {
                serve_tcp(listener, tcp, stopping)
            }));
        }
        ScriptedServer {
            addr,
            stop,
            threads,
        }
    }

    /// A config naming this server only, with a short timeout and one
    /// attempt.
    pub fn config(&self) -> Config {
        Config {
            nameservers: vec![self.addr],
            timeout: Duration::from_millis(300),
            attempts: 1,
            ..Config::default()
        }
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
            return (udp, listener);
        }
    }
}

fn serve_tcp(listener: TcpListener, mut script: TcpScript, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        stream.set_nonblocking(false).unwrap();
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            continue;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).is_err() {
            continue;
        }
        let Some(reply) = script(&query) else {
            continue;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        // In pieces, so that the resolver may see partial reads.
        for piece in framed.chunks(700) {
            let _ = stream.write_all(piece);
            let _ = stream.flush();
        }
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A reply to `query` with `answers` built by `fill`, and `rcode`.
pub fn reply(
    query: &[u8],
    rcode: RCODE,
    fill: impl FnOnce(&mut Packet<'static>, &Name<'static>),
) -> Vec<u8> {
    let query = Packet::parse(query).unwrap();
    let mut packet = Packet::new_reply(query.id());
    packet.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *packet.rcode_mut() = rcode;
    let question = query.questions[0].clone().into_owned();
    let name = question.qname.clone();
    packet.questions.push(question);
    fill(&mut packet, &name);
    packet.build_bytes_vec().unwrap()
}

/// The question's type as the resolver's `RecordType` (A or AAAA here).
pub fn asks_aaaa(query: &[u8]) -> bool {
    let query = Packet::parse(query).unwrap();
    query.questions[0].qtype == simple_dns::QTYPE::TYPE(simple_dns::TYPE::AAAA)
}

pub fn asked_name(query: &[u8]) -> String {
    Packet::parse(query).unwrap().questions[0].qname.to_string()
}

pub fn has_edns(query: &[u8]) -> bool {
    Packet::parse(query).unwrap().opt().is_some()
}

/// An answer of A records for an A question and nothing for AAAA.
pub fn a_reply(query: &[u8], addrs: &[Ipv4Addr]) -> Vec<u8> {
    let v6 = asks_aaaa(query);
    reply(query, RCODE::NoError, |p, name| {
        if !v6 {
            for addr in addrs {
                p.answers.push(a_record(name, *addr));
            }
        }
    })
}

pub fn a_record(name: &Name<'static>, addr: Ipv4Addr) -> ResourceRecord<'static> {
    ResourceRecord::new(
        name.clone(),
        CLASS::IN,
        60,
        RData::A(A {
            address: addr.into(),
        }),
    )
}

pub fn aaaa_record(name: &Name<'static>, addr: std::net::Ipv6Addr) -> ResourceRecord<'static> {
    ResourceRecord::new(
        name.clone(),
        CLASS::IN,
        60,
        RData::AAAA(AAAA {
            address: addr.into(),
        }),
    )
}

pub fn cname_record(name: &Name<'static>, target: &str) -> ResourceRecord<'static> {
    let target = Name::new_unchecked(target).into_owned();
    ResourceRecord::new(name.clone(), CLASS::IN, 60, RData::CNAME(CNAME(target)))
}

pub fn txt_record(name: &Name<'static>, text: &'static str) -> ResourceRecord<'static> {
    ResourceRecord::new(
        name.clone(),
        CLASS::IN,
        60,
        RData::TXT(TXT::new().with_string(text).unwrap()),
    )
}

/// The test's state: the resolver and the answers its lookups gave.
pub struct State {
    pub resolver: Option<Resolver<State>>,
    pub answers: Vec<io::Result<Answer>>,
}

pub fn to_resolver(state: &mut State, ring: &mut Ring<State>, c: Completion) -> io::Result<()> {
    match state.resolver.as_mut() {
        Some(resolver) => resolver.on_completion(ring, c),
        None => Ok(()), // dropped: the completion (and its socket) goes too
    }
}

pub fn on_answer(state: &mut State, _: &mut Ring<State>, c: Completion) -> io::Result<()> {
    state.answers.push(answer(c));
    Ok(())
}

pub fn new_state(ring: &mut Ring<State>, config: Config, hosts: Hosts) -> State {
    let resolver = Resolver::new(ring, config, hosts, Ctx::new(to_resolver)).unwrap();
    State {
        resolver: Some(resolver),
        answers: Vec::new(),
    }
}

/// Runs one lookup of `qtype` (None: both address families) to its end.
pub fn resolve(
    config: Config,
    hosts: Hosts,
    name: &str,
    qtype: Option<RecordType>,
) -> io::Result<Answer> {
    let mut ring = Ring::new(64).unwrap();
    let mut state = new_state(&mut ring, config, hosts);
    let resolver = state.resolver.as_mut().unwrap();
    match qtype {
        Some(t) => resolver.lookup(&mut ring, name, t, Ctx::new(on_answer)),
        None => resolver.lookup_ip(&mut ring, name, Ctx::new(on_answer)),
    };
    ring.run(&mut state, RunMode::UntilDone).unwrap();
    assert_eq!(state.answers.len(), 1, "exactly one completion per lookup");
    state.answers.pop().unwrap()
}

/// Tests that count fds run one at a time (within their binary).
pub static FD_COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process's open fds.
pub fn open_fds() -> usize {
    if std::env::var_os("SHOW_FDS").is_some() {
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
        }
    }
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Replaces the file at `path` by a rename of a new one holding `text`
/// (which must be as long as the old contents), with the old modification
/// time: only the inode tells the two apart.
pub fn replace_keeping_size_and_mtime(path: &std::path::Path, text: &str) {
    let next = path.with_extension("new");
    std::fs::write(&next, text).unwrap();
    let old = std::fs::metadata(path).unwrap();
    let file = std::fs::File::options().write(true).open(&next).unwrap();
    file.set_modified(old.modified().unwrap()).unwrap();
    drop(file);
    std::fs::rename(&next, path).unwrap();
    let new = std::fs::metadata(path).unwrap();
    assert_eq!(
        (new.len(), new.modified().unwrap()),
        (old.len(), old.modified().unwrap())
    );
}

/// Makes a FIFO at `path` (with `mkfifo`, so no `unsafe` here).
pub fn make_fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
}
