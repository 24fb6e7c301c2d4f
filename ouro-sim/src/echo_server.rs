//! An echo server listening on several addresses at once, for the
//! connect scenario: each address a host of its own, so that connect by
//! name has somewhere to get to.

use std::io;
use std::net::SocketAddr;

use ouro::net::{Domain, Type};
use ouro::{Completion, ConnTable, Ctx, Outcome, Ring, RingFd, Task};

ouro::messages! {
    enum Msg { Socket, Bound, Listening, Accepted, Received, Sent }
}

const RECV_SIZE: usize = 512;

struct Listener {
    addr: SocketAddr,
    fd: Option<RingFd>,
    accepting: Option<Task>,
}

/// The server: its listeners (keyed by their index) and connections.
pub struct EchoServer {
    listeners: Vec<Listener>,
    conns: ConnTable<(RingFd, Option<Task>)>,
    stopping: bool,
}

impl EchoServer {
    /// Starts listening on every one of `addrs`.
    pub(crate) fn start(ring: &mut Ring<EchoServer>, addrs: &[SocketAddr]) -> EchoServer {
        for (i, addr) in addrs.iter().enumerate() {
            let ctx = EchoServer::ctx(Msg::Socket, i as u64);
            ring.socket(Domain::for_address(*addr), Type::STREAM, None, ctx);
        }
        EchoServer {
            listeners: addrs
                .iter()
                .map(|&addr| Listener {
                    addr,
                    fd: None,
                    accepting: None,
                })
                .collect(),
            conns: ConnTable::with_capacity(16),
            stopping: false,
        }
    }

    fn ctx(msg: Msg, key: u64) -> Ctx<EchoServer> {
        Ctx::new(EchoServer::on_completion).msg(msg).key(key)
    }

    fn on_completion(&mut self, ring: &mut Ring<EchoServer>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        match (msg, outcome) {
            (Msg::Socket, Outcome::Socket(fd)) => {
                let fd = ring.register_fd(fd?);
                let listener = &mut self.listeners[key as usize];
                listener.fd = Some(fd);
                ring.bind(fd, listener.addr, EchoServer::ctx(Msg::Bound, key));
            }
            (Msg::Bound, Outcome::Bind(res)) => {
                res?;
                let fd = self.listeners[key as usize].fd.ok_or_else(no_listener)?;
                ring.listen(fd, 64, EchoServer::ctx(Msg::Listening, key));
            }
            (Msg::Listening, Outcome::Listen(res)) => {
                res?;
                self.accept(ring, key)?;
            }
            (Msg::Accepted, Outcome::Accept(res)) => {
                self.listeners[key as usize].accepting = None;
                // A failed accept (EMFILE) leaves the listener as it was.
                if let Ok((fd, _peer)) = res {
                    let fd = ring.register_fd(fd);
                    let conn = self.conns.insert((fd, None));
                    self.recv(ring, conn, Vec::with_capacity(RECV_SIZE));
                }
                if self.stopping {
                    self.close_listener(ring, key);
                } else {
                    self.accept(ring, key)?;
                }
            }
            (Msg::Received, Outcome::Recv(Ok(n), buf)) if n > 0 && !self.stopping => {
                let Some(&mut (fd, ref mut receiving)) = self.conns.get_mut(key) else {
                    return Ok(());
                };
                *receiving = None;
                ring.send(fd, buf.into_vec(), EchoServer::ctx(Msg::Sent, key));
            }
            (Msg::Received, Outcome::Recv(..)) => {
                if let Some((_, receiving)) = self.conns.get_mut(key) {
                    *receiving = None;
                }
                self.close(ring, key);
            }
            (Msg::Sent, Outcome::Send(Ok(n), buf)) => {
                let Some(&(fd, _)) = self.conns.get(key) else {
                    return Ok(());
                };
                let mut rest = buf.into_vec();
                if n < rest.len() {
                    rest.drain(..n);
                    ring.send(fd, rest, EchoServer::ctx(Msg::Sent, key));
                } else {
                    rest.clear();
                    self.recv(ring, key, rest);
                }
            }
            (Msg::Sent, Outcome::Send(Err(_), _)) => self.close(ring, key),
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "echo server: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn accept(&mut self, ring: &mut Ring<EchoServer>, key: u64) -> io::Result<()> {
        let listener = &mut self.listeners[key as usize];
        let fd = listener.fd.ok_or_else(no_listener)?;
        listener.accepting = Some(ring.accept(fd, EchoServer::ctx(Msg::Accepted, key)));
        Ok(())
    }

    fn recv(&mut self, ring: &mut Ring<EchoServer>, key: u64, buf: Vec<u8>) {
        if let Some((fd, receiving)) = self.conns.get_mut(key) {
            *receiving = Some(ring.recv(*fd, buf, EchoServer::ctx(Msg::Received, key)));
        }
    }

    fn close(&mut self, ring: &mut Ring<EchoServer>, key: u64) {
        if let Some((fd, receiving)) = self.conns.remove(key) {
            if let Some(task) = receiving {
                ring.cancel(task, Ctx::none());
            }
            ring.close(fd, Ctx::none());
        }
    }

    /// Stops accepting and closes every connection; each listener closes
    /// once its accept has ended.
    pub(crate) fn stop(&mut self, ring: &mut Ring<EchoServer>) {
        self.stopping = true;
        let conns: Vec<u64> = self.conns.keys().collect();
        for key in conns {
            self.close(ring, key);
        }
        for key in 0..self.listeners.len() as u64 {
            match self.listeners[key as usize].accepting {
                Some(task) => {
                    ring.cancel(task, Ctx::none());
                }
                None => self.close_listener(ring, key),
            }
        }
    }

    fn close_listener(&mut self, ring: &mut Ring<EchoServer>, key: u64) {
        if let Some(fd) = self.listeners[key as usize].fd.take() {
            ring.close(fd, Ctx::none());
        }
    }
}

fn no_listener() -> io::Error {
    io::Error::other("echo server: no listener")
}
