//! Requests that arrive in pieces: the servers answer them as if they had
//! come whole, and parse each piece once, so a request sent one byte at a
//! time costs work in proportion to its size, not to its square. The work
//! is counted, not timed: each protocol counts the bytes it parses over
//! (its `Progress` on one connection, the server's `Held` on all), and the
//! tests bound that count by a small multiple of the bytes sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ouro::{BackendKind, Ring};

use super::{http_server, resp_server, Server};

use http_server::stream_server as http;
use resp_server::stream_server as resp;

backend_tests![
    http_server_parses_a_head_sent_byte_by_byte_in_linear_work,
    resp_server_parses_a_command_sent_in_small_pieces_in_linear_work,
];

/// Bytes parsed over per byte of input, at most: each byte is searched
/// once, parsed once whole, and parsed as part of unfinished input at most
/// about twice more.
const WORK_PER_BYTE: u64 = 4;

/// A request head of about `size` bytes.
fn big_head(size: usize) -> Vec<u8> {
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Filler: ";
    let filler = "f".repeat(size - start.len() - 4);
    format!("{start}{filler}\r\n\r\n").into_bytes()
}

/// `EXISTS` with as many keys as a command may have, of 240 bytes each:
/// nearly 1 MiB.
fn big_exists() -> Vec<u8> {
    let keys = resp_server::MAX_ARGS - 1;
    let mut command = format!("*{}\r\n$6\r\nEXISTS\r\n", keys + 1).into_bytes();
    for key in 0..keys {
        command.extend_from_slice(format!("$240\r\n{key:0>240}\r\n").as_bytes());
    }
    command
}

/// What a server does with `whole` arriving in pieces of `piece` bytes:
/// `respond` is called on what is held after each arrival, as the server
/// does (the bytes it answered are dropped). Returns the answers.
fn in_pieces(
    whole: &[u8],
    piece: usize,
    mut respond: impl FnMut(&[u8], &mut Vec<u8>, &mut bool) -> usize,
) -> (Vec<u8>, bool) {
    let (mut input, mut output, mut closing) = (Vec::new(), Vec::new(), false);
    for chunk in whole.chunks(piece) {
        if closing {
            break;
        }
        input.extend_from_slice(chunk);
        let used = respond(&input, &mut output, &mut closing);
        input.drain(..used);
    }
    (output, closing)
}

/// `whole` through the HTTP protocol in pieces of `piece` bytes: the
/// answers, whether it closes, and the bytes parsed over.
fn http_in_pieces(whole: &[u8], piece: usize) -> (String, bool, u64) {
    let mut progress = http_server::Progress::default();
    let (output, closing) = in_pieces(whole, piece, |input, output, closing| {
        http_server::respond(input, &mut progress, output, usize::MAX, closing)
    });
    let output = String::from_utf8(output).unwrap();
    (output, closing, progress.examined())
}

/// `whole` through the RESP protocol in pieces of `piece` bytes: the
/// replies, whether it closes, and the bytes parsed over.
fn resp_in_pieces(whole: &[u8], piece: usize) -> (String, bool, u64) {
    let (mut data, mut progress) = (
        resp_server::Store::default(),
        resp_server::Progress::default(),
    );
    let (output, closing) = in_pieces(whole, piece, |input, output, closing| {
        resp_server::execute_all(&mut data, input, &mut progress, output, usize::MAX, closing)
    });
    let output = String::from_utf8(output).unwrap();
    (output, closing, progress.examined())
}

fn assert_linear(examined: u64, size: usize) {
    let bound = WORK_PER_BYTE * size as u64;
    assert!(
        examined <= bound,
        "{size} bytes cost parsing over {examined} bytes (bound {bound})"
    );
}

/// A 60 KiB request head, then a 60,000-byte body, growing one byte at a
/// time: each is answered once whole, and parsed over a few times its
/// size in all.
#[test]
fn http_request_growing_one_byte_at_a_time_costs_linear_work() {
    let head = big_head(60 * 1024);
    let (output, closing, examined) = http_in_pieces(&head, 1);
    assert_eq!(output.matches("HTTP/1.1 200 OK").count(), 1, "{output}");
    assert!(!closing);
    assert_linear(examined, head.len());

    let post = [
        b"POST / HTTP/1.1\r\nContent-Length: 60000\r\n\r\n".to_vec(),
        vec![b'b'; 60_000],
    ]
    .concat();
    let (output, closing, examined) = http_in_pieces(&post, 1);
    assert_eq!(output.matches("HTTP/1.1 200 OK").count(), 1, "{output}");
    assert!(!closing);
    assert_linear(examined, post.len());
}

/// A pipeline of requests (with bodies, empty lines before a request line,
/// bare line feeds, a request that asks to close and then garbage) gets
/// the same answers whatever pieces it arrives in.
#[test]
fn http_answers_do_not_depend_on_how_the_input_is_split() {
    let pipelines: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\nGET /b HTTP/1.1\nHost: b\n\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\r\n\r\n\rGET / HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n\x00garbage without an end",
    ];
    for pipeline in pipelines {
        let whole = http_in_pieces(pipeline, pipeline.len());
        assert!(whole.1, "{:?} does not close", whole.0);
        for piece in 1..=9 {
            let split = http_in_pieces(pipeline, piece);
            assert_eq!(
                (&split.0, split.1),
                (&whole.0, whole.1),
                "in pieces of {piece}"
            );
        }
    }
}

/// A command of 4,096 arguments (nearly 1 MiB) growing one byte at a time, and a
/// 64 KiB inline line: each is run once whole, and parsed over a few times
/// its size in all.
#[test]
fn resp_command_growing_one_byte_at_a_time_costs_linear_work() {
    let command = big_exists();
    let (output, closing, examined) = resp_in_pieces(&command, 1);
    assert_eq!(output, ":0\r\n");
    assert!(!closing);
    assert_linear(examined, command.len());

    let inline = [
        b"ECHO ".to_vec(),
        vec![b'e'; 64 * 1024 - 7],
        b"\r\n".to_vec(),
    ]
    .concat();
    let (output, closing, examined) = resp_in_pieces(&inline, 1);
    assert!(output.starts_with("$65529\r\neee"), "{output:.20}");
    assert!(!closing);
    assert_linear(examined, inline.len());
}

/// Reads exactly `expected.len()` bytes and compares.
fn expect_reply(stream: &mut TcpStream, expected: &[u8]) {
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply).expect("the server answers");
    assert!(
        reply == expected,
        "got {:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// Sends `request` in writes of `piece` bytes, each its own segment where
/// the stack allows (loopback may still join some).
fn send_in_pieces(stream: &mut TcpStream, request: &[u8], piece: usize) {
    stream.set_nodelay(true).unwrap();
    for chunk in request.chunks(piece) {
        stream.write_all(chunk).unwrap();
    }
}

/// A 60 KiB request head written one byte at a time is answered, and the
/// server parses over a few times its size in all, however many pieces it
/// arrived in.
fn http_server_parses_a_head_sent_byte_by_byte_in_linear_work(kind: BackendKind) {
    let held = Arc::new(http::Held::default());
    let limits = http::Limits {
        held: Some(held.clone()),
        ..http::Limits::default()
    };
    let ring = Ring::builder().backend(kind);
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 16).unwrap();
    let server = Server::start_with(listener, move |l| http_server::serve_with(l, ring, limits));
    let mut stream = server.connect();
    let head = big_head(60 * 1024);
    send_in_pieces(&mut stream, &head, 1);
    let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!";
    expect_reply(&mut stream, answer);
    // Its answer comes from a later completion than the one that answered
    // the head, so the count of that one has been published.
    let small = b"GET / HTTP/1.1\r\n\r\n";
    stream.write_all(small).unwrap();
    expect_reply(&mut stream, answer);
    let examined = held.examined.load(Ordering::Relaxed);
    assert_linear(examined, head.len() + small.len());
    server.assert_alive();
}

/// Pipelined commands written one byte at a time are run, and a command of
/// 4,096 arguments (nearly 1 MiB) written 64 bytes at a time too; the
/// server parses over a few times their size in all, however many pieces
/// they arrived in.
fn resp_server_parses_a_command_sent_in_small_pieces_in_linear_work(kind: BackendKind) {
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let ring = Ring::builder().backend(kind);
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 16).unwrap();
    let server = Server::start_with(listener, move |l| resp_server::serve_with(l, ring, limits));
    let mut stream = server.connect();
    let pipeline =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\nGET k\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    send_in_pieces(&mut stream, pipeline, 1);
    expect_reply(&mut stream, b"+OK\r\n$5\r\nvalue\r\n$5\r\nvalue\r\n");
    let command = big_exists();
    send_in_pieces(&mut stream, &command, 64);
    expect_reply(&mut stream, b":0\r\n");
    // As above: a later completion publishes the count.
    stream.write_all(b"PING\r\n").unwrap();
    expect_reply(&mut stream, b"+PONG\r\n");
    let examined = held.examined.load(Ordering::Relaxed);
    assert_linear(examined, pipeline.len() + command.len() + 6);
    server.assert_alive();
}
