//! ouro's demo: a TCP echo server and its clients, two components on one
//! ring, talking over loopback. Every byte is checked on its way back.
//!
//! ```text
//! cargo run --release --example echo                      # demo: prints what it did
//! cargo run --release --example echo -- --clients 8 --rounds 100 --size 4096
//! cargo run --release --example echo -- --serve 127.0.0.1:7000   # server only, until killed
//! ```
//!
//! The server accepts, then per connection receives into a buffer and sends
//! that same buffer back (re-sending the rest after a partial send), then
//! receives into it again. Each client sends a message, reads until the
//! whole echo is back, and repeats. Connections are identified by the task
//! key; what a task was for, by its message.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use ouro::net::{Domain, Type};
use ouro::{BackendKind, Buf, Completion, Ctx, Outcome, Ring, RunMode};

ouro::messages! {
    enum Msg { Accepted, Received, Sent, Socket, Connected, ClientSent, ClientReceived }
}

/// Accepts connections and echoes what each one sends.
struct Server {
    listener: OwnedFd,
    conns: Vec<Option<OwnedFd>>,
    free: Vec<usize>,
    /// Stop accepting after this many connections (`None`: never).
    accept_limit: Option<usize>,
    accepted: usize,
    buffer_size: usize,
}

impl Server {
    fn start<S: AsMut<Server>>(&self, ring: &mut Ring<S>) {
        ring.accept(&self.listener, Server::ctx(Msg::Accepted, 0));
    }

    fn ctx<S: AsMut<Server>>(msg: Msg, key: usize) -> Ctx<S> {
        Ctx::new(Server::on_completion::<S>)
            .msg(msg)
            .key(key as u64)
    }

    fn on_completion<S: AsMut<Server>>(
        state: &mut S,
        ring: &mut Ring<S>,
        c: Completion,
    ) -> io::Result<()> {
        let this = state.as_mut();
        let key = c.key() as usize;
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::Accept(result)) => {
                let (fd, _peer) = result?;
                this.accepted += 1;
                if this.accept_limit.is_none_or(|limit| this.accepted < limit) {
                    this.start(ring);
                }
                let key = this.insert(fd);
                let buf = Vec::with_capacity(this.buffer_size);
                ring.recv(this.conn(key)?, buf, Server::ctx(Msg::Received, key));
            }
            (Msg::Received, Outcome::Recv(result, buf)) => match result {
                Ok(0) | Err(_) => this.close(ring, key),
                Ok(_) => {
                    ring.send(this.conn(key)?, buf, Server::ctx(Msg::Sent, key));
                }
            },
            (Msg::Sent, Outcome::Send(result, mut buf)) => {
                let Ok(n) = result else {
                    this.close(ring, key);
                    return Ok(());
                };
                buf.consume(n);
                if !buf.is_empty() {
                    ring.send(this.conn(key)?, buf, Server::ctx(Msg::Sent, key));
                    return Ok(());
                }
                // Receive into the same Vec again (`consume` left it whole).
                let mut vec: Vec<u8> = buf.downcast().unwrap_or_default();
                vec.clear();
                vec.reserve(this.buffer_size);
                ring.recv(this.conn(key)?, vec, Server::ctx(Msg::Received, key));
            }
            (msg, outcome) => return Err(unexpected("server", msg, outcome)),
        }
        Ok(())
    }

    fn insert(&mut self, fd: OwnedFd) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.conns[key] = Some(fd);
                key
            }
            None => {
                self.conns.push(Some(fd));
                self.conns.len() - 1
            }
        }
    }

    fn conn(&self, key: usize) -> io::Result<&OwnedFd> {
        self.conns
            .get(key)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::other(format!("no connection {key}")))
    }

    fn close<S: AsMut<Server>>(&mut self, ring: &mut Ring<S>, key: usize) {
        if let Some(fd) = self.conns.get_mut(key).and_then(Option::take) {
            ring.close(fd, Ctx::none());
            self.free.push(key);
        }
    }
}

/// Clients that each send a message `rounds` times and check every echo.
struct Clients {
    server: SocketAddr,
    message: Rc<[u8]>,
    rounds: usize,
    clients: Vec<Client>,
    done: usize,
    round_trips: usize,
    /// Bytes that came back and matched what was sent.
    verified: usize,
}

#[derive(Default)]
struct Client {
    fd: Option<OwnedFd>,
    rounds_left: usize,
    /// Bytes of the current echo received so far.
    received: usize,
}

impl Clients {
    fn start<S: AsMut<Clients>>(&mut self, ring: &mut Ring<S>, count: usize) {
        for key in 0..count {
            self.clients.push(Client {
                rounds_left: self.rounds,
                ..Client::default()
            });
            let domain = Domain::for_address(self.server);
            ring.socket(domain, Type::STREAM, None, Clients::ctx(Msg::Socket, key));
        }
    }

    fn ctx<S: AsMut<Clients>>(msg: Msg, key: usize) -> Ctx<S> {
        Ctx::new(Clients::on_completion::<S>)
            .msg(msg)
            .key(key as u64)
    }

    fn on_completion<S: AsMut<Clients>>(
        state: &mut S,
        ring: &mut Ring<S>,
        c: Completion,
    ) -> io::Result<()> {
        let this = state.as_mut();
        let key = c.key() as usize;
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Socket, Outcome::Socket(result)) => {
                let fd = this.clients[key].fd.insert(result?);
                ring.connect(&*fd, this.server, Clients::ctx(Msg::Connected, key));
            }
            (Msg::Connected, Outcome::Connect(result)) => {
                result?;
                this.send(ring, key, Buf::new(this.message.clone()))?;
            }
            (Msg::ClientSent, Outcome::Send(result, mut buf)) => {
                buf.consume(result?);
                if !buf.is_empty() {
                    return this.send(ring, key, buf);
                }
                this.receive(ring, key)?;
            }
            (Msg::ClientReceived, Outcome::Recv(result, buf)) => {
                let n = result?;
                if n == 0 {
                    return Err(io::Error::other("the server closed the connection early"));
                }
                let client = &mut this.clients[key];
                let expected = &this.message[client.received..client.received + n];
                if &buf[..] != expected {
                    return Err(io::Error::other(format!("client {key}: echo differs")));
                }
                client.received += n;
                this.verified += n;
                if client.received < this.message.len() {
                    return this.receive(ring, key);
                }
                client.received = 0;
                client.rounds_left -= 1;
                this.round_trips += 1;
                if client.rounds_left > 0 {
                    return this.send(ring, key, Buf::new(this.message.clone()));
                }
                this.done += 1;
                if let Some(fd) = client.fd.take() {
                    ring.close(fd, Ctx::none());
                }
            }
            (msg, outcome) => return Err(unexpected("client", msg, outcome)),
        }
        Ok(())
    }

    fn fd(&self, key: usize) -> io::Result<&OwnedFd> {
        self.clients[key]
            .fd
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("client {key} has no socket")))
    }

    fn send<S: AsMut<Clients>>(&self, ring: &mut Ring<S>, key: usize, buf: Buf) -> io::Result<()> {
        ring.send(self.fd(key)?, buf, Clients::ctx(Msg::ClientSent, key));
        Ok(())
    }

    fn receive<S: AsMut<Clients>>(&self, ring: &mut Ring<S>, key: usize) -> io::Result<()> {
        let room = self.message.len() - self.clients[key].received;
        ring.recv(
            self.fd(key)?,
            Vec::with_capacity(room),
            Clients::ctx(Msg::ClientReceived, key),
        );
        Ok(())
    }
}

fn unexpected(who: &str, msg: Msg, outcome: Outcome) -> io::Error {
    io::Error::other(format!("{who}: unexpected {msg:?} with {outcome:?}"))
}

/// Both components on one ring.
struct Demo {
    server: Server,
    clients: Clients,
}

impl AsMut<Server> for Demo {
    fn as_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl AsMut<Clients> for Demo {
    fn as_mut(&mut self) -> &mut Clients {
        &mut self.clients
    }
}

impl AsMut<Server> for Server {
    fn as_mut(&mut self) -> &mut Server {
        self
    }
}

/// What to run: the demo, or with `serve` only the server.
pub struct Options {
    /// Serve on this address until killed, instead of the demo.
    pub serve: Option<SocketAddr>,
    /// Clients in the demo.
    pub clients: usize,
    /// Round trips per client.
    pub rounds: usize,
    /// Bytes per message.
    pub size: usize,
    /// The backend the ring runs on (io_uring from the command line).
    pub backend: BackendKind,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        serve: None,
        clients: 64,
        rounds: 1000,
        size: 64,
        backend: BackendKind::Uring,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--serve" => options.serve = Some(value.parse().map_err(|e| format!("{value}: {e}"))?),
            "--clients" => options.clients = number()?.max(1),
            "--rounds" => options.rounds = number()?.max(1),
            "--size" => options.size = number()?.max(1),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// What the demo did.
pub struct Report {
    /// The server's address.
    pub addr: SocketAddr,
    /// The ring's backend, described.
    pub backend: String,
    /// Clients that made all their round trips.
    pub clients_done: usize,
    /// Round trips made, over all clients.
    pub round_trips: usize,
    /// Bytes echoed back and checked against what was sent.
    pub bytes_verified: usize,
    /// Wall time of the run.
    pub seconds: f64,
}

fn server(listener: OwnedFd, accept_limit: Option<usize>, size: usize) -> Server {
    Server {
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        accept_limit,
        accepted: 0,
        buffer_size: size.max(4096),
    }
}

/// The demo: a server and `options.clients` clients on one ring, over
/// loopback, until every client has made its round trips.
pub fn run(options: &Options) -> io::Result<Report> {
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 1024)?;
    let addr = ouro::net::local_addr(&listener)?;
    let mut ring = Ring::builder()
        .backend(options.backend)
        .entries(256)
        .build()?;
    let mut demo = Demo {
        server: server(listener, Some(options.clients), options.size),
        clients: Clients {
            server: addr,
            message: (0..options.size).map(|i| (i % 251) as u8).collect(),
            rounds: options.rounds,
            clients: Vec::new(),
            done: 0,
            round_trips: 0,
            verified: 0,
        },
    };
    let started = Instant::now();
    demo.server.start(&mut ring);
    demo.clients.start(&mut ring, options.clients);
    ring.run(&mut demo, RunMode::UntilDone)?;
    Ok(Report {
        addr,
        backend: ring.backend_description(),
        clients_done: demo.clients.done,
        round_trips: demo.clients.round_trips,
        bytes_verified: demo.clients.verified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Only the server, on `addr`, until killed.
fn serve(addr: SocketAddr, options: &Options) -> io::Result<()> {
    let listener = ouro::net::tcp_listener(addr, 1024)?;
    let addr = ouro::net::local_addr(&listener)?;
    let mut ring = Ring::builder()
        .backend(options.backend)
        .entries(256)
        .build()?;
    println!(
        "echo: serving on {addr} with {}",
        ring.backend_description()
    );
    let mut server = server(listener, None, options.size);
    server.start(&mut ring);
    ring.run(&mut server, RunMode::Forever)
}

fn main() -> io::Result<()> {
    let options = parse_args().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{e}\nusage: echo [--serve ADDR] [--clients N] [--rounds N] [--size BYTES]"),
        )
    })?;
    if let Some(addr) = options.serve {
        return serve(addr, &options);
    }
    let report = run(&options)?;
    println!(
        "echo: {} clients x {} round trips of {} B over {} on {}",
        options.clients, options.rounds, options.size, report.addr, report.backend
    );
    println!(
        "echo: {} round trips, {} bytes echoed and verified, {}/{} clients done, in {:.3} s ({:.0} round trips/s)",
        report.round_trips,
        report.bytes_verified,
        report.clients_done,
        options.clients,
        report.seconds,
        report.round_trips as f64 / report.seconds
    );
    if report.clients_done != options.clients {
        return Err(io::Error::other("not every client finished"));
    }
    Ok(())
}
