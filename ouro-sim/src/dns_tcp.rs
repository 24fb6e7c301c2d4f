//! The dns scenario's server over simulated TCP: it listens on the same
//! address as over UDP and answers each length-prefixed question with a
//! length-prefixed reply that it sends in pieces of seeded sizes, so that
//! the resolver's reads see the length and the message cut anywhere.

use std::io;
use std::net::SocketAddr;

use ouro::net::{Domain, Type};
use ouro::sim::World;
use ouro::{Completion, ConnTable, Ctx, Outcome, Ring, RingFd, Task};

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Accepted, Received, Sent }
}

const RECV_ROOM: usize = 1024;
/// A question longer than this (with its prefix) is not a resolver's.
const QUESTION_MOST: usize = 4096;

/// One connection: what has come in of its question, what is left to
/// send of the reply, and the receive in flight.
struct Conn {
    fd: RingFd,
    question: Vec<u8>,
    reply: Vec<u8>,
    receiving: Option<Task>,
}

/// The TCP side of the dns server, a component of the server's ring: the
/// server's callback for its tasks calls [`TcpSide::on_completion`].
pub struct TcpSide<S> {
    ctx: Ctx<S>,
    addr: SocketAddr,
    listener: Option<RingFd>,
    accepting: Option<Task>,
    conns: ConnTable<Conn>,
    stopping: bool,
    world: World,
    /// Replies sent whole over TCP.
    pub replies: usize,
}

impl<S> TcpSide<S> {
    /// Starts listening on `addr`; every task carries `ctx` (with a
    /// message of the side's own).
    pub(crate) fn start(
        ring: &mut Ring<S>,
        world: &World,
        addr: SocketAddr,
        ctx: Ctx<S>,
    ) -> TcpSide<S> {
        ring.socket(Domain::IPV4, Type::STREAM, None, ctx.msg(Msg::Socket));
        TcpSide {
            ctx,
            addr,
            listener: None,
            accepting: None,
            conns: ConnTable::with_capacity(8),
            stopping: false,
            world: world.clone(),
            replies: 0,
        }
    }

    /// Takes a completion of one of the side's tasks; `answer` turns a
    /// question into its reply (`None`: no reply, the connection closes).
    pub(crate) fn on_completion(
        &mut self,
        ring: &mut Ring<S>,
        c: Completion,
        answer: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                self.listener = Some(fd);
                ring.bind(fd, self.addr, self.ctx.msg(Msg::Bound));
            }
            (Msg::Bound, Outcome::Bind(res)) => {
                res?;
                let fd = self.listener.ok_or_else(no_listener)?;
                ring.listen(fd, 16, self.ctx.msg(Msg::Listening));
            }
            (Msg::Listening, Outcome::Listen(res)) => {
                res?;
                self.accept(ring)?;
            }
            (Msg::Accepted, Outcome::Accept(res)) => {
                self.accepting = None;
                if let Ok((fd, _peer)) = res {
                    let fd = ring.register_fd(fd);
                    let key = self.conns.insert(Conn {
                        fd,
                        question: Vec::with_capacity(RECV_ROOM),
                        reply: Vec::new(),
                        receiving: None,
                    });
                    self.receive(ring, key, Vec::with_capacity(RECV_ROOM));
                }
                if self.stopping {
                    self.close_listener(ring);
                } else {
                    self.accept(ring)?;
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 && !self.stopping => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return Ok(());
                };
                conn.receiving = None;
                conn.question.extend_from_slice(&buf);
                let have = conn.question.len();
                let want = match conn.question.get(..2) {
                    Some(&[hi, lo]) => 2 + usize::from(u16::from_be_bytes([hi, lo])),
                    _ => usize::MAX,
                };
                if have >= want {
                    match answer(&conn.question[2..want]) {
                        Some(reply) => {
                            conn.question.drain(..want);
                            conn.reply.clear();
                            conn.reply
                                .extend_from_slice(&(reply.len() as u16).to_be_bytes());
                            conn.reply.extend_from_slice(&reply);
                            self.send_piece(ring, key);
                        }
                        None => self.close(ring, key),
                    }
                } else if have > QUESTION_MOST {
                    self.close(ring, key);
                } else {
                    let mut buf = buf.into_vec();
                    buf.clear();
                    self.receive(ring, key, buf);
                }
            }
            // An end of stream, a reset, an injected error or a cancel.
            (Msg::Received, Outcome::Recv(..)) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.receiving = None;
                }
                self.close(ring, key);
            }
            (Msg::Sent, Outcome::Send(Ok(n), _)) => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return Ok(());
                };
                conn.reply.drain(..n.min(conn.reply.len()));
                if !conn.reply.is_empty() {
                    self.send_piece(ring, key);
                } else {
                    self.replies += 1;
                    // The resolver closes once it has its answer.
                    self.receive(ring, key, Vec::with_capacity(RECV_ROOM));
                }
            }
            (Msg::Sent, Outcome::Send(Err(_), _)) => self.close(ring, key),
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "dns server over tcp: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn accept(&mut self, ring: &mut Ring<S>) -> io::Result<()> {
        let fd = self.listener.ok_or_else(no_listener)?;
        self.accepting = Some(ring.accept(fd, self.ctx.msg(Msg::Accepted)));
        Ok(())
    }

    fn receive(&mut self, ring: &mut Ring<S>, key: u64, buf: Vec<u8>) {
        let ctx = self.ctx.msg(Msg::Received).key(key);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.receiving = Some(ring.recv(conn.fd, buf, ctx));
        }
    }

    /// Sends the next piece of the reply: 1 to 64 bytes, or the rest.
    fn send_piece(&mut self, ring: &mut Ring<S>, key: u64) {
        let piece = 1 + (self.world.random() % 64) as usize;
        let ctx = self.ctx.msg(Msg::Sent).key(key);
        if let Some(conn) = self.conns.get_mut(key) {
            let piece = conn.reply[..piece.min(conn.reply.len())].to_vec();
            ring.send(conn.fd, piece, ctx);
        }
    }

    fn close(&mut self, ring: &mut Ring<S>, key: u64) {
        if let Some(conn) = self.conns.remove(key) {
            if let Some(task) = conn.receiving {
                ring.cancel(task, Ctx::none());
            }
            ring.close(conn.fd, Ctx::none());
        }
    }

    /// Stops accepting and ends every connection; the listener closes
    /// once its accept has ended.
    pub(crate) fn stop(&mut self, ring: &mut Ring<S>) {
        self.stopping = true;
        let keys: Vec<u64> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(ring, key);
        }
        match self.accepting {
            Some(task) => {
                ring.cancel(task, Ctx::none());
            }
            None => self.close_listener(ring),
        }
    }

    fn close_listener(&mut self, ring: &mut Ring<S>) {
        if let Some(fd) = self.listener.take() {
            ring.close(fd, Ctx::none());
        }
    }
}

fn no_listener() -> io::Error {
    io::Error::other("dns server over tcp: no listener")
}
