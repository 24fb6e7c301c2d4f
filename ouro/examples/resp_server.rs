//! A RESP (Redis protocol) server on ouro: PING, ECHO, SET, GET, DEL, EXISTS
//! and DBSIZE on an in-memory map, with pipelining and inline commands, so
//! that `redis-cli` and `redis-benchmark` can drive it.
//!
//! ```text
//! cargo run --release --example resp_server -- 127.0.0.1:6379
//! redis-benchmark -p 6379 -t ping,set,get -n 100000 -P 16 -q
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections (port 0 picks
//! a free port). An unknown command gets `-ERR unknown command`; bytes that
//! are not RESP get `-ERR Protocol error` and the connection is closed.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use slab::Slab;

ouro::messages! {
    enum Msg { Accepted, Received, Sent }
}

/// Largest unparsed input kept per connection (a command in progress).
const MAX_INPUT: usize = 1 << 20;
const READ_SIZE: usize = 16 * 1024;

struct Conn {
    fd: OwnedFd,
    input: Vec<u8>,
    output: Vec<u8>,
    closing: bool,
}

struct Server {
    listener: OwnedFd,
    conns: Slab<Conn>,
    data: HashMap<Vec<u8>, Vec<u8>>,
}

fn ctx(msg: Msg, key: usize) -> Ctx<Server> {
    Ctx::new(Server::on_completion).msg(msg).key(key as u64)
}

impl Server {
    fn on_completion(&mut self, ring: &mut Ring<Server>, c: Completion) -> io::Result<()> {
        let key = c.key() as usize;
        match (c.message::<Msg>()?, c.outcome) {
            (Msg::Accepted, Outcome::Accept(result)) => {
                ring.accept(&self.listener, ctx(Msg::Accepted, 0));
                match result {
                    Ok((fd, _)) => {
                        let key = self.conns.insert(Conn {
                            fd,
                            input: Vec::with_capacity(READ_SIZE),
                            output: Vec::with_capacity(READ_SIZE),
                            closing: false,
                        });
                        self.receive(ring, key);
                    }
                    Err(e) => eprintln!("resp_server: accept failed: {e}"),
                }
            }
            (Msg::Received, Outcome::Recv(result, buf)) => {
                let input: Vec<u8> = buf.downcast().unwrap_or_default();
                match result {
                    Ok(n) if n > 0 => self.received(ring, key, input),
                    _ => self.close(ring, key),
                }
            }
            (Msg::Sent, Outcome::Send(result, mut buf)) => {
                let Ok(n) = result else {
                    self.close(ring, key);
                    return Ok(());
                };
                buf.consume(n);
                let Some(conn) = self.conns.get_mut(key) else {
                    return Ok(());
                };
                if !buf.is_empty() {
                    ring.send(&conn.fd, buf, ctx(Msg::Sent, key));
                    return Ok(());
                }
                conn.output = buf.downcast().unwrap_or_default();
                conn.output.clear();
                if conn.closing {
                    self.close(ring, key);
                } else {
                    self.receive(ring, key);
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

    fn receive(&mut self, ring: &mut Ring<Server>, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut input = std::mem::take(&mut conn.input);
        input.reserve(READ_SIZE);
        ring.recv(&conn.fd, input, ctx(Msg::Received, key));
    }

    fn received(&mut self, ring: &mut Ring<Server>, key: usize, input: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.input = input;
        let consumed = execute_all(
            &mut self.data,
            &conn.input,
            &mut conn.output,
            &mut conn.closing,
        );
        conn.input.drain(..consumed);
        if conn.input.len() > MAX_INPUT && !conn.closing {
            conn.output
                .extend_from_slice(b"-ERR Protocol error: command too large\r\n");
            conn.closing = true;
        }
        if conn.output.is_empty() {
            return self.receive(ring, key);
        }
        let output = std::mem::take(&mut conn.output);
        ring.send(&conn.fd, output, ctx(Msg::Sent, key));
    }

    fn close(&mut self, ring: &mut Ring<Server>, key: usize) {
        if let Some(conn) = self.conns.try_remove(key) {
            ring.close(conn.fd, Ctx::none());
        }
    }
}

/// Runs every complete command at the start of `input`, appending replies
/// to `output`; returns the bytes consumed. Sets `closing` on a protocol
/// error (after replying to it).
fn execute_all(
    data: &mut HashMap<Vec<u8>, Vec<u8>>,
    input: &[u8],
    output: &mut Vec<u8>,
    closing: &mut bool,
) -> usize {
    let mut consumed = 0;
    while !*closing && consumed < input.len() {
        let rest = &input[consumed..];
        let parsed = if rest[0] == b'*' {
            parse_array(rest)
        } else {
            parse_inline(rest)
        };
        match parsed {
            Ok(Some((args, len))) => {
                consumed += len;
                if !args.is_empty() {
                    execute(data, &args, output);
                }
            }
            Ok(None) => break,
            Err(why) => {
                let _ = write!(output, "-ERR Protocol error: {why}\r\n");
                *closing = true;
            }
        }
    }
    consumed
}

type Args<'a> = Vec<&'a [u8]>;

/// A command as an array of bulk strings: `Ok(None)` until it is complete.
fn parse_array(input: &[u8]) -> Result<Option<(Args<'_>, usize)>, String> {
    let Some((frame, len)) = decode_range(input).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let RangeFrame::Array(items) = frame else {
        return Err("expected an array of bulk strings".into());
    };
    let args = items
        .iter()
        .map(|item| match item {
            RangeFrame::BulkString((start, end)) => Ok(&input[*start..*end]),
            _ => Err("expected an array of bulk strings".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((args, len)))
}

/// An inline command: words on one line (what `PING_INLINE` sends).
fn parse_inline(input: &[u8]) -> Result<Option<(Args<'_>, usize)>, String> {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        return if input.len() > 64 * 1024 {
            Err("too big inline request".into())
        } else {
            Ok(None)
        };
    };
    let line = input[..end].strip_suffix(b"\r").unwrap_or(&input[..end]);
    let args = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .collect();
    Ok(Some((args, end + 1)))
}

fn execute(data: &mut HashMap<Vec<u8>, Vec<u8>>, args: &[&[u8]], out: &mut Vec<u8>) {
    let name = args[0].to_ascii_uppercase();
    match (name.as_slice(), args.len()) {
        (b"PING", 1) => out.extend_from_slice(b"+PONG\r\n"),
        (b"PING", 2) | (b"ECHO", 2) => bulk(out, Some(args[1])),
        (b"SET", 3) => {
            data.insert(args[1].to_vec(), args[2].to_vec());
            out.extend_from_slice(b"+OK\r\n");
        }
        (b"GET", 2) => bulk(out, data.get(args[1]).map(Vec::as_slice)),
        (b"DEL", n) if n >= 2 => {
            let count = args[1..]
                .iter()
                .filter(|k| data.remove(**k).is_some())
                .count();
            let _ = write!(out, ":{count}\r\n");
        }
        (b"EXISTS", n) if n >= 2 => {
            let count = args[1..].iter().filter(|k| data.contains_key(**k)).count();
            let _ = write!(out, ":{count}\r\n");
        }
        (b"DBSIZE", 1) => {
            let _ = write!(out, ":{}\r\n", data.len());
        }
        // redis-benchmark reads these two settings first.
        (b"CONFIG", 3) if args[1].eq_ignore_ascii_case(b"GET") => {
            let value: &[u8] = match args[2].to_ascii_lowercase().as_slice() {
                b"save" => b"",
                b"appendonly" => b"no",
                _ => return out.extend_from_slice(b"*0\r\n"),
            };
            out.extend_from_slice(b"*2\r\n");
            bulk(out, Some(args[2]));
            bulk(out, Some(value));
        }
        (b"PING" | b"ECHO" | b"SET" | b"GET" | b"DEL" | b"EXISTS" | b"DBSIZE", _) => {
            let _ = write!(
                out,
                "-ERR wrong number of arguments for '{}' command\r\n",
                String::from_utf8_lossy(args[0]).to_lowercase()
            );
        }
        _ => {
            let _ = write!(
                out,
                "-ERR unknown command '{}'\r\n",
                String::from_utf8_lossy(args[0])
            );
        }
    }
}

fn bulk(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            let _ = write!(out, "${}\r\n", value.len());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

/// Serves on `listener` until the process ends.
pub fn serve(listener: OwnedFd) -> io::Result<()> {
    let mut ring = Ring::new(256)?;
    let mut server = Server {
        listener,
        conns: Slab::new(),
        data: HashMap::new(),
    };
    ring.accept(&server.listener, ctx(Msg::Accepted, 0));
    ring.run(&mut server, RunMode::Forever)
}

#[allow(dead_code)] // the tests use `serve`
fn main() -> io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{arg}: {e} (usage: resp_server ADDR)"),
            )
        })?,
        None => ([127, 0, 0, 1], 6379).into(),
    };
    let listener = ouro::net::tcp_listener(addr, 1024)?;
    println!("listening on {}", ouro::net::local_addr(&listener)?);
    io::stdout().flush()?;
    serve(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, usize, bool) {
        let (mut data, mut out, mut closing) = (HashMap::new(), Vec::new(), false);
        let used = execute_all(&mut data, input, &mut out, &mut closing);
        (String::from_utf8(out).unwrap(), used, closing)
    }

    #[test]
    fn commands_pipeline_and_inline() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n*2\r\n$3\r\nGET";
        let (out, used, closing) = run(input);
        assert_eq!(out, "+OK\r\n$1\r\nv\r\n+PONG\r\n:1\r\n");
        assert_eq!(used, input.len() - b"*2\r\n$3\r\nGET".len());
        assert!(!closing);
    }

    #[test]
    fn errors_are_replies_and_garbage_closes() {
        let (out, _, closing) = run(b"FLY me\r\nGET\r\n");
        assert_eq!(
            out,
            "-ERR unknown command 'FLY'\r\n-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert!(!closing);
        let (out, _, closing) = run(b"*1\r\n:5\r\n");
        assert!(out.starts_with("-ERR Protocol error"), "{out}");
        assert!(closing);
    }
}
