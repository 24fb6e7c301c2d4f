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
//! Per connection: receive (appending to what is not parsed yet), answer
//! every complete request in one send, then receive again. A request body
//! announced by `Content-Length` is read and ignored; chunked bodies are
//! answered with `501` and the connection closed.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use ouro::{Completion, Ctx, Outcome, Ring, RunMode};
use slab::Slab;

ouro::messages! {
    enum Msg { Accepted, Received, Sent }
}

const BODY: &[u8] = b"Hello, world!";
/// Largest request head (and buffered pipeline) accepted.
const MAX_INPUT: usize = 64 * 1024;
const READ_SIZE: usize = 4096;

struct Conn {
    fd: OwnedFd,
    /// Bytes received and not yet parsed (owned here between receives).
    input: Vec<u8>,
    /// Responses not yet sent (owned here between sends).
    output: Vec<u8>,
    /// Close once `output` is sent.
    closing: bool,
}

struct Server {
    listener: OwnedFd,
    conns: Slab<Conn>,
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
                    Ok((fd, _)) => self.open(ring, fd),
                    // Out of fds or similar: keep serving the others.
                    Err(e) => eprintln!("http_server: accept failed: {e}"),
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

    fn open(&mut self, ring: &mut Ring<Server>, fd: OwnedFd) {
        let key = self.conns.insert(Conn {
            fd,
            input: Vec::with_capacity(READ_SIZE),
            output: Vec::with_capacity(READ_SIZE),
            closing: false,
        });
        self.receive(ring, key);
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
        let consumed = respond(&conn.input, &mut conn.output, &mut conn.closing);
        conn.input.drain(..consumed);
        if conn.input.len() > MAX_INPUT && !conn.closing {
            status(&mut conn.output, 431, "Request Header Fields Too Large");
            conn.closing = true;
        }
        if conn.output.is_empty() {
            // Only part of a request so far: receive the rest.
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

/// Answers every complete request at the start of `input` into `output`;
/// returns how many bytes they took. Sets `closing` when the connection
/// must close after the answers (client asked, or the request was bad).
fn respond(input: &[u8], output: &mut Vec<u8>, closing: &mut bool) -> usize {
    let mut consumed = 0;
    while !*closing && consumed < input.len() {
        match parse(&input[consumed..]) {
            Parsed::Request { len, keep_alive } => {
                consumed += len;
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

enum Parsed {
    Request { len: usize, keep_alive: bool },
    Partial,
    Bad(u16, &'static str),
}

fn parse(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(input) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Bad(431, "Request Header Fields Too Large")
        }
        Err(_) => return Parsed::Bad(400, "Bad Request"),
    };
    let mut keep_alive = request.version == Some(1);
    let mut body = 0usize;
    for header in request.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = if value.eq_ignore_ascii_case(b"close") {
                false
            } else {
                keep_alive || value.eq_ignore_ascii_case(b"keep-alive")
            };
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let Some(len) = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            else {
                return Parsed::Bad(400, "Bad Request");
            };
            body = len;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad(501, "Not Implemented");
        }
    }
    match head.checked_add(body) {
        Some(len) if len <= input.len() => Parsed::Request { len, keep_alive },
        Some(len) if len <= MAX_INPUT => Parsed::Partial,
        _ => Parsed::Bad(413, "Content Too Large"),
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

/// Serves on `listener` until the process ends.
pub fn serve(listener: OwnedFd) -> io::Result<()> {
    let mut ring = Ring::new(256)?;
    let mut server = Server {
        listener,
        conns: Slab::new(),
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
                format!("{arg}: {e} (usage: http_server ADDR)"),
            )
        })?,
        None => ([127, 0, 0, 1], 8080).into(),
    };
    let listener = ouro::net::tcp_listener(addr, 1024)?;
    println!("listening on {}", ouro::net::local_addr(&listener)?);
    io::stdout().flush()?;
    serve(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(input: &[u8]) -> (String, usize, bool) {
        let (mut out, mut closing) = (Vec::new(), false);
        let used = respond(input, &mut out, &mut closing);
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
}
