//! The resp scenario: the `resp_server` example's own server
//! (`ouro/examples/resp_server.rs`, with `support/stream_server.rs`) on a
//! simulated ring, and clients that send rounds of pipelined commands
//! (SET, GET, DEL, EXISTS, ECHO, PING, inline PING, unknown commands and
//! wrong argument counts) cut into pieces, and check every reply byte for
//! byte against a model of the client's own key. Values are binary, CRLF
//! included.

use std::io;

use ouro::sim::World;

use crate::stream::{self, Round};
use crate::Load;

// The http scenario includes the same support files (`stream_server.rs`
// and what it includes), as each example must to build on its own.
#[allow(dead_code, clippy::duplicate_mod)] // the scenario uses the server, not `main`
#[path = "../../ouro/examples/resp_server.rs"]
mod resp_server;

/// Runs the resp scenario in `world` (see [`stream::run`]).
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_with(world, load, script)
}

/// The resp scenario with the clients' rounds written by `script` (the
/// scenario's own is [`script`]).
pub fn run_with(world: &World, load: Load, script: stream::Script) -> io::Result<()> {
    stream::run(world, load, "resp", 6379, resp_server::start, script)
}

fn command(request: &mut Vec<u8>, args: &[&[u8]]) {
    request.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
}

fn bulk(answer: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            answer.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
            answer.extend_from_slice(value);
            answer.extend_from_slice(b"\r\n");
        }
        None => answer.extend_from_slice(b"$-1\r\n"),
    }
}

/// Bytes of any value, CRLF and `$` and `*` among them.
fn value(world: &World, most: u64) -> Vec<u8> {
    let len = world.random() % most;
    let seed = world.random();
    const ALPHABET: &[u8] = b"ab\r\n$*:+-0123456789";
    (0..len)
        .map(|i| ALPHABET[((seed >> (i % 56)) ^ i) as usize % ALPHABET.len()])
        .collect()
}

/// A round: SET the client's key (what an earlier, broken round left
/// there is unknown), then up to twelve commands checked against the
/// model of the key.
pub fn script(world: &World, client: u64, round: &mut Round) {
    let key = format!("client:{client}").into_bytes();
    let mut model = value(world, 3000);
    let mut stored = Some(model.clone());
    command(&mut round.request, &[b"SET", &key, &model]);
    round.answer.extend_from_slice(b"+OK\r\n");
    for _ in 0..world.random() % 13 {
        let (req, ans) = (&mut round.request, &mut round.answer);
        match world.random() % 9 {
            0 => {
                model = value(world, 3000);
                command(req, &[b"SET", &key, &model]);
                ans.extend_from_slice(b"+OK\r\n");
                stored = Some(model.clone());
            }
            1 => {
                command(req, &[b"GET", &key]);
                bulk(ans, stored.as_deref());
            }
            2 => {
                command(req, &[b"DEL", &key, b"nobody's key"]);
                let n = u8::from(stored.take().is_some());
                ans.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            3 => {
                command(req, &[b"EXISTS", &key, &key]);
                let n = 2 * u8::from(stored.is_some());
                ans.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            4 => {
                let message = value(world, 500);
                command(req, &[b"ECHO", &message]);
                bulk(ans, Some(&message));
            }
            5 => {
                command(req, &[b"ping"]);
                ans.extend_from_slice(b"+PONG\r\n");
            }
            6 => {
                req.extend_from_slice(b"PING\r\n");
                ans.extend_from_slice(b"+PONG\r\n");
            }
            7 => {
                command(req, &[b"FLY", b"me"]);
                ans.extend_from_slice(b"-ERR unknown command 'FLY'\r\n");
            }
            _ => {
                command(req, &[b"GET"]);
                ans.extend_from_slice(b"-ERR wrong number of arguments for 'get' command\r\n");
            }
        }
    }
}
