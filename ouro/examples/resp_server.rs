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
use std::os::fd::OwnedFd;

use ouro::RingBuilder;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

#[path = "support/stream_server.rs"]
mod stream_server;

/// Largest unparsed input kept per connection (a command in progress).
const MAX_INPUT: usize = 1 << 20;

/// The protocol, with the in-memory map every connection shares.
struct Resp {
    data: HashMap<Vec<u8>, Vec<u8>>,
}

impl stream_server::Protocol for Resp {
    const MAX_INPUT: usize = MAX_INPUT;

    fn respond(&mut self, input: &[u8], output: &mut Vec<u8>, closing: &mut bool) -> usize {
        execute_all(&mut self.data, input, output, closing)
    }

    fn too_large(&self, output: &mut Vec<u8>) {
        output.extend_from_slice(b"-ERR Protocol error: command too large\r\n");
    }
}

/// Serves on `listener` until the process ends, on a ring of `ring`
/// (which chooses the backend).
pub fn serve(listener: OwnedFd, ring: RingBuilder) -> io::Result<()> {
    let data = HashMap::new();
    stream_server::serve(listener, ring, Resp { data })
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

/// What `main` does, given the command line's arguments (after the
/// program's name).
#[allow(dead_code)] // `main` and the backend-choice tests use it
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let resp = Resp {
        data: HashMap::new(),
    };
    stream_server::main_with("resp_server", ([127, 0, 0, 1], 6379).into(), resp, args)
}

#[allow(dead_code)] // the tests use `serve`
fn main() -> io::Result<()> {
    main_with(std::env::args().skip(1))
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
