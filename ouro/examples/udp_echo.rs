//! A UDP echo server on ouro: every datagram goes back to its sender.
//!
//! ```text
//! cargo run --example udp_echo -- 127.0.0.1:9000
//! cargo run --example udp_echo -- 127.0.0.1:9000 --backend poll
//! echo hello | nc -u -w1 127.0.0.1 9000
//! ```
//!
//! It prints `listening on ADDR (BACKEND)` once it receives (port 0 picks
//! a free port). The ring runs on the backend `Ring::builder()` picks
//! (io_uring where it works, else the readiness backend, or the one
//! `OURO_BACKEND` names); `--backend uring|poll` overrides both. Logging as
//! in the other examples (`RUST_LOG`); `SIGINT` or `SIGTERM` stops it.
//!
//! `RECEIVES` receives wait at once, each with a buffer of its own, so
//! datagrams that arrive together are taken together. A receive's buffer
//! goes out with the echo (`send_to` to the sender) and comes back for the
//! next receive: nothing is allocated per datagram. Every buffer holds the
//! largest UDP payload, so nothing is cut; a datagram that was cut anyway
//! (`truncated`) is dropped, not echoed in part. A failed send (the sender
//! unreachable, a full socket buffer) loses that echo, as UDP may: it is
//! logged and the buffer goes back to receiving.
//!
//! A datagram from the server's own port (itself, with a forged source, or
//! another echo server on that port) or from a port whose service answers
//! every datagram (echo, daytime, quote of the day, chargen, time) is
//! dropped: echoing it would start an exchange without end.

#[path = "support/cli.rs"]
pub mod cli;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/shutdown.rs"]
mod shutdown;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use ouro::{BackendKind, Buf, Completion, Ctx, Outcome, Ring, RunMode};

/// Receives waiting at once.
pub const RECEIVES: usize = 16;

/// The largest UDP payload (over IPv6 without jumbograms; IPv4's is less).
const MAX_DATAGRAM: usize = 65_527;

ouro::messages! { enum Msg { Received, Echoed } }

/// The server's state: its socket and what it has done.
pub struct Echo {
    socket: Rc<OwnedFd>,
    /// The port the server receives on.
    port: u16,
    /// Datagrams echoed.
    pub echoed: u64,
    /// Datagrams dropped: cut short, or their echo failed.
    pub dropped: u64,
}

impl Echo {
    /// A server on `socket` (a bound UDP socket, as
    /// [`ouro::net::udp_socket`] makes), with its receives waiting on
    /// `ring`.
    pub fn start(ring: &mut Ring<Echo>, socket: OwnedFd) -> Echo {
        let port = ouro::net::local_addr(&socket).map_or(0, |addr| addr.port());
        let echo = Echo {
            socket: Rc::new(socket),
            port,
            echoed: 0,
            dropped: 0,
        };
        for _ in 0..RECEIVES {
            echo.receive(ring, Buf::new_mut(Vec::with_capacity(MAX_DATAGRAM)));
        }
        echo
    }

    fn receive(&self, ring: &mut Ring<Echo>, buf: Buf) {
        let ctx = Ctx::new(Echo::on_completion).msg(Msg::Received);
        ring.recv_from(&self.socket, buf, ctx);
    }

    fn on_completion(&mut self, ring: &mut Ring<Echo>, c: Completion) -> io::Result<()> {
        match c.into_parts()? {
            (Msg::Received, _, Outcome::RecvFrom(res, buf)) => self.on_received(ring, res, buf),
            (Msg::Echoed, _, Outcome::SendTo(res, buf)) => self.on_echoed(ring, res, buf),
            (msg, _, outcome) => Err(io::Error::other(format!("{msg:?} ended with {outcome:?}"))),
        }
    }

    fn on_received(
        &mut self,
        ring: &mut Ring<Echo>,
        res: io::Result<ouro::Datagram>,
        buf: Buf,
    ) -> io::Result<()> {
        let datagram = match res {
            Ok(datagram) if datagram.truncated => {
                tracing::debug!("dropped a datagram from {:?}: cut short", datagram.from);
                self.dropped += 1;
                self.receive(ring, emptied(buf)?);
                return Ok(());
            }
            Ok(datagram) if self.would_loop(&datagram) => {
                tracing::debug!(
                    "dropped a datagram from {:?}: its echo would start a loop",
                    datagram.from
                );
                self.dropped += 1;
                self.receive(ring, emptied(buf)?);
                return Ok(());
            }
            Ok(datagram) => datagram,
            Err(err) if ouro::is_canceled(&err) => return Ok(()),
            // An error the socket reported (an ICMP error queued on it):
            // one datagram's fate, not the server's.
            Err(err) => {
                tracing::debug!("receive: {err}");
                self.receive(ring, emptied(buf)?);
                return Ok(());
            }
        };
        let ctx = Ctx::new(Echo::on_completion).msg(Msg::Echoed);
        ring.send_to(&self.socket, buf, datagram.from, ctx);
        Ok(())
    }

    /// Whether `datagram` came from this server's port or from one whose
    /// service answers every datagram.
    fn would_loop(&self, datagram: &ouro::Datagram) -> bool {
        /// Echo, daytime, quote of the day, chargen, time.
        const ANSWERING_PORTS: [u16; 5] = [7, 13, 17, 19, 37];
        datagram
            .peer_addr()
            .is_ok_and(|from| from.port() == self.port || ANSWERING_PORTS.contains(&from.port()))
    }

    fn on_echoed(
        &mut self,
        ring: &mut Ring<Echo>,
        res: io::Result<usize>,
        buf: Buf,
    ) -> io::Result<()> {
        match res {
            Ok(_) => self.echoed += 1,
            Err(err) if ouro::is_canceled(&err) => return Ok(()),
            Err(err) => {
                tracing::debug!("echo: {err}");
                self.dropped += 1;
            }
        }
        self.receive(ring, emptied(buf)?);
        Ok(())
    }
}

/// The buffer of an echoed datagram, emptied for the next receive.
fn emptied(buf: Buf) -> io::Result<Buf> {
    let mut vec: Vec<u8> = buf
        .downcast()
        .map_err(|_| io::Error::other("a receive buffer is a Vec"))?;
    vec.clear();
    Ok(Buf::new_mut(vec))
}

/// Serves on `socket` until `ring` is stopped (by a signal in `main`, by
/// a [`RingHandle`](ouro::RingHandle) in the tests); what it did.
pub fn serve(ring: &mut Ring<Echo>, socket: OwnedFd) -> io::Result<Echo> {
    let mut echo = Echo::start(ring, socket);
    ring.run(&mut echo, RunMode::Forever)?;
    Ok(echo)
}

/// What the command line asks for.
struct Options {
    addr: SocketAddr,
    backend: Option<BackendKind>,
}

const USAGE: &str =
    "usage: udp_echo [ADDR] [--backend uring|poll]   (default ADDR: 127.0.0.1:9000)";

fn parse_args(args: impl Iterator<Item = String>) -> io::Result<Options> {
    let mut args = cli::Args::new(args, USAGE);
    let (mut addr, mut backend) = (None, None);
    while let Some(arg) = args.next_arg()? {
        if arg == "--backend" {
            backend = Some(args.backend(&arg)?);
        } else if addr.is_none() && !arg.starts_with('-') {
            addr = Some(args.parse(&arg)?);
        } else {
            return Err(args.unexpected(&arg));
        }
    }
    Ok(Options {
        addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 9000).into()),
        backend,
    })
}

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    logging::init();
    let options = parse_args(args)?;
    let builder = match options.backend {
        Some(kind) => Ring::builder().backend(kind),
        None => Ring::builder(),
    };
    // Set up before claiming to listen, so that a setup error comes first.
    let mut ring = builder.entries(64).build()?;
    let _signals = shutdown::stop_on_signals(&mut ring)?;
    let socket = ouro::net::udp_socket(options.addr).map_err(cli::cannot_listen(options.addr))?;
    cli::line(format_args!(
        "listening on {} ({})",
        ouro::net::local_addr(&socket)?,
        ring.backend_description()
    ))?;
    let echo = serve(&mut ring, socket)?;
    cli::line(format_args!(
        "echoed {} datagrams, dropped {}",
        echo.echoed, echo.dropped
    ))
}

fn main() -> std::process::ExitCode {
    cli::main(USAGE, main_with)
}
