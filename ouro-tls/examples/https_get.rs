//! Fetches a page over HTTPS (HTTP/1.1) and prints the response, head and
//! body, to stdout. No DNS: the server's address is given, and the URL's
//! host is the name its certificate must carry (and the SNI and `Host`).
//!
//! ```sh
//! cargo run -p ouro-tls --example https_get -- https://localhost:8443/index.html 127.0.0.1 ca.pem
//! ```
//!
//! Fails (exit 1) on a refused certificate, a handshake past 10 s, or a
//! response cut short without `close_notify`; bad arguments exit with 2,
//! `--help` with 0; a closed stdout ends it quietly (ouro's
//! `examples/support/cli.rs`, which all the examples share).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_tls::{certificates_from_pem, client_config, TlsEvent, TlsStream, Versions};

#[path = "../../ouro/examples/support/cli.rs"]
pub mod cli;

const USAGE: &str = "usage: https_get https://HOST[:PORT]/PATH IP CA_FILE";

/// What `main` does, given the command line's arguments (after the
/// program's name).
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    let words = args.words()?;
    let [url, ip, ca_file] = &words[..] else {
        return Err(args.bad("expected a URL, an IP address and a CA file"));
    };
    parse_url(url).map_err(|err| args.bad(err))?;
    let ip: IpAddr = args.parse(ip)?;
    let ca_pem = std::fs::read(ca_file)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot read {ca_file}: {err}")))?;
    cli::write_all(&fetch(url, ip, &ca_pem)?)
}

fn main() -> ExitCode {
    cli::main(USAGE, main_with)
}

/// The parts of an `https://` URL a request needs.
#[derive(Debug, PartialEq)]
pub struct Url<'a> {
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
}

/// Splits `https://HOST[:PORT][/PATH]`; `InvalidInput` for anything else.
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
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad("bad port"))?),
        None => (authority, 443),
    };
    if host.is_empty() || path.contains(char::is_whitespace) {
        return Err(bad("no host, or a space in the path"));
    }
    Ok(Url { host, port, path })
}

struct Fetch {
    tls: TlsStream<Fetch, Rc<TcpStream>>,
    request: Vec<u8>,
    response: Vec<u8>,
    failure: Option<io::Error>,
}

/// Fetches `url` from the server at `ip`, trusting the CA certificates in
/// the PEM text `ca_pem`; returns the whole response.
pub fn fetch(url: &str, ip: IpAddr, ca_pem: &[u8]) -> io::Result<Vec<u8>> {
    let url = parse_url(url)?;
    let config = client_config(
        &certificates_from_pem(ca_pem)?,
        &[b"http/1.1"],
        Versions::Both,
    )?;
    let socket =
        TcpStream::connect_timeout(&SocketAddr::new(ip, url.port), Duration::from_secs(10))?;
    let tls = TlsStream::client(Rc::new(socket), config, url.host, Ctx::new(on_tls))?
        .with_handshake_timeout(Duration::from_secs(10));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: ouro-tls https_get\r\n\r\n",
        url.path, url.host
    );
    let mut ring = Ring::new(16)?;
    let mut state = Fetch {
        tls,
        request: request.into_bytes(),
        response: Vec::new(),
        failure: None,
    };
    state.tls.start(&mut ring);
    ring.run(&mut state, RunMode::UntilDone)?;
    match state.failure {
        Some(err) => Err(err),
        None => Ok(state.response),
    }
}

fn on_tls(state: &mut Fetch, ring: &mut Ring<Fetch>, c: Completion) -> io::Result<()> {
    state.tls.on_completion(ring, c)?;
    while let Some(event) = state.tls.next_event() {
        match event {
            TlsEvent::HandshakeDone(_) => {
                let request = std::mem::take(&mut state.request);
                state.tls.write(ring, &request)?;
            }
            TlsEvent::Received(bytes) => {
                state.response.extend_from_slice(&bytes);
                state.tls.recycle(bytes);
            }
            // `Connection: close`: the server's close_notify ends the response.
            TlsEvent::Closed => state.tls.shutdown(ring),
            TlsEvent::Failed(err) => state.failure = Some(err),
            TlsEvent::Written { .. } => {}
        }
    }
    Ok(())
}
