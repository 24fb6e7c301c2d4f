//! The attacks, each a client that misbehaves in one way for a few
//! seconds. An attack returns `Err` when the server's answer broke a
//! promise the attack itself can see (a crash or a lost answer); what the
//! attack does to others and to the server's resources is checked around
//! it (see `super::run_one`).

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use socket2::{Domain, Socket, Type};

use super::connections::{self, Flood};
use super::procfs;
use super::target::Server;

/// What an attack is aimed at.
pub struct Aim<'a> {
    pub addr: SocketAddr,
    pub server: Server,
    /// The answer to `server.request()`, as the server gave it.
    pub answer: &'a [u8],
    pub pid: u32,
    /// How long the timed attacks last.
    pub secs: Duration,
}

/// A way to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Attack {
    /// Connections that send 16 KiB of random bytes, half-close and read
    /// to the end (echo: the bytes must come back).
    RandomBytes,
    /// One request with a 1 MiB line (HTTP: a header; RESP: an inline
    /// command): an error and a close.
    LongLine,
    /// A request that never ends, sent as fast as the server reads:
    /// closed once past the server's input cap.
    EndlessRequest,
    /// 300 connections, each sending a request one byte per second.
    Slowloris,
    /// 10,000 pipelined requests in one write: every answer, in order.
    Pipelined10k,
    /// A RESP array nested 40,000 deep (`*1\r\n` repeated): `-ERR` and a
    /// close, not a crash.
    DeepNesting,
    /// Requests declaring huge or negative lengths (RESP arrays and bulk
    /// strings, HTTP `Content-Length`): no allocation of that size, no
    /// hang.
    HugeLengths,
    /// Connections reset (SO_LINGER 0) in the middle of a request.
    ResetMidRequest,
    /// Requests, then `shutdown(SHUT_WR)`: every answer arrives before the
    /// server closes.
    HalfClose,
    /// Many connections, each holding an unfinished request just under the
    /// server's per-connection input cap (HTTP: 1,000 × a 60 KiB header
    /// line; RESP: 300 × 1,000 KiB of a bulk string): the server's input
    /// held overall must stay bounded, and go once they close.
    HeldInput,
    /// 64 connections sending requests as fast as they can, never reading.
    NonReader,
    /// Small requests for large answers, never read (RESP: `GET` of a
    /// 1 MiB value; HTTP: 20,000 pipelined requests per connection).
    Amplification,
    /// `SET`s of new keys with 1 MiB values (RESP): `-OOM` before
    /// 256 MiB are stored, reads still answered; once the keys are deleted,
    /// as many fit again, in the same memory.
    StoreFill,
    /// 10,000 idle connections, then one request each.
    Idle10k,
    /// A server whose fd limit (128) is below the 300 connections made.
    FdLimit,
}

/// Every attack, in the order of the table.
pub const ATTACKS: [Attack; 15] = [
    Attack::RandomBytes,
    Attack::LongLine,
    Attack::EndlessRequest,
    Attack::Slowloris,
    Attack::Pipelined10k,
    Attack::DeepNesting,
    Attack::HugeLengths,
    Attack::ResetMidRequest,
    Attack::HalfClose,
    Attack::HeldInput,
    Attack::NonReader,
    Attack::Amplification,
    Attack::StoreFill,
    Attack::Idle10k,
    Attack::FdLimit,
];

/// The fd limit of the server under `FdLimit`, and the connections made.
const LOWERED_FD_LIMIT: u64 = 128;
const OVER_FD_LIMIT: usize = 300;
/// Bytes of one unfinished request past which a server has clearly not
/// capped its input (far above any cap plus loopback's socket buffers).
const ENDLESS_LIMIT: usize = 64 << 20;
/// Bytes of values a RESP server may store before it must refuse more.
const STORE_FILL_LIMIT: usize = 256 << 20;
/// How long a server may take to close a connection it should close.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

impl Attack {
    /// Its name in the table (as on the command line).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_string())
            .unwrap_or_default()
    }

    /// Whether it means something against `server`: the protocol attacks
    /// only where there is that protocol.
    pub fn applies_to(self, server: Server) -> bool {
        match self {
            Attack::DeepNesting | Attack::StoreFill => server == Server::Resp,
            Attack::LongLine
            | Attack::EndlessRequest
            | Attack::HugeLengths
            | Attack::HeldInput
            | Attack::Amplification => server != Server::Echo,
            _ => true,
        }
    }

    /// The fd limit the server is started with, if lowered.
    pub fn server_fd_limit(self) -> Option<u64> {
        (self == Attack::FdLimit).then_some(LOWERED_FD_LIMIT)
    }

    /// MiB the server may keep after the attack besides `--after-rss-mib`:
    /// the RESP store filled and emptied again is freed memory that glibc's
    /// allocator keeps for reuse (the store's values are allocated where
    /// freed 1 MiB input buffers raised its mmap threshold).
    pub fn kept_mib(self) -> u64 {
        match self {
            Attack::StoreFill => 64,
            _ => 0,
        }
    }

    /// Makes the attack; `Err` says what the server did wrong, as seen
    /// from the attacking connections.
    pub fn run(self, aim: &Aim) -> Result<(), String> {
        match self {
            Attack::RandomBytes => random_bytes(aim),
            Attack::LongLine => long_line(aim),
            Attack::EndlessRequest => endless_request(aim),
            Attack::Slowloris => slowloris(aim),
            Attack::Pipelined10k => pipelined(aim, 10_000),
            Attack::DeepNesting => deep_nesting(aim),
            Attack::HugeLengths => huge_lengths(aim),
            Attack::ResetMidRequest => reset_mid_request(aim),
            Attack::HalfClose => half_close(aim),
            Attack::HeldInput => connections::hold_unfinished_requests(aim),
            Attack::NonReader => non_reader(aim),
            Attack::Amplification => amplification(aim),
            Attack::StoreFill => store_fill(aim),
            Attack::Idle10k => connections::idle_then_one_request_each(aim, 10_000),
            Attack::FdLimit => connections::hold_over_limit(aim, OVER_FD_LIMIT),
        }
    }
}

/// A connection that fails reads and writes stuck for `CLOSE_WITHIN`.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, CLOSE_WITHIN).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(CLOSE_WITHIN));
    let _ = stream.set_write_timeout(Some(CLOSE_WITHIN));
    Ok(stream)
}

/// A connection, optionally from `source`, that resets when dropped (no
/// TIME_WAIT left behind to hold ports).
pub fn connect_resetting(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(source) = source {
        socket.bind(&source.into())?;
    }
    socket.connect_timeout(&addr.into(), CLOSE_WITHIN)?;
    socket.set_read_timeout(Some(CLOSE_WITHIN))?;
    socket.set_write_timeout(Some(CLOSE_WITHIN))?;
    Ok(socket.into())
}

/// Reads until the server closes the connection (an end or a reset) and
/// returns what came; an error if it is still open after `CLOSE_WITHIN`.
fn read_until_closed(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let still_open = |got: &[u8]| {
        format!(
            "the connection was still open {} s later ({} bytes of answer)",
            CLOSE_WITHIN.as_secs(),
            got.len()
        )
    };
    loop {
        if Instant::now() > deadline {
            return Err(still_open(&got));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(still_open(&got)),
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Writes `data`; a server that closes early (an error answer to the
/// first bytes) is fine, one that stops reading without closing is not.
fn write_unless_closed(stream: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    match stream.write_all(data) {
        Err(e) if is_timeout(&e) => Err(format!(
            "the server stopped reading without closing (write stuck {} s)",
            CLOSE_WITHIN.as_secs()
        )),
        _ => Ok(()),
    }
}

/// `text`'s start, printable, for a message.
pub fn shown(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(60)])
        .escape_debug()
        .to_string()
}

/// A small fast generator of bytes nobody would send on purpose.
struct Noise(u64);

impl Noise {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}

fn random_bytes(aim: &Aim) -> Result<(), String> {
    let deadline = Instant::now() + aim.secs;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    while Instant::now() < deadline {
        let data = noise.bytes(16 * 1024);
        let mut stream = connect(aim.addr)?;
        write_unless_closed(&mut stream, &data)?;
        let _ = stream.shutdown(Shutdown::Write);
        let got = read_until_closed(&mut stream)?;
        if aim.server == Server::Echo && got != data {
            return Err(format!(
                "echoed {} of {} random bytes",
                got.len(),
                data.len()
            ));
        }
    }
    Ok(())
}

/// The start of an error answer in the server's protocol (echo has none,
/// and gets no attack that expects one).
fn error_answer(server: Server) -> &'static [u8] {
    match server {
        Server::Http => b"HTTP/1.1 4",
        Server::Echo | Server::Resp => b"-ERR",
    }
}

/// Sends `request`, half-closes, and expects the server to close with an
/// error answer (or a reset that may have taken the answer with it).
fn expect_error_and_close(aim: &Aim, request: &[u8]) -> Result<(), String> {
    let mut stream = connect(aim.addr)?;
    write_unless_closed(&mut stream, request)?;
    let _ = stream.shutdown(Shutdown::Write);
    let got = read_until_closed(&mut stream)?;
    if !got.is_empty() && !got.starts_with(error_answer(aim.server)) {
        return Err(format!("answered {:?}", shown(&got)));
    }
    Ok(())
}

fn long_line(aim: &Aim) -> Result<(), String> {
    let long = vec![b'a'; 1 << 20];
    let request = match aim.server {
        Server::Http => [b"GET / HTTP/1.1\r\nX-Long: ".as_slice(), &long, b"\r\n\r\n"].concat(),
        _ => [long.as_slice(), b"\r\n"].concat(),
    };
    expect_error_and_close(aim, &request)
}

fn endless_request(aim: &Aim) -> Result<(), String> {
    let (start, more): (&[u8], &[u8]) = match aim.server {
        Server::Http => (
            b"GET / HTTP/1.1\r\n",
            b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        ),
        _ => (
            b"*2\r\n$3\r\nGET\r\n$1073741824\r\n",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
    };
    let chunk = more.repeat(64 * 1024 / more.len());
    let mut stream = connect(aim.addr)?;
    let deadline = Instant::now() + aim.secs;
    let mut sent = 0usize;
    let mut write = |data: &[u8]| stream.write_all(data);
    if write(start).is_err() {
        return Ok(());
    }
    while Instant::now() < deadline && sent < ENDLESS_LIMIT {
        match write(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) if is_timeout(&e) => break,
            // Closed: the cap worked.
            Err(_) => return Ok(()),
        }
    }
    if sent >= ENDLESS_LIMIT {
        return Err(format!(
            "{sent} bytes of one unfinished request were taken without closing the connection"
        ));
    }
    let _ = stream.shutdown(Shutdown::Write);
    read_until_closed(&mut stream)
        .map_err(|e| format!("after {sent} bytes of one request: {e}"))?;
    Ok(())
}

fn slowloris(aim: &Aim) -> Result<(), String> {
    let mut streams = (0..300)
        .map(|_| connect_resetting(aim.addr, None))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| format!("connect: {e}"))?;
    let request = aim.server.request();
    // A byte a second, for about `secs`.
    let bytes = aim.secs.as_secs().clamp(1, 5) as usize + 1;
    for (i, &byte) in request.iter().take(bytes).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        for stream in &mut streams {
            // A server that gives up on a slow client may close it.
            let _ = stream.write(&[byte]);
        }
    }
    Ok(())
}

fn pipelined(aim: &Aim, requests: usize) -> Result<(), String> {
    let stream = connect(aim.addr)?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let all = aim.server.request().repeat(requests);
    let sending = std::thread::spawn(move || writer.write_all(&all));
    let mut reader = stream;
    let expected = aim.answer.repeat(requests);
    let mut got = vec![0u8; expected.len()];
    let read = reader.read_exact(&mut got);
    let _ = sending.join();
    read.map_err(|e| format!("reading {requests} answers ({} bytes): {e}", expected.len()))?;
    match got.iter().zip(&expected).position(|(a, b)| a != b) {
        Some(at) => Err(format!(
            "answers differ at byte {at}: {:?}",
            shown(&got[at..])
        )),
        None => Ok(()),
    }
}

fn deep_nesting(aim: &Aim) -> Result<(), String> {
    let request = b"*1\r\n".repeat(40_000);
    let mut stream = connect(aim.addr)?;
    write_unless_closed(&mut stream, &request)?;
    let _ = stream.shutdown(Shutdown::Write);
    let got = read_until_closed(&mut stream)?;
    if !got.starts_with(b"-ERR") {
        return Err(format!("no -ERR answer (got {:?})", shown(&got)));
    }
    Ok(())
}

fn huge_lengths(aim: &Aim) -> Result<(), String> {
    let filler = vec![b'a'; 64 * 1024];
    let cases: Vec<Vec<u8>> = match aim.server {
        Server::Http => [
            "18446744073709551616",
            "18446744073709551615",
            "9223372036854775807",
            "1073741824",
            "-1",
        ]
        .iter()
        .map(|len| {
            [
                format!("POST / HTTP/1.1\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                &filler,
            ]
            .concat()
        })
        .collect(),
        _ => [
            "*2147483648\r\n",
            "*9223372036854775807\r\n$3\r\nGET\r\n",
            "*1\r\n$9223372036854775807\r\nabc",
            "*-5\r\n",
            "*1\r\n$-2\r\n",
            ":99999999999999999999999999\r\n",
        ]
        .iter()
        .map(|case| case.as_bytes().to_vec())
        .chain([[b"*2\r\n$3\r\nGET\r\n$4294967296\r\n".as_slice(), &filler].concat()])
        .collect(),
    };
    for case in &cases {
        let mut stream = connect(aim.addr)?;
        write_unless_closed(&mut stream, case)?;
        let _ = stream.shutdown(Shutdown::Write);
        read_until_closed(&mut stream).map_err(|e| format!("{:?}: {e}", shown(case)))?;
    }
    Ok(())
}

fn reset_mid_request(aim: &Aim) -> Result<(), String> {
    let request = aim.server.request();
    let half = &request[..request.len() / 2];
    let whole_then_half = [request, half].concat();
    let deadline = Instant::now() + aim.secs;
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        let mut stream = connect_resetting(aim.addr, None).map_err(|e| format!("connect: {e}"))?;
        if round.is_multiple_of(2) {
            let _ = stream.write_all(half);
            continue;
        }
        stream
            .write_all(&whole_then_half)
            .map_err(|e| format!("writing: {e}"))?;
        let mut answer = vec![0u8; aim.answer.len()];
        stream
            .read_exact(&mut answer)
            .map_err(|e| format!("the whole request before the half was not answered: {e}"))?;
    }
    Ok(())
}

fn half_close(aim: &Aim) -> Result<(), String> {
    const REQUESTS: usize = 100;
    let requests = aim.server.request().repeat(REQUESTS);
    let expected = aim.answer.repeat(REQUESTS);
    for conn in 0..50 {
        let mut stream = connect(aim.addr)?;
        stream
            .write_all(&requests)
            .map_err(|e| format!("writing: {e}"))?;
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let got = read_until_closed(&mut stream)?;
        if got != expected {
            return Err(format!(
                "connection {conn}: {} of {} bytes of answers arrived before the close",
                got.len(),
                expected.len()
            ));
        }
    }
    Ok(())
}

fn non_reader(aim: &Aim) -> Result<(), String> {
    let chunk = aim
        .server
        .request()
        .repeat(16 * 1024 / aim.server.request().len());
    Flood::open(aim.addr, 64)?.send(&chunk, None, aim.secs);
    Ok(())
}

fn amplification(aim: &Aim) -> Result<(), String> {
    match aim.server {
        Server::Resp => {
            let value = vec![b'v'; 1 << 20];
            let set = [
                format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).as_bytes(),
                &value,
                b"\r\n",
            ]
            .concat();
            let mut control = connect(aim.addr)?;
            control.write_all(&set).map_err(|e| format!("SET: {e}"))?;
            let mut ok = [0u8; 5];
            control
                .read_exact(&mut ok)
                .map_err(|e| format!("SET: {e}"))?;
            let gets = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(128);
            Flood::open(aim.addr, 4)?.send(&gets, Some(gets.len()), aim.secs);
        }
        _ => {
            let requests = aim.server.request().repeat(20_000);
            Flood::open(aim.addr, 16)?.send(&requests, Some(requests.len()), aim.secs);
        }
    }
    Ok(())
}

fn store_fill(aim: &Aim) -> Result<(), String> {
    let value = vec![b'v'; 1 << 20];
    let mut redis = Resp(BufReader::new(connect(aim.addr)?));
    let keys = fill_store(&mut redis, &value)?;
    let Some(first) = keys.first() else {
        return Err("the first SET of 1 MiB was refused".into());
    };
    let answer = redis.command(&[b"GET", first])?;
    expect(&answer, &[b"$1048576\r\n", &value[..], b"\r\n"].concat())?;
    let full_kb = rss_kb(aim.pid)?;
    delete(&mut redis, &keys)?;
    // Deleted values are room again, and their memory is used again.
    let again = fill_store(&mut redis, &value)?;
    if again.len() != keys.len() {
        return Err(format!(
            "{} SETs of 1 MiB stored, then {} after deleting them",
            keys.len(),
            again.len()
        ));
    }
    let refilled_kb = rss_kb(aim.pid)?;
    if refilled_kb > full_kb + REFILL_SLACK_KB {
        return Err(format!(
            "RSS {} MiB with the store full, {} MiB full again after deleting",
            full_kb / 1024,
            refilled_kb / 1024
        ));
    }
    delete(&mut redis, &again)
}

/// How much more a RESP server's RSS may be once its store is filled a
/// second time.
const REFILL_SLACK_KB: u64 = 16 << 10;

/// `SET`s new keys with `value` until the store answers `-OOM`; the keys
/// stored.
fn fill_store(redis: &mut Resp, value: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    loop {
        if keys.len() * value.len() > STORE_FILL_LIMIT {
            return Err(format!("{} SETs of 1 MiB all stored: no limit", keys.len()));
        }
        let key = format!("store-fill:{}", keys.len()).into_bytes();
        let answer = redis.command(&[b"SET", &key, value])?;
        if answer.starts_with(b"-OOM") {
            return Ok(keys);
        }
        expect(&answer, b"+OK\r\n")?;
        keys.push(key);
    }
}

fn delete(redis: &mut Resp, keys: &[Vec<u8>]) -> Result<(), String> {
    let del: Vec<&[u8]> = std::iter::once(&b"DEL"[..])
        .chain(keys.iter().map(Vec::as_slice))
        .collect();
    let answer = redis.command(&del)?;
    expect(&answer, format!(":{}\r\n", keys.len()).as_bytes())
}

fn rss_kb(pid: u32) -> Result<u64, String> {
    procfs::resources(pid)
        .map(|r| r.rss_kb)
        .map_err(|e| format!("reading the server's RSS: {e}"))
}

/// A RESP connection, one command at a time.
struct Resp(BufReader<TcpStream>);

impl Resp {
    /// Sends `args` as a command and reads its reply whole.
    fn command(&mut self, args: &[&[u8]]) -> Result<Vec<u8>, String> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        let name = String::from_utf8_lossy(args[0]).into_owned();
        let failed = |e: io::Error| format!("{name}: {e}");
        self.0.get_mut().write_all(&request).map_err(failed)?;
        let mut reply = Vec::new();
        self.0.read_until(b'\n', &mut reply).map_err(failed)?;
        let Some(len) = reply.strip_prefix(b"$") else {
            return Ok(reply);
        };
        let Ok(len) = String::from_utf8_lossy(len).trim().parse::<usize>() else {
            return Ok(reply); // `$-1`, nothing
        };
        let start = reply.len();
        reply.resize(start + len + 2, 0);
        self.0.read_exact(&mut reply[start..]).map_err(failed)?;
        Ok(reply)
    }
}

fn expect(answer: &[u8], expected: &[u8]) -> Result<(), String> {
    if answer == expected {
        return Ok(());
    }
    Err(format!(
        "answered {:?}, not {:?}",
        shown(answer),
        shown(expected)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_attacks_go_only_where_the_protocol_is() {
        let servers = |attack: Attack| -> Vec<&str> {
            [Server::Echo, Server::Http, Server::Resp]
                .into_iter()
                .filter(|&server| attack.applies_to(server))
                .map(Server::name)
                .collect()
        };
        assert_eq!(servers(Attack::DeepNesting), ["resp"]);
        assert_eq!(servers(Attack::StoreFill), ["resp"]);
        assert_eq!(servers(Attack::LongLine), ["http", "resp"]);
        assert_eq!(servers(Attack::Amplification), ["http", "resp"]);
        assert_eq!(servers(Attack::HeldInput), ["http", "resp"]);
        assert_eq!(servers(Attack::HalfClose), ["echo", "http", "resp"]);
        assert_eq!(Attack::FdLimit.server_fd_limit(), Some(LOWERED_FD_LIMIT));
        assert_eq!(Attack::Slowloris.server_fd_limit(), None);
        assert_eq!(Attack::Pipelined10k.name(), "pipelined10k");
    }
}
