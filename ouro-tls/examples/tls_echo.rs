//! A TLS echo server: every byte a client sends comes back, until the
//! client closes (with `close_notify`, answered by ours). Connections are
//! accepted on the ring and kept in a `ConnTable`; each gets a 10 s
//! handshake deadline. A connection whose echoes pile up (a client that
//! sends and does not read) stops being received from until they drain,
//! so what it can make the server hold is bounded. Prints the address it
//! listens on.
//!
//! ```sh
//! cargo run -p ouro-tls --example tls_echo -- 127.0.0.1:8443 cert.pem key.pem
//! ```
//!
//! Bad arguments exit with 2, `--help` with 0, a failure (an address in
//! use, a file that cannot be read) with 1; a closed stdout ends it
//! quietly (ouro's `examples/support/cli.rs`, which all the examples
//! share).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ouro::{Completion, ConnTable, Ctx, Outcome, Ring, RunMode};
use ouro_tls::{
    certificates_from_pem, private_key_from_pem, server_config, ServerConfig, TlsEvent, TlsStream,
    Versions,
};

#[path = "../../ouro/examples/support/cli.rs"]
pub mod cli;

const USAGE: &str = "usage: tls_echo ADDR CERT_PEM KEY_PEM";

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    let words = args.words()?;
    let [addr, cert_file, key_file] = &words[..] else {
        return Err(args.bad("expected an address, a certificate file and a key file"));
    };
    run(addr, cert_file, key_file)
}

fn main() -> ExitCode {
    cli::main(USAGE, main_with)
}

fn run(addr: &str, cert_file: &str, key_file: &str) -> io::Result<()> {
    let chain = certificates_from_pem(&read(cert_file)?)?;
    let key = private_key_from_pem(&read(key_file)?)?;
    let config = server_config(chain, key, &[], Versions::Both)?;
    let listener = TcpListener::bind(addr).map_err(cli::cannot_listen(addr))?;
    cli::line(format_args!("listening on {}", listener.local_addr()?))?;
    serve(listener, config, None)
}

/// The file at `path`; an error names it.
fn read(path: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot read {path}: {err}")))
}

type Conn = TlsStream<Server, Rc<TcpStream>>;

/// Echoes waiting to be sent above which a connection's receiving is
/// paused, and below which it resumes.
const PAUSE_ABOVE: usize = 256 * 1024;
const RESUME_BELOW: usize = 64 * 1024;

pub struct Server {
    listener: Rc<TcpListener>,
    config: Arc<ServerConfig>,
    conns: ConnTable<Conn>,
    /// Connections still to accept (`None`: forever).
    to_accept: Option<usize>,
}

/// Serves on `listener` with `config`; after `connections` connections
/// (if given) stops accepting and returns once they have all ended.
pub fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: Option<usize>,
) -> io::Result<()> {
    let mut ring = Ring::new(256)?;
    let mut server = Server {
        listener: Rc::new(listener),
        config,
        conns: ConnTable::with_capacity(64),
        to_accept: connections,
    };
    server.accept_next(&mut ring);
    ring.run(&mut server, RunMode::UntilDone)
}

impl Server {
    fn accept_next(&mut self, ring: &mut Ring<Server>) {
        if self.to_accept == Some(0) {
            return;
        }
        self.to_accept = self.to_accept.map(|n| n - 1);
        ring.accept(self.listener.clone(), Ctx::new(on_accept));
    }

    fn start(&mut self, ring: &mut Ring<Server>, fd: OwnedFd) -> io::Result<()> {
        let socket = Rc::new(TcpStream::from(fd));
        let config = self.config.clone();
        let key = self.conns.insert_with(|key| {
            TlsStream::server(socket, config, Ctx::new(on_tls).key(key))
                .map(|tls| tls.with_handshake_timeout(Duration::from_secs(10)))
                .expect("a server session from a checked config")
        });
        self.conns.get_mut(key).expect("just inserted").start(ring);
        Ok(())
    }
}

fn on_accept(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    server.accept_next(ring);
    match c.outcome {
        Outcome::Accept(Ok((fd, _peer))) => server.start(ring, fd),
        // One failed accept (the peer gone, no fd left) ends no other.
        Outcome::Accept(Err(err)) => {
            eprintln!("tls_echo: accept: {err}");
            Ok(())
        }
        other => Err(io::Error::other(format!("not an accept: {other:?}"))),
    }
}

fn on_tls(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
    let key = c.key();
    let Some(conn) = server.conns.get_mut(key) else {
        return Ok(()); // a connection already gone
    };
    conn.on_completion(ring, c)?;
    while let Some(event) = conn.next_event() {
        match event {
            TlsEvent::Received(bytes) => {
                // A failed write has been reported as Failed already.
                if conn
                    .write(ring, &bytes)
                    .is_ok_and(|queued| queued > PAUSE_ABOVE)
                {
                    conn.pause_receiving();
                }
                conn.recycle(bytes);
            }
            TlsEvent::Written { queued } if queued < RESUME_BELOW => conn.resume_receiving(ring),
            TlsEvent::Closed => conn.shutdown(ring),
            TlsEvent::Failed(err) => eprintln!("tls_echo: connection {key}: {err}"),
            TlsEvent::HandshakeDone(_) | TlsEvent::Written { .. } => {}
        }
    }
    if conn.is_ended() && conn.is_idle() {
        server.conns.remove(key);
    }
    Ok(())
}
