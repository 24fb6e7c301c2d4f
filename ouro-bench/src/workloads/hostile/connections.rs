//! Attacks made of many connections: floods that never read, thousands of
//! idle connections, more connections than the server may have fds.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::attacks::{connect_resetting, shown, Aim};
use super::procfs;
use super::target::Server;

/// Connections made at a time, each batch accepted before the next (the
/// examples listen with a backlog of 1,024).
const BATCH: usize = 500;
/// Source addresses for many connections: 127.0.0.2 and the next seven,
/// so that no address runs out of ports.
const SOURCES: u8 = 8;
/// fds this process keeps for itself besides the connections.
const SPARE_FDS: u64 = 200;
/// How long the answers to one request on each of many connections may
/// take, all together (each read waits up to 3 s: thousands of them must
/// not add up to hours).
const ANSWERS_WITHIN: Duration = Duration::from_secs(10);

/// Connections that send and never read, reset when dropped.
pub struct Flood {
    streams: Vec<TcpStream>,
}

impl Flood {
    /// Opens `count` connections to `addr`.
    pub fn open(addr: SocketAddr, count: usize) -> Result<Flood, String> {
        let streams = (0..count)
            .map(|_| connect_resetting(addr, None))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("connect: {e}"))?;
        Flood::from_streams(streams).map_err(|e| format!("nonblocking: {e}"))
    }

    /// Floods over `streams`.
    pub fn from_streams(streams: Vec<TcpStream>) -> std::io::Result<Flood> {
        for stream in &streams {
            stream.set_nonblocking(true)?;
        }
        Ok(Flood { streams })
    }

    /// Sends `chunk` again and again on every connection, as fast as the
    /// server takes it (up to `limit` bytes per connection), for `secs`;
    /// reads nothing.
    pub fn send(mut self, chunk: &[u8], limit: Option<usize>, secs: Duration) {
        let deadline = Instant::now() + secs;
        let mut sent = vec![0usize; self.streams.len()];
        while Instant::now() < deadline {
            let mut progress = false;
            for (stream, sent) in self.streams.iter_mut().zip(&mut sent) {
                // Where the last write left off: requests stay whole.
                let rest = &chunk[*sent % chunk.len()..];
                let room = limit.map_or(rest.len(), |limit| limit.saturating_sub(*sent));
                let piece = &rest[..room.min(rest.len())];
                if piece.is_empty() {
                    continue;
                }
                // Closed by the server (it may give up on a flood): done.
                if let Ok(n) = stream.write(piece) {
                    *sent += n;
                    progress |= n > 0;
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.streams.clear();
    }
}

/// The source address of connection `i`.
fn source(i: usize) -> SocketAddr {
    let host = 2 + (i % usize::from(SOURCES)) as u8;
    SocketAddr::from(([127, 0, 0, host], 0))
}

/// Connections the server holds: its fds and its fixed-table slots.
fn held(pid: u32) -> usize {
    procfs::resources(pid).map_or(0, |r| r.fds + r.slots)
}

/// Waits up to a second for the server to hold `count` more connections
/// than `before` (accepted, not just queued).
fn wait_accepted(pid: u32, before: usize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while held(pid) < before + count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wanted` connections, or as many as this process's fd limit allows
/// (said on standard error).
fn affordable(wanted: usize) -> usize {
    let limit = crate::server::raise_fd_limit(wanted as u64 + SPARE_FDS).unwrap_or(1024);
    let affordable = wanted.min(limit.saturating_sub(SPARE_FDS) as usize);
    if affordable < wanted {
        eprintln!(
            "hostile: the open-file limit ({limit}) allows {affordable} connections, not {wanted}"
        );
    }
    affordable
}

/// Opens `count` connections in batches, each accepted before the next.
fn open_idle(aim: &Aim, count: usize) -> Result<Vec<TcpStream>, String> {
    let before = held(aim.pid);
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        for _ in 0..BATCH.min(count - streams.len()) {
            let i = streams.len();
            let stream = connect_resetting(aim.addr, Some(source(i)))
                .map_err(|e| format!("connection {i}: {e}"))?;
            streams.push(stream);
        }
        wait_accepted(aim.pid, before, streams.len());
    }
    Ok(streams)
}

/// `count` idle connections (fewer if this process may not have that many
/// fds), then a request on each and its answer read.
pub fn idle_then_one_request_each(aim: &Aim, count: usize) -> Result<(), String> {
    let count = affordable(count);
    let mut streams = open_idle(aim, count)?;
    let request = aim.server.request();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(request)
            .map_err(|e| format!("{count} connections, request on connection {i}: {e}"))?;
    }
    let deadline = Instant::now() + ANSWERS_WITHIN;
    let mut unanswered = 0;
    let mut first = None;
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut answer = vec![0u8; aim.answer.len()];
        let result = if Instant::now() < deadline {
            stream.read_exact(&mut answer).map_err(|e| e.to_string())
        } else {
            Err(format!("not read: {} s were up", ANSWERS_WITHIN.as_secs()))
        };
        if result.is_err() || answer != aim.answer {
            unanswered += 1;
            first.get_or_insert_with(|| match result {
                Err(e) => format!("connection {i}: {e}"),
                Ok(()) => format!("connection {i}: {:?}", shown(&answer)),
            });
        }
    }
    match first {
        Some(first) => Err(format!(
            "{unanswered} of {count} connections got no answer (first: {first})"
        )),
        None => Ok(()),
    }
}

/// Connections each holding an unfinished request just under the server's
/// input cap, for `secs`, then reset.
pub fn hold_unfinished_requests(aim: &Aim) -> Result<(), String> {
    let (count, request) = match aim.server {
        Server::Http => {
            // One header line, unfinished: more lines would pass the
            // server's limit on header count and be refused at once.
            let line = [b"GET / HTTP/1.1\r\nX-Held: ".as_slice(), &[b'a'; 60 * 1024]].concat();
            (1000, line)
        }
        _ => {
            let start = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n";
            (300, [start.as_slice(), &vec![b'v'; 1000 * 1024]].concat())
        }
    };
    let streams = open_idle(aim, affordable(count))?;
    // A server that caps what all connections hold may close some, or stop
    // reading from them: the flood writes only what it takes.
    Flood::from_streams(streams)
        .map_err(|e| format!("nonblocking: {e}"))?
        .send(&request, Some(request.len()), aim.secs);
    Ok(())
}

/// `count` connections (more than the server may have fds), each sending
/// a request, held for a second, then reset.
pub fn hold_over_limit(aim: &Aim, count: usize) -> Result<(), String> {
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        match connect_resetting(aim.addr, Some(source(i))) {
            Ok(stream) => streams.push(stream),
            // The accept queue may be full while the server has no fd left.
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => return Err(format!("connection {i}: {e}")),
        }
    }
    for stream in &mut streams {
        let _ = stream.write_all(aim.server.request());
    }
    std::thread::sleep(aim.secs.min(Duration::from_secs(1)));
    Ok(())
}
