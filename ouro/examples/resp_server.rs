//! A RESP (Redis protocol) server on ouro: PING, ECHO, SET, GET, DEL, EXISTS
//! and DBSIZE on an in-memory map, with pipelining and inline commands, so
//! that `redis-cli` and `redis-benchmark` can drive it. The map holds at
//! most [`STORE_LIMIT`] bytes: past it a `SET` gets Redis's `-OOM` error
//! (as Redis does with `maxmemory` and no eviction), so clients cannot make
//! the server hold memory without end.
//!
//! ```text
//! cargo run --release --example resp_server -- 127.0.0.1:6379
//! redis-benchmark -p 6379 -t ping,set,get -n 100000 -P 16 -q
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections (port 0 picks
//! a free port). An unknown command gets `-ERR unknown command`. A command
//! is a flat array of bulk strings (at most `MAX_ARGS` of them, each at
//! most `MAX_BULK` bytes) or an inline line of at most `MAX_INLINE` bytes;
//! anything else gets `-ERR Protocol error` and the connection is closed,
//! as soon as the bytes that decide it arrive (a declared length is never
//! waited for nor allocated, and nesting is never descended into). A
//! command that arrives in pieces costs work in proportion to its size,
//! however small the pieces (see [`Progress`]).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::OwnedFd;

use ouro::{Ring, RingBuilder};

#[path = "support/stream_server.rs"]
pub mod stream_server;

/// Largest unparsed input kept per connection (a command in progress).
const MAX_INPUT: usize = 1 << 20;

/// The most bytes of keys and values the store holds (each entry counted
/// with [`ENTRY_COST`] more, for the map's and the allocator's share).
pub const STORE_LIMIT: usize = 64 << 20;
/// What an entry costs besides its key's and value's bytes.
pub const ENTRY_COST: usize = 64;

/// The keys and values every connection shares, at most `limit` bytes of
/// them.
#[derive(Debug)]
pub struct Store {
    map: HashMap<Vec<u8>, Vec<u8>>,
    used: usize,
    limit: usize,
}

impl Store {
    /// An empty store holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Store {
            map: HashMap::new(),
            used: 0,
            limit,
        }
    }

    fn cost(key: &[u8], value: &[u8]) -> usize {
        key.len() + value.len() + ENTRY_COST
    }

    /// Stores `value` under `key` unless that would take the store past its
    /// limit (the old value, if any, counted as freed).
    fn set(&mut self, key: &[u8], value: &[u8]) -> bool {
        let freed = self.map.get(key).map_or(0, |old| Self::cost(key, old));
        let used = self.used - freed + Self::cost(key, value);
        if used > self.limit {
            return false;
        }
        self.used = used;
        self.map.insert(key.to_vec(), value.to_vec());
        true
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        let Some(value) = self.map.remove(key) else {
            return false;
        };
        self.used -= Self::cost(key, &value);
        true
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new(STORE_LIMIT)
    }
}

/// The protocol, with the store every connection shares.
pub struct Resp {
    data: Store,
    /// Bytes parsed over on every connection.
    examined: u64,
}

impl stream_server::Protocol for Resp {
    type Progress = Progress;
    const MAX_INPUT: usize = MAX_INPUT;

    fn respond(
        &mut self,
        input: &[u8],
        progress: &mut Progress,
        output: &mut Vec<u8>,
        budget: usize,
        closing: &mut bool,
    ) -> usize {
        let before = progress.examined;
        let used = execute_all(&mut self.data, input, progress, output, budget, closing);
        self.examined += progress.examined - before;
        used
    }

    fn too_large(&self, output: &mut Vec<u8>) {
        output.extend_from_slice(b"-ERR Protocol error: command too large\r\n");
    }

    fn examined(&self) -> u64 {
        self.examined
    }
}

/// Serves on `listener` until the process ends, on a ring of `ring`
/// (which chooses the backend).
pub fn serve(listener: OwnedFd, ring: RingBuilder) -> io::Result<()> {
    serve_with(listener, ring, stream_server::Limits::default())
}

/// [`serve`], holding no more than `limits`.
pub fn serve_with(
    listener: OwnedFd,
    ring: RingBuilder,
    limits: stream_server::Limits,
) -> io::Result<()> {
    let data = Store::default();
    stream_server::serve(listener, ring, Resp { data, examined: 0 }, limits)
}

/// The server's state, for a ring the caller runs (see [`start`]).
pub type Server = stream_server::Server<Resp>;

/// Starts serving on `listener` with `ring`, which the caller then runs
/// with the server returned: what [`serve`] does, for a ring that is run
/// step by step (the simulator's `resp` scenario runs this server so).
#[allow(dead_code)] // the simulator uses it
pub fn start(ring: &mut Ring<Server>, listener: OwnedFd) -> io::Result<Server> {
    let resp = Resp {
        data: Store::default(),
        examined: 0,
    };
    stream_server::start(ring, listener, resp, stream_server::Limits::default())
}

/// Runs the complete commands at the start of `input` in order, one at a
/// time while `output` is shorter than `budget`, appending replies to
/// `output`; returns the bytes consumed. Sets `closing` on a protocol
/// error (after replying to it). `progress` is how far the last call read
/// the command at the start of `input` (which has grown since), and is
/// left at the start of the first command not run.
pub(crate) fn execute_all(
    data: &mut Store,
    input: &[u8],
    progress: &mut Progress,
    output: &mut Vec<u8>,
    budget: usize,
    closing: &mut bool,
) -> usize {
    let mut consumed = 0;
    while !*closing && consumed < input.len() && output.len() < budget {
        match progress.advance(&input[consumed..]) {
            Ok(Some((args, len))) => {
                consumed += len;
                progress.next_command();
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

/// A command's arguments, borrowed from the input.
pub(crate) type Args<'a> = Vec<&'a [u8]>;

/// The most arguments a command may declare: far more than any command
/// here needs. A larger count is refused at once.
pub(crate) const MAX_ARGS: usize = 4096;
/// The longest bulk string a command may declare: a longer one could not
/// be held (`MAX_INPUT`), so it is refused at once rather than waited for.
pub(crate) const MAX_BULK: usize = MAX_INPUT;
/// The longest inline command line.
pub(crate) const MAX_INLINE: usize = 64 * 1024;

/// Why input is not a command: the connection gets this and is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// The argument count is not `-1`, `0` or up to `MAX_ARGS`, written
    /// as a plain decimal number and a CRLF.
    MultibulkLength,
    /// A bulk string's length is not `0` to `MAX_BULK`, written likewise.
    BulkLength,
    /// An element of the command is not a bulk string (this byte starts
    /// it): a nested array, say.
    ExpectedBulk(u8),
    /// A bulk string does not end with CRLF where its length says.
    ExpectedCrlf,
    /// An inline command line longer than `MAX_INLINE`.
    InlineTooBig,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MultibulkLength => f.write_str("invalid multibulk length"),
            Self::BulkLength => f.write_str("invalid bulk length"),
            Self::ExpectedBulk(got) => write!(f, "expected '$', got '{}'", got.escape_ascii()),
            Self::ExpectedCrlf => f.write_str("expected CRLF after a bulk string"),
            Self::InlineTooBig => f.write_str("too big inline request"),
        }
    }
}

/// The command at the start of `input` and the bytes it takes, or
/// `Ok(None)` while it is incomplete. Input that cannot become a command
/// is an error as soon as it is seen, so nothing is waited for that could
/// not be held.
#[cfg(test)] // the server reads commands through a `Progress`
pub(crate) fn parse_command(input: &[u8]) -> Result<Option<(Args<'_>, usize)>, ProtocolError> {
    Progress::default().advance(input)
}

/// How far the command at the start of a connection's input has been
/// read, so that each arrival costs the work of its own bytes: an array's
/// arguments read whole are not read again until the command is whole (then
/// once, to collect them), a bulk string's content is waited for by its
/// length, and an inline line's end is looked for in the new bytes only.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// An array's argument count and where its arguments begin, once its
    /// count line is read.
    array: Option<(usize, usize)>,
    /// An array's arguments read whole.
    known: usize,
    /// Where the content of the bulk string being read starts and ends,
    /// once its length line is read.
    content: Option<(usize, usize)>,
    /// Where reading resumes: after the last whole argument or the length
    /// line of the one being read, or at its line end once its content is
    /// whole (an array); after the bytes searched for the line end
    /// (inline).
    at: usize,
    /// Input shorter than this decides nothing new (the content of a bulk
    /// string has not all arrived).
    wait_for: usize,
    /// Bytes parsed over on this connection (read, or stepped over by a
    /// declared length).
    examined: u64,
}

impl Progress {
    /// The command at the start of `input` (this command, grown since the
    /// last call) and the bytes it takes, as [`parse_command`] has it,
    /// reading only what the last call did not.
    pub(crate) fn advance<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
        if input.len() < self.wait_for {
            return Ok(None);
        }
        let from = self.at;
        let parsed = if input.first() == Some(&b'*') {
            self.advance_array(input)
        } else {
            self.advance_inline(input)
        };
        let to = match &parsed {
            Ok(Some((_, len))) => *len,
            _ => input.len(),
        };
        self.examined += to.saturating_sub(from) as u64;
        parsed
    }

    /// Forgets the command just run: the next one starts.
    pub(crate) fn next_command(&mut self) {
        *self = Progress {
            examined: self.examined,
            ..Progress::default()
        };
    }

    /// Bytes parsed over on this connection (read, or stepped over by a
    /// declared length).
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// A command as a flat array of bulk strings, read without recursion:
    /// an element that is not a bulk string is an error, whatever it holds.
    fn advance_array<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
        let (count, first) = match self.array {
            Some(array) => array,
            None => {
                let Some(array) = parse_count(input)? else {
                    return Ok(None);
                };
                self.array = Some(array);
                self.at = array.1;
                array
            }
        };
        let resumed = self.known > 0;
        // Grows with the arguments present, never to the count declared.
        let mut args = Vec::new();
        if !self.read_arguments(input, count, (!resumed).then_some(&mut args))? {
            return Ok(None);
        }
        if resumed {
            // The arguments read by earlier calls, again: once per command.
            let mut again = Progress {
                at: first,
                ..Progress::default()
            };
            again.read_arguments(input, count, Some(&mut args))?;
            self.examined += (self.at - first) as u64;
        }
        Ok(Some((args, self.at)))
    }

    /// Reads bulk strings from `at` until `count` are whole, collecting
    /// them into `args` if given; `Ok(false)` while they are not.
    fn read_arguments<'a>(
        &mut self,
        input: &'a [u8],
        count: usize,
        mut args: Option<&mut Args<'a>>,
    ) -> Result<bool, ProtocolError> {
        while self.known < count {
            let (start, end) = match self.content {
                Some(content) => content,
                None => {
                    let Some(content) = bulk_content(input, self.at)? else {
                        return Ok(false);
                    };
                    self.content = Some(content);
                    self.at = content.0;
                    content
                }
            };
            if input.len() <= end {
                self.wait_for = end + 1;
                return Ok(false);
            }
            // Only the line end is left to read.
            self.at = end;
            if !has_so_far(input, end, b"\r\n").ok_or(ProtocolError::ExpectedCrlf)? {
                return Ok(false);
            }
            if let Some(args) = args.as_deref_mut() {
                args.push(&input[start..end]);
            }
            self.known += 1;
            self.at = end + 2;
            self.content = None;
        }
        Ok(true)
    }

    /// An inline command: words on one line (what `PING_INLINE` sends).
    fn advance_inline<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
        let window = &input[..input.len().min(MAX_INLINE + 1)];
        let unsearched = window.get(self.at..).unwrap_or_default();
        let Some(found) = unsearched.iter().position(|&b| b == b'\n') else {
            self.at = window.len();
            return if input.len() > MAX_INLINE {
                Err(ProtocolError::InlineTooBig)
            } else {
                Ok(None)
            };
        };
        let end = self.at + found;
        let line = input[..end].strip_suffix(b"\r").unwrap_or(&input[..end]);
        let args = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|word| !word.is_empty())
            .collect();
        Ok(Some((args, end + 1)))
    }
}

/// Where the content of the bulk string whose length line starts at `at`
/// starts and ends, once that line is whole.
fn bulk_content(input: &[u8], at: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    match input.get(at) {
        None => return Ok(None),
        Some(b'$') => {}
        Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
    }
    let length = parse_decimal(input, at + 1, MAX_BULK, ProtocolError::BulkLength)?;
    Ok(length.map(|(len, start)| (start, start + len)))
}

/// The count line of an array (`input` starts with `*`) and where it ends;
/// `*-1` (a null array) counts as no arguments, like `*0`.
fn parse_count(input: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    const NULL_ARRAY: &[u8] = b"*-1\r\n";
    if input.get(1) == Some(&b'-') {
        let whole = has_so_far(input, 0, NULL_ARRAY).ok_or(ProtocolError::MultibulkLength)?;
        return Ok(whole.then_some((0, NULL_ARRAY.len())));
    }
    parse_decimal(input, 1, MAX_ARGS, ProtocolError::MultibulkLength)
}

/// The number from `at` up to a CRLF, and where that line ends: digits
/// without a leading zero, at most `max`. `Ok(None)` while the line is
/// incomplete but may still become one; `invalid` once it cannot (a value
/// past `max` fails at the digit that passes it, so no length is waited
/// for).
fn parse_decimal(
    input: &[u8],
    at: usize,
    max: usize,
    invalid: ProtocolError,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let line = input.get(at..).unwrap_or_default();
    let mut value = 0usize;
    for (i, &byte) in line.iter().enumerate() {
        match byte {
            // After a leading `0` nothing but the line end may follow.
            b'0'..=b'9' if i == 0 || value != 0 => {
                value = value * 10 + usize::from(byte - b'0');
                if value > max {
                    return Err(invalid);
                }
            }
            b'\r' if i > 0 => {
                let whole = has_so_far(input, at + i, b"\r\n").ok_or(invalid)?;
                return Ok(whole.then_some((value, at + i + 2)));
            }
            _ => return Err(invalid),
        }
    }
    Ok(None)
}

/// Whether `input` has `expected` at `at`: `Some(true)` if whole,
/// `Some(false)` if the input ends first with no byte differing, `None` if
/// one differs.
fn has_so_far(input: &[u8], at: usize, expected: &[u8]) -> Option<bool> {
    let present = input.get(at..).unwrap_or_default();
    let seen = present.len().min(expected.len());
    (present[..seen] == expected[..seen]).then_some(seen == expected.len())
}

fn execute(data: &mut Store, args: &[&[u8]], out: &mut Vec<u8>) {
    let name = args[0].to_ascii_uppercase();
    match (name.as_slice(), args.len()) {
        (b"PING", 1) => out.extend_from_slice(b"+PONG\r\n"),
        (b"PING", 2) | (b"ECHO", 2) => bulk(out, Some(args[1])),
        (b"SET", 3) if data.set(args[1], args[2]) => out.extend_from_slice(b"+OK\r\n"),
        (b"SET", 3) => {
            out.extend_from_slice(b"-OOM command not allowed when used memory > 'maxmemory'.\r\n")
        }
        (b"GET", 2) => bulk(out, data.get(args[1])),
        (b"DEL", n) if n >= 2 => {
            let count = args[1..].iter().filter(|k| data.remove(k)).count();
            let _ = write!(out, ":{count}\r\n");
        }
        (b"EXISTS", n) if n >= 2 => {
            let count = args[1..]
                .iter()
                .filter(|k| data.map.contains_key(**k))
                .count();
            let _ = write!(out, ":{count}\r\n");
        }
        (b"DBSIZE", 1) => {
            let _ = write!(out, ":{}\r\n", data.map.len());
        }
        // redis-benchmark reads these two settings first.
        (b"CONFIG", 3) if args[1].eq_ignore_ascii_case(b"GET") => {
            let limit = data.limit.to_string();
            let value: &[u8] = match args[2].to_ascii_lowercase().as_slice() {
                b"save" => b"",
                b"appendonly" => b"no",
                b"maxmemory" => limit.as_bytes(),
                b"maxmemory-policy" => b"noeviction",
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
            let _ = write!(out, "-ERR unknown command '{}'\r\n", quoted_name(args[0]));
        }
    }
}

/// A command's name as an error line may quote it: at most 128 characters,
/// CR and LF made spaces (as Redis does), so a name cannot end the line
/// and forge replies for the commands after it.
fn quoted_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .take(128)
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
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

/// What `--help` and a bad command line show.
const USAGE: &str = "usage: resp_server [ADDR]   (default ADDR: 127.0.0.1:6379)";

/// What `main` does, given the command line's arguments (after the
/// program's name).
#[allow(dead_code)] // `main` and the backend-choice tests use it
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let resp = Resp {
        data: Store::default(),
        examined: 0,
    };
    stream_server::main_with(USAGE, ([127, 0, 0, 1], 6379).into(), resp, args)
}

#[allow(dead_code)] // the tests use `serve`
fn main() -> std::process::ExitCode {
    stream_server::cli::main(USAGE, main_with)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, usize, bool) {
        run_on(&mut Store::default(), input)
    }

    fn run_on(data: &mut Store, input: &[u8]) -> (String, usize, bool) {
        let (mut out, mut closing) = (Vec::new(), false);
        let used = execute_all(
            data,
            input,
            &mut Progress::default(),
            &mut out,
            usize::MAX,
            &mut closing,
        );
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
        // A name with CR LF in it is one reply, not a forged second one.
        let forged = b"*1\r\n$18\r\nx\r\n$6\r\nforged\r\n+OK\r\n*1\r\n$4\r\nPING\r\n";
        let (out, _, closing) = run(forged);
        assert_eq!(
            out,
            "-ERR unknown command 'x  $6  forged  +OK'\r\n+PONG\r\n"
        );
        assert!(!closing);
        let long = format!("*1\r\n$300\r\n{}\r\n", "n".repeat(300));
        let (out, _, _) = run(long.as_bytes());
        assert_eq!(
            out,
            format!("-ERR unknown command '{}'\r\n", "n".repeat(128))
        );
        let (out, _, closing) = run(b"*1\r\n:5\r\n");
        assert!(out.starts_with("-ERR Protocol error"), "{out}");
        assert!(closing);
    }

    fn set(key: &str, value: &str) -> String {
        let (k, v) = (key.len(), value.len());
        format!("*3\r\n$3\r\nSET\r\n${k}\r\n{key}\r\n${v}\r\n{value}\r\n")
    }

    #[test]
    fn the_store_refuses_sets_past_its_limit_until_keys_are_deleted() {
        let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
        // Room for two entries of a 1-byte key and a 100-byte value.
        let mut store = Store::new(2 * (1 + 100 + ENTRY_COST));
        let hundred = "v".repeat(100);
        let input = set("a", &hundred) + &set("b", &hundred) + &set("c", "x");
        let (out, _, closing) = run_on(&mut store, input.as_bytes());
        assert_eq!(out, format!("+OK\r\n+OK\r\n{oom}"));
        assert!(!closing, "a full store is an error reply, not a close");
        // Replacing a value counts the old one as freed: a smaller one fits,
        // a larger one does not, and the refused SET changes nothing.
        let input = set("a", "small") + &set("b", &"w".repeat(200));
        let (out, _, _) = run_on(&mut store, input.as_bytes());
        assert_eq!(out, format!("+OK\r\n{oom}"));
        let gets = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n";
        let (out, _, _) = run_on(&mut store, gets);
        assert_eq!(out, format!("$5\r\nsmall\r\n$100\r\n{hundred}\r\n"));
        // DEL makes room again.
        let input =
            "*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n".to_string() + &set("c", &"z".repeat(150));
        let (out, _, _) = run_on(&mut store, input.as_bytes());
        assert_eq!(out, ":2\r\n+OK\r\n");
        assert_eq!(store.used, 1 + 150 + ENTRY_COST);
        let config = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$9\r\nmaxmemory\r\n";
        let (out, _, _) = run_on(&mut store, config);
        assert_eq!(out, "*2\r\n$9\r\nmaxmemory\r\n$3\r\n330\r\n");
    }
}
