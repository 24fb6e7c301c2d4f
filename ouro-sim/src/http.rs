//! The http scenario: the `http_server` example's own server
//! (`ouro/examples/http_server.rs`, with `support/stream_server.rs`:
//! multishot accept, multishot receive into a buffer group) on a simulated
//! ring, and clients that send rounds of pipelined requests (GET, POST
//! with a body, some asking to close, some HTTP/1.0, some garbage) cut
//! into pieces, and check the status line, headers and body of every
//! answer, byte for byte, and that the server closes when it must.

use std::io;

use ouro::sim::World;

use crate::stream::{self, Round};
use crate::Load;

// The resp scenario includes the same support files (`stream_server.rs`
// and what it includes), as each example must to build on its own.
#[allow(dead_code, clippy::duplicate_mod)] // the scenario uses the server, not `main`
#[path = "../../ouro/examples/http_server.rs"]
mod http_server;

const BODY: &str = "Hello, world!";

/// Runs the http scenario in `world` (see [`stream::run`]).
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_with(world, load, script)
}

/// The http scenario with the clients' rounds written by `script` (the
/// scenario's own is [`script`]).
pub fn run_with(world: &World, load: Load, script: stream::Script) -> io::Result<()> {
    stream::run(world, load, "http", 8080, http_server::start, script)
}

/// The answer to a request the server accepts.
fn ok(answer: &mut Vec<u8>, keep_alive: bool) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    answer.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: {connection}\r\n\r\n{BODY}",
            BODY.len()
        )
        .as_bytes(),
    );
}

/// A round: one to six requests; the last may ask to close, be HTTP/1.0
/// (which closes too) or be garbage (answered 400, then closed).
pub fn script(world: &World, client: u64, round: &mut Round) {
    let requests = 1 + world.random() % 6;
    for i in 0..requests {
        let last = i + 1 == requests;
        let pick = world.random();
        let ending = if last { pick % 8 } else { 8 };
        if ending == 0 {
            round.may_end_after = Some(round.answer.len());
            round.request.extend_from_slice(b"\x00\x01garbage\r\n\r\n");
            round.answer.extend_from_slice(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            round.closes = true;
            continue;
        }
        let version = if ending == 1 { "1.0" } else { "1.1" };
        let close = ending == 2;
        let post = pick >> 8 & 1 == 1;
        let body_len = if post {
            (pick >> 16) as usize % 6000
        } else {
            0
        };
        let pad = (pick >> 32) as usize % 300;
        let mut head = format!(
            "{} /c{client}/{} HTTP/{version}\r\nHost: sim\r\nX-Pad: {}\r\n",
            if post { "POST" } else { "GET" },
            pick % 1000,
            "p".repeat(pad)
        );
        if post {
            head.push_str(&format!("Content-Length: {body_len}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        round.request.extend_from_slice(head.as_bytes());
        body(&mut round.request, body_len, world.random());
        let keep_alive = !close && version == "1.1";
        ok(&mut round.answer, keep_alive);
        round.closes = !keep_alive;
    }
}

/// Appends `len` bytes of letters, in runs of the alphabet whose starts
/// `seed` picks: different bodies for different seeds, made by copying
/// (a byte at a time took half of the scenario's time).
fn body(request: &mut Vec<u8>, len: usize, mut seed: u64) {
    const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz";
    request.reserve(len);
    let mut left = len;
    while left > 0 {
        let start = (seed % 26) as usize;
        seed = seed.rotate_right(5);
        let run = left.min(26);
        request.extend_from_slice(&LETTERS[start..start + run]);
        left -= run;
    }
}
