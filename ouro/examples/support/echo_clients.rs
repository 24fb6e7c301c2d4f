//! The echo demo's load: clients that each send a message, read until the
//! whole echo is back, check it, and repeat. A component of its own, with
//! its own messages, beside the server on the demo's ring.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use ouro::net::{Domain, Type};
use ouro::{Buf, Completion, Ctx, Outcome, Ring, RingFd};

ouro::messages! {
    enum ClientMsg { Socket, Connected, Sent, Received }
}

/// Clients that each send a message `rounds` times and check every echo.
pub struct Clients {
    server: SocketAddr,
    message: Rc<[u8]>,
    rounds: usize,
    clients: Vec<Client>,
    /// Clients that made all their round trips.
    pub done: usize,
    /// Round trips made, over all clients.
    pub round_trips: usize,
    /// Bytes that came back and matched what was sent.
    pub verified: usize,
    /// Clients that failed.
    pub failed: usize,
    /// The first failure, naming its client.
    pub first_failure: Option<io::Error>,
}

#[derive(Default)]
struct Client {
    fd: Option<RingFd>,
    rounds_left: usize,
    /// Bytes of the current echo received so far.
    received: usize,
}

impl Clients {
    /// Clients of `server`, each to make `rounds` round trips of a
    /// `size`-byte message once started.
    pub fn new(server: SocketAddr, size: usize, rounds: usize) -> Clients {
        Clients {
            server,
            message: (0..size).map(|i| (i % 251) as u8).collect(),
            rounds,
            clients: Vec::new(),
            done: 0,
            round_trips: 0,
            verified: 0,
            failed: 0,
            first_failure: None,
        }
    }

    /// Opens `count` connections, each starting its round trips once
    /// connected.
    pub fn start<S: AsMut<Clients>>(&mut self, ring: &mut Ring<S>, count: usize) {
        for key in 0..count {
            self.clients.push(Client {
                rounds_left: self.rounds,
                ..Client::default()
            });
            let domain = Domain::for_address(self.server);
            ring.socket_direct(
                domain,
                Type::STREAM,
                None,
                Clients::ctx(ClientMsg::Socket, key),
            );
        }
    }

    fn ctx<S: AsMut<Clients>>(msg: ClientMsg, key: usize) -> Ctx<S> {
        Ctx::new(Clients::on_completion::<S>)
            .msg(msg)
            .key(key as u64)
    }

    /// A client's failure ends the demo once the ring's turn is over, and
    /// is counted, not returned: a callback's error would be logged once
    /// per client (with no fd left, thousands of them in one turn).
    fn on_completion<S: AsMut<Clients>>(
        state: &mut S,
        ring: &mut Ring<S>,
        c: Completion,
    ) -> io::Result<()> {
        let this = state.as_mut();
        let key = c.key() as usize;
        if let Err(err) = this.step(ring, key, c) {
            this.fail(ring, key, err);
        }
        Ok(())
    }

    fn fail<S: AsMut<Clients>>(&mut self, ring: &mut Ring<S>, key: usize, err: io::Error) {
        self.failed += 1;
        if let Some(fd) = self.clients[key].fd.take() {
            ring.close(fd, Ctx::none());
        }
        if self.first_failure.is_none() {
            let described = io::Error::new(err.kind(), format!("client {key}: {err}"));
            self.first_failure = Some(described);
            ring.stop();
        }
    }

    /// Takes a client one step on with its completion `c`.
    fn step<S: AsMut<Clients>>(
        &mut self,
        ring: &mut Ring<S>,
        key: usize,
        c: Completion,
    ) -> io::Result<()> {
        match (c.message::<ClientMsg>()?, c.outcome) {
            (ClientMsg::Socket, Outcome::SocketDirect(result)) => {
                let fd = *self.clients[key].fd.insert(result?);
                ring.connect(fd, self.server, Clients::ctx(ClientMsg::Connected, key));
            }
            (ClientMsg::Connected, Outcome::Connect(result)) => {
                result?;
                self.send(ring, key, Buf::new(self.message.clone()))?;
            }
            (ClientMsg::Sent, Outcome::Send(result, mut buf)) => {
                buf.consume(result?);
                if !buf.is_empty() {
                    return self.send(ring, key, buf);
                }
                self.receive(ring, key)?;
            }
            (ClientMsg::Received, Outcome::Recv(result, buf)) => {
                let n = result?;
                if n == 0 {
                    return Err(io::Error::other("the server closed the connection early"));
                }
                let client = &mut self.clients[key];
                let expected = &self.message[client.received..client.received + n];
                if &buf[..] != expected {
                    return Err(io::Error::other("the echo differs from what was sent"));
                }
                client.received += n;
                self.verified += n;
                if client.received < self.message.len() {
                    return self.receive(ring, key);
                }
                client.received = 0;
                client.rounds_left -= 1;
                self.round_trips += 1;
                if client.rounds_left > 0 {
                    return self.send(ring, key, Buf::new(self.message.clone()));
                }
                self.done += 1;
                if let Some(fd) = client.fd.take() {
                    ring.close(fd, Ctx::none());
                }
            }
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "unexpected {msg:?} with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    fn fd(&self, key: usize) -> io::Result<RingFd> {
        self.clients[key]
            .fd
            .ok_or_else(|| io::Error::other("no socket"))
    }

    fn send<S: AsMut<Clients>>(&self, ring: &mut Ring<S>, key: usize, buf: Buf) -> io::Result<()> {
        ring.send(self.fd(key)?, buf, Clients::ctx(ClientMsg::Sent, key));
        Ok(())
    }

    fn receive<S: AsMut<Clients>>(&self, ring: &mut Ring<S>, key: usize) -> io::Result<()> {
        let room = self.message.len() - self.clients[key].received;
        ring.recv(
            self.fd(key)?,
            Vec::with_capacity(room),
            Clients::ctx(ClientMsg::Received, key),
        );
        Ok(())
    }
}
