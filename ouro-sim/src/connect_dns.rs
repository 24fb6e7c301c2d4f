//! The connect scenario's name server: answers A and AAAA questions over
//! simulated UDP from the scenario's table of names,
//! holding back the AAAA answers of some names for a while (a timer per
//! reply), so that the answers arrive in the order Happy Eyeballs must
//! cope with.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ouro::net::{Domain, SockAddr, Type};
use ouro::{Completion, Ctx, Outcome, Ring, RingFd, Task};
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

use crate::connect::Name;

ouro::messages! {
    enum Msg { Socket, Bound, Received, Sent, Held }
}

const QUERY_SIZE: usize = 512;

/// The name server.
pub struct NameServer {
    names: &'static [Name],
    addr: SocketAddr,
    fd: Option<RingFd>,
    receiving: Option<Task>,
    /// Replies held back, by their timer's key, with where they go.
    held: BTreeMap<u64, (Task, Vec<u8>, SockAddr)>,
    next_key: u64,
    stopping: bool,
}

impl NameServer {
    /// A server that will answer on `addr` from `names` once its socket
    /// is bound.
    pub(crate) fn start(
        ring: &mut Ring<NameServer>,
        names: &'static [Name],
        addr: SocketAddr,
    ) -> NameServer {
        let ctx = Ctx::new(NameServer::on_completion).msg(Msg::Socket);
        ring.socket(Domain::IPV4, Type::DGRAM, None, ctx);
        NameServer {
            names,
            addr,
            fd: None,
            receiving: None,
            held: BTreeMap::new(),
            next_key: 0,
            stopping: false,
        }
    }

    fn on_completion(&mut self, ring: &mut Ring<NameServer>, c: Completion) -> io::Result<()> {
        let ctx = |msg: Msg| Ctx::new(NameServer::on_completion).msg(msg);
        match c.into_parts()? {
            (Msg::Socket, _, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                self.fd = Some(fd);
                ring.bind(fd, self.addr, ctx(Msg::Bound));
            }
            (Msg::Bound, _, Outcome::Bind(res)) => {
                res?;
                self.receive(ring, Vec::with_capacity(QUERY_SIZE));
            }
            (Msg::Received, _, Outcome::RecvFrom(res, buf)) => {
                self.receiving = None;
                if self.stopping {
                    self.close(ring);
                    return Ok(());
                }
                let mut query = buf.into_vec();
                if let (Ok(datagram), Some(fd)) = (res, self.fd) {
                    if let Some((reply, delay)) = reply_to(self.names, &query) {
                        if delay.is_zero() {
                            ring.send_to(fd, reply, datagram.from, ctx(Msg::Sent));
                        } else {
                            let key = self.next_key;
                            self.next_key += 1;
                            let timer = ring.timer(delay, ctx(Msg::Held).key(key));
                            self.held.insert(key, (timer, reply, datagram.from));
                        }
                    }
                }
                query.clear();
                self.receive(ring, query);
            }
            (Msg::Held, key, Outcome::Timer(res)) => {
                let held = self.held.remove(&key);
                if let (Ok(()), Some((_, reply, to)), Some(fd)) = (res, held, self.fd) {
                    ring.send_to(fd, reply, to, ctx(Msg::Sent));
                }
                if self.stopping {
                    self.close(ring);
                }
            }
            // A reply that could not be sent is a lost datagram.
            (Msg::Sent, _, Outcome::SendTo(..)) => {}
            (msg, _, outcome) => {
                return Err(io::Error::other(format!(
                    "name server: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn receive(&mut self, ring: &mut Ring<NameServer>, buf: Vec<u8>) {
        if let Some(fd) = self.fd {
            let ctx = Ctx::new(NameServer::on_completion).msg(Msg::Received);
            self.receiving = Some(ring.recv_from(fd, buf, ctx));
        }
    }

    /// Stops answering: the receive and the held replies are cancelled,
    /// and the socket closes once they have ended.
    pub(crate) fn stop(&mut self, ring: &mut Ring<NameServer>) {
        self.stopping = true;
        for (timer, _, _) in self.held.values() {
            ring.cancel(*timer, Ctx::none());
        }
        if let Some(task) = self.receiving {
            ring.cancel(task, Ctx::none());
        }
        self.close(ring);
    }

    fn close(&mut self, ring: &mut Ring<NameServer>) {
        if self.receiving.is_none() && self.held.is_empty() {
            if let Some(fd) = self.fd.take() {
                ring.close(fd, Ctx::none());
            }
        }
    }
}

/// The reply to `query` from `names`, and how long to hold it back.
/// `None` for a datagram that is no query.
fn reply_to(names: &[Name], query: &[u8]) -> Option<(Vec<u8>, Duration)> {
    let query = Packet::parse(query).ok()?;
    let question = query.questions.first()?.clone().into_owned();
    let mut packet = Packet::new_reply(query.id());
    packet.set_flags(PacketFlag::RECURSION_AVAILABLE);
    let qname = question.qname.clone();
    let asked = qname.to_string();
    let entry: Option<&Name> = names.iter().find(|n| n.name == asked);
    let aaaa = question.qtype == QTYPE::TYPE(TYPE::AAAA);
    let a = question.qtype == QTYPE::TYPE(TYPE::A);
    packet.questions.push(question);
    let Some(entry) = entry else {
        *packet.rcode_mut() = RCODE::NameError;
        return Some((packet.build_bytes_vec().ok()?, Duration::ZERO));
    };
    for host in entry.v6.iter().chain(entry.v4) {
        let rdata = match host.ip {
            IpAddr::V6(v6) if aaaa => RData::AAAA(AAAA { address: v6.into() }),
            IpAddr::V4(v4) if a => RData::A(A { address: v4.into() }),
            _ => continue,
        };
        let record = ResourceRecord::new(qname.clone(), CLASS::IN, 60, rdata);
        packet.answers.push(record);
    }
    let delay = if aaaa {
        entry.aaaa_delay
    } else {
        Duration::ZERO
    };
    Some((packet.build_bytes_vec().ok()?, delay))
}
