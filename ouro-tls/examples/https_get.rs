//! Fetches a page over HTTPS (HTTP/1.1) and writes the response, head and
//! body, to stdout as it arrives (so any size takes the same memory). No
//! DNS: the server's address is given, and the URL's host is the name its
//! certificate must carry (and the SNI and `Host`).
//!
//! ```sh
//! cargo run -p ouro-tls --example https_get -- https://localhost:8443/index.html 127.0.0.1 ca.pem
//! ```
//!
//! Fails (exit 1) on a refused certificate, a handshake past 10 s, a
//! response cut short without `close_notify`, or a fetch past its time
//! limit (`--max-time SECS`, 30 s by default, from the connect to the
//! response's end; a write to stdout blocks the ring, so a reader that
//! stalls delays that failure until it takes the bytes, as with `curl`);
//! bad arguments (a URL whose host is no DNS name or IP
//! address among them) exit with 2, `--help` with 0; a closed stdout ends
//! it quietly (ouro's `examples/support/cli.rs`, which all the examples
//! share).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use ouro::{Completion, Ctx, Outcome, Ring, RunMode, Task};
use ouro_tls::rustls::pki_types::ServerName;
use ouro_tls::{certificates_from_pem, client_config, TlsEvent, TlsStream, Versions};

#[path = "../../ouro/examples/support/cli.rs"]
pub mod cli;

const USAGE: &str = "usage: https_get [--max-time SECS] https://HOST[:PORT]/PATH IP CA_FILE";

/// How long a fetch may take, from the connect to the response's end,
/// unless `--max-time` says otherwise.
pub const MAX_TIME: Duration = Duration::from_secs(30);

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    let mut max_time = MAX_TIME;
    let mut words = Vec::new();
    while let Some(arg) = args.next_arg()? {
        match arg.as_str() {
            "--max-time" => max_time = Duration::from_secs(args.number(&arg, 1..=86_400)? as u64),
            _ if arg.starts_with('-') => return Err(args.unexpected(&arg)),
            _ => words.push(arg),
        }
    }
    let [url, ip, ca_file] = &words[..] else {
        return Err(args.bad("expected a URL, an IP address and a CA file"));
    };
    parse_url(url).map_err(|err| args.bad(err))?;
    let ip: IpAddr = args.parse(ip)?;
    let ca_pem = std::fs::read(ca_file)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot read {ca_file}: {err}")))?;
    fetch(url, ip, &ca_pem, max_time, Stdout(io::stdout()))?;
    Ok(())
}

fn main() -> ExitCode {
    cli::main(USAGE, main_with)
}

/// Standard output, whose failures end or name it as the examples' own
/// writes do (see `cli::stdout_failed`).
struct Stdout(io::Stdout);

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes).map_err(cli::stdout_failed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(cli::stdout_failed)
    }
}

/// The parts of an `https://` URL a request needs.
#[derive(Debug, PartialEq)]
pub struct Url<'a> {
    /// The server's name, as its certificate must carry it (an IPv6
    /// address without its brackets).
    pub host: &'a str,
    /// The host and port as the URL gives them, for the `Host` header.
    pub authority: &'a str,
    pub port: u16,
    pub path: &'a str,
}

/// Splits `https://HOST[:PORT][/PATH]` (HOST a DNS name, an IPv4 address
/// or an IPv6 address in brackets); `InvalidInput` for anything else.
pub fn parse_url(url: &str) -> io::Result<Url<'_>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad URL {url:?}: {why}"),
        )
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("not https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("no ']'"))?;
            (
                host,
                after.strip_prefix(':').or(after.is_empty().then_some("")),
            )
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, Some("")),
        },
    };
    let port = match port.ok_or_else(|| bad("no ':' before the port"))? {
        "" => 443,
        port => port.parse().map_err(|_| bad("bad port"))?,
    };
    if host.is_empty() || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("no host, or a space in the path"));
    }
    if authority.starts_with('[') != host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(bad("an IPv6 address goes in brackets, and only one"));
    }
    ServerName::try_from(host).map_err(|_| bad("the host is no DNS name or IP address"))?;
    Ok(Url {
        host,
        authority,
        port,
        path,
    })
}

struct Fetch<W> {
    tls: TlsStream<Fetch<W>, Rc<TcpStream>>,
    request: Vec<u8>,
    out: W,
    /// The time limit's timer, until it fires or the fetch ends.
    deadline: Option<Task>,
    max_time: Duration,
    failure: Option<io::Error>,
}

/// Fetches `url` from the server at `ip`, trusting the CA certificates in
/// the PEM text `ca_pem`, writing the response to `out` as it arrives; ends
/// with `TimedOut` if the whole fetch takes longer than `max_time`. Gives
/// `out` back.
pub fn fetch<W: Write>(
    url: &str,
    ip: IpAddr,
    ca_pem: &[u8],
    max_time: Duration,
    out: W,
) -> io::Result<W> {
    let url = parse_url(url)?;
    let roots = certificates_from_pem(ca_pem)
        .map_err(|err| io::Error::new(err.kind(), format!("the CA certificates: {err}")))?;
    let config = client_config(&roots, &[b"http/1.1"], Versions::Both)?;
    let connect_time = max_time.min(Duration::from_secs(10));
    let addr = SocketAddr::new(ip, url.port);
    let socket = TcpStream::connect_timeout(&addr, connect_time)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot connect to {addr}: {err}")))?;
    let tls = TlsStream::client(Rc::new(socket), config, url.host, Ctx::new(on_tls))?
        .with_handshake_timeout(Duration::from_secs(10));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: ouro-tls https_get\r\n\r\n",
        url.path, url.authority
    );
    let mut ring = Ring::new(16)?;
    let mut state = Fetch {
        tls,
        request: request.into_bytes(),
        out,
        deadline: None,
        max_time,
        failure: None,
    };
    state.deadline = Some(ring.timer(max_time, Ctx::new(on_deadline)));
    state.tls.start(&mut ring);
    ring.run(&mut state, RunMode::UntilDone)?;
    if let Some(err) = state.failure {
        return Err(err);
    }
    state.out.flush()?;
    Ok(state.out)
}

fn on_tls<W: Write>(
    state: &mut Fetch<W>,
    ring: &mut Ring<Fetch<W>>,
    c: Completion,
) -> io::Result<()> {
    state.tls.on_completion(ring, c)?;
    while let Some(event) = state.tls.next_event() {
        match event {
            TlsEvent::HandshakeDone(_) => {
                let request = std::mem::take(&mut state.request);
                state.tls.write(ring, &request)?;
            }
            TlsEvent::Received(bytes) => {
                let written = state.out.write_all(&bytes);
                state.tls.recycle(bytes);
                if let Err(err) = written {
                    state.fail(ring, err);
                }
            }
            // `Connection: close`: the server's close_notify ends the response.
            TlsEvent::Closed => state.tls.shutdown(ring),
            // The first failure is the one to tell (a cancel follows a
            // failed write or the time limit).
            TlsEvent::Failed(err) => {
                state.failure.get_or_insert(err);
            }
            TlsEvent::Written { .. } => {}
        }
    }
    if state.tls.is_idle() {
        if let Some(deadline) = state.deadline.take() {
            ring.cancel(deadline, Ctx::none());
        }
    }
    Ok(())
}

fn on_deadline<W: Write>(
    state: &mut Fetch<W>,
    ring: &mut Ring<Fetch<W>>,
    c: Completion,
) -> io::Result<()> {
    state.deadline = None;
    if let Outcome::Timer(Ok(())) = c.outcome {
        let secs = state.max_time.as_secs_f64();
        let late = io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no whole response within {secs} s (--max-time)"),
        );
        state.fail(ring, late);
    }
    Ok(())
}

impl<W> Fetch<W> {
    /// Ends the fetch with `err`, unless it has already failed.
    fn fail(&mut self, ring: &mut Ring<Fetch<W>>, err: io::Error) {
        self.failure.get_or_insert(err);
        self.tls.cancel(ring);
    }
}
