//! An HTTP/1.1 server on ouro: keep-alive, pipelined requests, one fixed
//! small response. Malformed requests get `400 Bad Request` and the
//! connection is closed; other connections are not affected.
//!
//! ```text
//! cargo run --release --example http_server -- 127.0.0.1:8080
//! wrk -t1 -c64 -d5s http://127.0.0.1:8080/
//! ```
//!
//! It prints `listening on ADDR` once it accepts connections (port 0 picks
//! a free port).
//!
//! Connections are handled by `support/stream_server.rs` (multishot accept
//! and receive into a shared buffer group, so an idle connection holds no
//! buffer); this file is the protocol: every complete request gets the
//! answer, in order. A request body announced by `Content-Length` is read
//! and ignored; chunked bodies are answered with `501` and the connection
//! closed. A request that arrives in pieces costs work in proportion to its
//! size, however small the pieces (see [`Progress`]). `ouro-bench http`
//! runs this server under `wrk`, and tokio and monoio servers built on its
//! `respond`.

use std::io::{self, Write};
use std::os::fd::OwnedFd;

use ouro::{Ring, RingBuilder};

#[path = "support/http_connection.rs"]
mod http_connection;
#[path = "support/stream_server.rs"]
pub mod stream_server;

const BODY: &[u8] = b"Hello, world!";
/// Largest request head (and buffered pipeline) accepted.
const MAX_INPUT: usize = 64 * 1024;

/// The protocol: every request gets the same small answer.
#[derive(Default)]
pub struct Http {
    /// Bytes parsed over on every connection.
    examined: u64,
}

impl stream_server::Protocol for Http {
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
        let used = respond(input, progress, output, budget, closing);
        self.examined += progress.examined - before;
        used
    }

    fn too_large(&self, output: &mut Vec<u8>) {
        status(output, 431, "Request Header Fields Too Large");
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
    stream_server::serve(listener, ring, Http::default(), limits)
}

/// The server's state, for a ring the caller runs (see [`start`]).
pub type Server = stream_server::Server<Http>;

/// Starts serving on `listener` with `ring`, which the caller then runs
/// with the server returned: what [`serve`] does, for a ring that is run
/// step by step (the simulator's `http` scenario runs this server so).
#[allow(dead_code)] // the simulator uses it
pub fn start(ring: &mut Ring<Server>, listener: OwnedFd) -> io::Result<Server> {
    let limits = stream_server::Limits::default();
    stream_server::start(ring, listener, Http::default(), limits)
}

/// Answers the complete requests at the start of `input` in order, one at
/// a time while `output` is shorter than `budget`; returns how many bytes
/// they took. Sets `closing` when the connection must close after the
/// answers (client asked, or the request was bad). `progress` is how far
/// the last call read the request at the start of `input` (which has
/// grown since), and is left at the start of the first request not
/// answered.
pub fn respond(
    input: &[u8],
    progress: &mut Progress,
    output: &mut Vec<u8>,
    budget: usize,
    closing: &mut bool,
) -> usize {
    let mut consumed = 0;
    while !*closing && consumed < input.len() && output.len() < budget {
        match progress.advance(&input[consumed..]) {
            Parsed::Request { len, keep_alive } => {
                consumed += len;
                progress.next_request();
                *closing = !keep_alive;
                ok(output, keep_alive);
            }
            Parsed::Partial => break,
            Parsed::Bad(code, reason) => {
                status(output, code, reason);
                *closing = true;
            }
        }
    }
    consumed
}

/// What the input at the start of a request makes of it.
enum Parsed {
    /// A whole request, `len` bytes with its body.
    Request { len: usize, keep_alive: bool },
    /// Not whole yet, and nothing wrong so far.
    Partial,
    /// An answer to give before closing.
    Bad(u16, &'static str),
}

/// A request head parsed whole: the length of the request it starts
/// (with its body), which may be more than can be held.
struct Head {
    len: usize,
    keep_alive: bool,
}

/// Parses the request head at the start of `input`: `Ok(None)` while it
/// is not whole.
fn parse_head(input: &[u8]) -> Result<Option<Head>, (u16, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(input) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, "Request Header Fields Too Large"))
        }
        Err(_) => return Err((400, "Bad Request")),
    };
    let keep_alive = http_connection::keep_alive(request.version, request.headers);
    let mut body: Option<usize> = None;
    for header in request.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("content-length") {
            // Lengths that disagree would let a proxy and this server cut
            // the stream in different places (request smuggling).
            match (content_length(value), body) {
                (Some(len), None) => body = Some(len),
                (Some(len), Some(seen)) if len == seen => {}
                _ => return Err((400, "Bad Request")),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err((501, "Not Implemented"));
        }
    }
    match head.checked_add(body.unwrap_or(0)) {
        Some(len) => Ok(Some(Head { len, keep_alive })),
        None => Err((413, "Content Too Large")),
    }
}

/// A `Content-Length` value (RFC 9110 8.6): digits only, or a list of the
/// same number repeated; `None` for anything else (a sign, a space inside,
/// numbers that differ, one too large).
fn content_length(value: &[u8]) -> Option<usize> {
    let mut lengths = value.split(|&b| b == b',').map(|item| {
        let digits = item.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse::<usize>().ok()
    });
    let first = lengths.next()??;
    lengths.all(|len| len == Some(first)).then_some(first)
}

/// How far the request at the start of a connection's input has been
/// read, so that each arrival costs the work of its own bytes: the end of
/// the head is looked for in the new bytes only, the head is parsed once
/// it is whole (and, so that garbage is refused early, whenever the
/// unfinished head has doubled since it was last parsed), and a body is
/// waited for by its length.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    stage: Stage,
    /// Bytes parsed over on this connection (searched, or given to the
    /// head parser).
    examined: u64,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    /// The head is not whole: `searched` bytes hold no end of it, and
    /// `parsed` bytes were given to the parser last.
    Head {
        searched: usize,
        seen: Seen,
        parsed: usize,
    },
    /// The head is parsed; the request (with its body) takes `len` bytes.
    Body { len: usize, keep_alive: bool },
}

impl Default for Stage {
    fn default() -> Stage {
        Stage::Head {
            searched: 0,
            seen: Seen::EmptyLines,
            parsed: 0,
        }
    }
}

/// What the search for the end of a head has seen last: the head ends at
/// the first empty line after a line with text (empty lines before the
/// request line are skipped, as the parser does).
#[derive(Debug, Clone, Copy)]
enum Seen {
    EmptyLines,
    Text,
    LineEnd,
    LineEndCr,
}

impl Progress {
    /// What `input`, the request this reads (grown since the last call),
    /// makes of it so far.
    fn advance(&mut self, input: &[u8]) -> Parsed {
        match self.stage {
            Stage::Body { len, keep_alive } => Self::with_body(input, len, keep_alive),
            Stage::Head { parsed, .. } => {
                if input.len() >= 2 * parsed {
                    if let done @ (Parsed::Request { .. } | Parsed::Bad(..)) = self.parse(input) {
                        return done;
                    }
                }
                if self.head_is_whole(input) {
                    self.parse(input)
                } else {
                    Parsed::Partial
                }
            }
        }
    }

    /// The request once its head is whole: whole too if its body is.
    fn with_body(input: &[u8], len: usize, keep_alive: bool) -> Parsed {
        if len <= input.len() {
            Parsed::Request { len, keep_alive }
        } else if len <= MAX_INPUT {
            Parsed::Partial
        } else {
            Parsed::Bad(413, "Content Too Large")
        }
    }

    /// Parses the head at the start of `input`; once it is whole, waits
    /// for the body.
    fn parse(&mut self, input: &[u8]) -> Parsed {
        let parsed = parse_head(input);
        let read = match parsed {
            Ok(Some(Head { len, .. })) => len.min(input.len()),
            _ => input.len(),
        };
        self.examined += read as u64;
        match parsed {
            Ok(Some(Head { len, keep_alive })) => {
                self.stage = Stage::Body { len, keep_alive };
                Self::with_body(input, len, keep_alive)
            }
            Ok(None) => {
                if let Stage::Head { parsed, .. } = &mut self.stage {
                    *parsed = input.len();
                }
                Parsed::Partial
            }
            Err((code, reason)) => Parsed::Bad(code, reason),
        }
    }

    /// Looks for the end of the head in the bytes not searched yet.
    fn head_is_whole(&mut self, input: &[u8]) -> bool {
        let Stage::Head { searched, seen, .. } = &mut self.stage else {
            return true;
        };
        let from = *searched;
        let mut whole = false;
        for &byte in input.get(from..).unwrap_or_default() {
            *searched += 1;
            *seen = match (*seen, byte) {
                (Seen::EmptyLines, b'\r' | b'\n') => Seen::EmptyLines,
                (Seen::LineEnd | Seen::LineEndCr, b'\n') => {
                    // Were the parser to disagree, the search goes on.
                    whole = true;
                    Seen::Text
                }
                (Seen::LineEnd, b'\r') => Seen::LineEndCr,
                (_, b'\n') => Seen::LineEnd,
                _ => Seen::Text,
            };
            if whole {
                break;
            }
        }
        self.examined += (*searched - from) as u64;
        whole
    }

    /// Forgets the request just answered: the next one starts.
    fn next_request(&mut self) {
        self.stage = Stage::default();
    }

    /// Bytes parsed over on this connection (searched for the end of a
    /// head, or given to the head parser).
    pub fn examined(&self) -> u64 {
        self.examined
    }
}

fn ok(output: &mut Vec<u8>, keep_alive: bool) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        output,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        BODY.len()
    );
    output.extend_from_slice(BODY);
}

fn status(output: &mut Vec<u8>, code: u16, reason: &str) {
    let _ = write!(
        output,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

/// What `--help` and a bad command line show.
const USAGE: &str = "usage: http_server [ADDR]   (default ADDR: 127.0.0.1:8080)";

/// What `main` does, given the command line's arguments (after the
/// program's name).
#[allow(dead_code)] // `main` and the backend-choice tests use it
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    stream_server::main_with(USAGE, ([127, 0, 0, 1], 8080).into(), Http::default(), args)
}

#[allow(dead_code)] // the tests use `serve`
fn main() -> std::process::ExitCode {
    stream_server::cli::main(USAGE, main_with)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(input: &[u8]) -> (String, usize, bool) {
        let (mut out, mut closing) = (Vec::new(), false);
        let used = respond(
            input,
            &mut Progress::default(),
            &mut out,
            usize::MAX,
            &mut closing,
        );
        (String::from_utf8(out).unwrap(), used, closing)
    }

    #[test]
    fn pipelined_requests_get_one_answer_each() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = [&req[..], &req[..], &req[..10]].concat();
        let (out, used, closing) = answer(&input);
        assert_eq!(out.matches("200 OK").count(), 2);
        assert_eq!(used, 2 * req.len());
        assert!(!closing);
    }

    #[test]
    fn a_budget_stops_answering_after_the_answer_that_reaches_it() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let input = req.repeat(3);
        let (mut out, mut closing) = (Vec::new(), false);
        assert_eq!(
            respond(&input, &mut Progress::default(), &mut out, 0, &mut closing),
            0
        );
        assert!(out.is_empty());
        assert_eq!(
            respond(&input, &mut Progress::default(), &mut out, 1, &mut closing),
            req.len()
        );
        let one = out.len();
        assert_eq!(
            respond(
                &input,
                &mut Progress::default(),
                &mut out,
                one + 1,
                &mut closing
            ),
            req.len()
        );
        assert_eq!(String::from_utf8(out).unwrap().matches("200 OK").count(), 2);
    }

    #[test]
    fn bodies_are_skipped_and_garbage_closes() {
        let (out, used, _) =
            answer(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n");
        assert_eq!(out.matches("200 OK").count(), 2);
        assert_eq!(used, 59);
        let (out, _, closing) = answer(b"\x00\x01garbage\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400"));
        assert!(closing);
        let (out, _, closing) = answer(b"GET / HTTP/1.0\r\n\r\n");
        assert!(out.contains("Connection: close") && closing);
    }

    #[test]
    fn lengths_that_disagree_or_are_not_digits_are_refused() {
        for head in [
            "Content-Length: 5\r\nContent-Length: 0",
            "Content-Length: 5, 0",
            "Content-Length: +5",
            "Content-Length: -0",
            "Content-Length: 5 5",
            "Content-Length: 0x5",
            "Content-Length: ",
            "Content-Length: 99999999999999999999999",
        ] {
            let request =
                format!("POST / HTTP/1.1\r\n{head}\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n");
            let (out, _, closing) = answer(request.as_bytes());
            assert!(out.starts_with("HTTP/1.1 400"), "{head:?}: {out}");
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{head:?}: {out}");
            assert!(closing, "{head:?}");
        }
        for head in [
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5, 5",
            "Content-Length:  5 ",
        ] {
            let request = format!("POST / HTTP/1.1\r\n{head}\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n");
            let (out, _, closing) = answer(request.as_bytes());
            assert_eq!(out.matches("200 OK").count(), 2, "{head:?}: {out}");
            assert!(!closing, "{head:?}");
        }
    }
}
