//! What the stream servers (`http_server`, `resp_server`) hold under
//! greedy clients, with small `Limits` so that a test reaches them: the
//! servers publish what they count (the sums they enforce the limits on)
//! through `Held`, and the tests assert on it and on what the clients get.
//! Each example has its own copy of `stream_server` and so of those types.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use ouro::{BackendKind, Ring, RingBuilder};

use super::{http_server, read_to_close, resp_server, Server};

use http_server::stream_server as http;
use resp_server::stream_server as resp;

backend_tests![
    resp_server_answers_amplifying_requests_within_its_budget,
    http_server_answers_every_pipelined_request_once_within_a_small_budget,
    resp_server_closes_the_connection_holding_the_most_input,
    http_server_closes_the_connection_holding_the_most_input,
    resp_server_bounds_the_answers_held_for_many_non_readers,
    resp_server_cuts_the_stalest_non_readers_past_twice_its_output_limit,
    resp_server_closes_a_connection_that_leaves_its_answers_unread,
    http_server_keeps_few_spare_bytes_after_a_burst,
    resp_server_closes_a_request_that_does_not_arrive_in_time,
    http_server_closes_a_request_that_does_not_arrive_in_time,
];

/// Socket buffers of the server's connections and of the clients: small,
/// so that a peer that does not read soon leaves its answers to the server.
const SOCKET_BUFFER: usize = 8 * 1024;

/// What a server published in its `Held`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    input: usize,
    output: usize,
    spares: usize,
    most_input: usize,
    most_output: usize,
    most_unsent: usize,
}

/// Reads either example's `Held` (the same fields in two types).
macro_rules! counts {
    ($held:expr) => {{
        let held = &$held;
        Counts {
            input: held.input.load(Ordering::Relaxed),
            output: held.output.load(Ordering::Relaxed),
            spares: held.spares.load(Ordering::Relaxed),
            most_input: held.most_input.load(Ordering::Relaxed),
            most_output: held.most_output.load(Ordering::Relaxed),
            most_unsent: held.most_unsent.load(Ordering::Relaxed),
        }
    }};
}

/// Starts `serve` (a `serve_with` and its limits) on `kind`, its
/// connections' socket buffers small.
fn start<F>(kind: BackendKind, serve: F) -> Server
where
    F: FnOnce(OwnedFd, RingBuilder) -> std::io::Result<()> + Send + 'static,
{
    let listener = ouro::net::tcp_listener(([127, 0, 0, 1], 0).into(), 1024).unwrap();
    let socket = socket2::SockRef::from(&listener);
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    let ring = Ring::builder().backend(kind);
    Server::start_with(listener, move |listener| serve(listener, ring))
}

/// A client with small socket buffers (set before connecting, so the
/// window follows them).
fn connect_small(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    socket.connect(&addr.into()).expect("connect to the server");
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// What the peer sent until it closed: a reset after its last bytes counts
/// as a close (a server closing with requests unread resets).
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server does not close ({e}); it sent {reply:?}"),
    }
    reply
}

/// Waits (bounded) until `done` holds of what the server holds.
fn wait_for(counts: impl Fn() -> Counts, what: &str, done: impl Fn(Counts) -> bool) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counts();
        if done(now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the server never {what}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `pattern` over and over (a write cut short goes on where it
/// stopped, so the peer gets whole repetitions) until the peer stops taking
/// it (five would-block waits in a row) or 64 MiB have gone; returns the
/// bytes sent and whether the peer stopped. Leaves `stream` blocking.
fn flood(stream: &TcpStream, pattern: &[u8]) -> (usize, bool) {
    stream.set_nonblocking(true).unwrap();
    let (mut sent, mut stalls) = (0usize, 0);
    while stalls < 5 && sent < 64 << 20 {
        match (&*stream).write(&pattern[sent % pattern.len()..]) {
            Ok(n) => {
                sent += n;
                stalls = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("flooding: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    (sent, stalls == 5)
}

/// A RESP command of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The RESP answer to a GET of `value`.
fn bulk(value: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", value.len()).as_bytes(), value, b"\r\n"].concat()
}

fn set(stream: &mut TcpStream, key: &[u8], value: &[u8]) {
    stream.write_all(&command(&[b"SET", key, value])).unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

/// The RESP server with `limits`, holding a value of `len` bytes under
/// key `v`.
fn resp_holding_a_value(kind: BackendKind, limits: resp::Limits, len: usize) -> (Server, Vec<u8>) {
    let server = start(kind, |l, r| resp_server::serve_with(l, r, limits));
    let value = vec![b'v'; len];
    set(&mut connect_small(server.addr), b"v", &value);
    (server, value)
}

/// A new client that reads gets the value at `v`, whole.
fn assert_a_reader_gets(addr: SocketAddr, value: &[u8]) {
    let mut good = connect_small(addr);
    good.write_all(&command(&[b"GET", b"v"])).unwrap();
    let mut answer = vec![0; bulk(value).len()];
    good.read_exact(&mut answer).unwrap();
    assert!(
        answer == bulk(value),
        "the reading client got another answer"
    );
}

/// Small requests with large answers, pipelined without reading: the
/// server answers them one at a time while less than its budget is unsent
/// (so it holds at most the budget and one answer), then stops reading; once
/// the client reads, every answer arrives, whole, once and in order.
fn resp_server_answers_amplifying_requests_within_its_budget(kind: BackendKind) {
    const BUDGET: usize = 8 * 1024;
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        output_per_conn: BUDGET,
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let server = start(kind, |l, r| resp_server::serve_with(l, r, limits));
    let mut client = connect_small(server.addr);
    let (a, b) = (vec![b'a'; 1024], vec![b'b'; 1024]);
    set(&mut client, b"a", &a);
    set(&mut client, b"b", &b);

    // Two GETs of the same length, so the bytes sent say which came last.
    let pair = [command(&[b"GET", b"a"]), command(&[b"GET", b"b"])].concat();
    let (sent, stopped) = flood(&client, &pair.repeat(100));
    assert!(
        stopped,
        "the server took {sent} bytes of requests without pause"
    );
    let most = counts!(held).most_unsent;
    let answer = bulk(&a).len();
    assert!(
        most <= BUDGET + answer,
        "one connection had {most} bytes of answers unsent (budget {BUDGET}, answers {answer})"
    );

    // Finish the last pair, then a PING: its answer comes last.
    let pairs = sent.div_ceil(pair.len());
    let expected = [bulk(&a), bulk(&b)].concat().repeat(pairs);
    let expected = [expected, b"+PONG\r\n".to_vec()].concat();
    let mut reader = client.try_clone().unwrap();
    let len = expected.len();
    let reading = std::thread::spawn(move || {
        let mut got = vec![0; len];
        reader.read_exact(&mut got).map(|()| got)
    });
    let rest = &pair[sent % pair.len()..];
    if rest.len() < pair.len() {
        client.write_all(rest).unwrap();
    }
    client.write_all(b"PING\r\n").unwrap();
    let got = reading.join().unwrap().expect("every answer arrives");
    let same = got
        .iter()
        .zip(&expected)
        .take_while(|(g, e)| g == e)
        .count();
    assert!(same == len, "the answers differ from byte {same} of {len}");
    server.assert_alive();
}

/// A pipeline answered through a tiny budget (so through held requests,
/// paused and resumed many times) gets each answer once, in order, also
/// when the client has shut its side down before the server has read it
/// all: the held requests are answered, then the server closes.
fn http_server_answers_every_pipelined_request_once_within_a_small_budget(kind: BackendKind) {
    let limits = http::Limits {
        output_per_conn: 512,
        ..http::Limits::default()
    };
    let server = start(kind, |l, r| http_server::serve_with(l, r, limits));
    let mut client = connect_small(server.addr);
    let mut reader = client.try_clone().unwrap();
    let reading = std::thread::spawn(move || read_until_closed(&mut reader));
    let request = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    client.write_all(request.repeat(2000).as_bytes()).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = String::from_utf8(reading.join().unwrap()).unwrap();
    let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!";
    assert!(
        reply == answer.repeat(2000),
        "{} bytes, {} answers",
        reply.len(),
        reply.matches(answer).count()
    );
    server.assert_alive();
}

/// Connections holding unfinished requests: once the input held across
/// them passes the server's limit, the one holding the most gets
/// `too_large` and is closed; the others finish their requests and are
/// answered, and so is a new client.
///
/// `big` is under the protocol's own limit per connection; its unfinished
/// request holds over four times what each small one does (vectors grow to
/// at most twice their content), so whenever the sum passes `limit`, it is
/// the largest. The server keeps no spare vectors: one kept from `big` and
/// taken for a small request would count at its capacity.
fn closes_the_connection_holding_the_most_input(
    (server, counts): (Server, impl Fn() -> Counts),
    limit: usize,
    big: &[u8],
    small: (&[u8], &[u8]),
    check: fn(evicted: &[u8], finished: &[u8]),
) {
    let mut greedy = server.connect();
    // The server may close it before it has sent everything.
    let _ = greedy.write_all(big);
    let mut others: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    for other in &mut others {
        other.write_all(small.0).unwrap();
    }
    let evicted = read_until_closed(&mut greedy);
    for mut other in others {
        other.write_all(small.1).unwrap();
        check(&evicted, &read_until_closed(&mut other));
    }
    let mut good = server.connect();
    good.write_all(&[small.0, small.1].concat()).unwrap();
    check(&evicted, &read_until_closed(&mut good));
    let most = wait_for(counts, "let go of the input", |c| c.input == 0).most_input;
    assert!(most <= limit, "the server held {most} bytes of input");
    server.assert_alive();
}

fn resp_server_closes_the_connection_holding_the_most_input(kind: BackendKind) {
    fn unfinished_set(declared: usize, sent: usize) -> Vec<u8> {
        let head = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${declared}\r\n");
        [head.into_bytes(), vec![b'v'; sent]].concat()
    }
    fn check(evicted: &[u8], finished: &[u8]) {
        let evicted = String::from_utf8_lossy(evicted);
        assert!(evicted.starts_with("-ERR Protocol error"), "{evicted:?}");
        let finished = String::from_utf8_lossy(finished);
        assert!(
            finished.starts_with("+OK\r\n-ERR Protocol error"),
            "{finished:?}"
        );
    }
    let big = unfinished_set(500_000, 200 * 1024);
    let small = unfinished_set(30_000, 20 * 1024);
    // The rest of the value, then garbage, which closes the connection.
    let end = [vec![b'v'; 30_000 - 20 * 1024], b"\r\n*x\r\n".to_vec()].concat();
    const LIMIT: usize = 256 * 1024;
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        input_total: LIMIT,
        spares: 0,
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let server = start(kind, |l, r| resp_server::serve_with(l, r, limits));
    closes_the_connection_holding_the_most_input(
        (server, move || counts!(held)),
        LIMIT,
        &big,
        (&small, &end),
        check,
    );
}

fn http_server_closes_the_connection_holding_the_most_input(kind: BackendKind) {
    fn unfinished_head(filler: usize) -> Vec<u8> {
        let filler = format!("X-Filler: {}\r\n", "f".repeat(filler));
        format!("GET / HTTP/1.1\r\nHost: a\r\n{filler}").into_bytes()
    }
    fn check(evicted: &[u8], finished: &[u8]) {
        let evicted = String::from_utf8_lossy(evicted);
        assert!(evicted.starts_with("HTTP/1.1 431"), "{evicted:?}");
        let finished = String::from_utf8_lossy(finished);
        assert!(finished.starts_with("HTTP/1.1 200 OK"), "{finished:?}");
    }
    // Under the protocol's own 64 KiB per connection.
    let big = unfinished_head(60 * 1024);
    let small = unfinished_head(10 * 1024);
    const LIMIT: usize = 64 * 1024;
    let held = Arc::new(http::Held::default());
    let limits = http::Limits {
        input_total: LIMIT,
        spares: 0,
        held: Some(held.clone()),
        ..http::Limits::default()
    };
    let server = start(kind, |l, r| http_server::serve_with(l, r, limits));
    closes_the_connection_holding_the_most_input(
        (server, move || counts!(held)),
        LIMIT,
        &big,
        (&small, b"Connection: close\r\n\r\n"),
        check,
    );
}

/// Many connections that send requests with large answers and never read:
/// past the limit on answers held across connections, each connection's
/// budget shrinks to the floor, so the server holds about that limit, not
/// the sum of the connections' budgets; a client that reads is still
/// answered.
fn resp_server_bounds_the_answers_held_for_many_non_readers(kind: BackendKind) {
    const CONNS: usize = 16;
    const PER_CONN: usize = 256 * 1024;
    const TOTAL: usize = 128 * 1024;
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        output_per_conn: PER_CONN,
        output_total: TOTAL,
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let (server, value) = resp_holding_a_value(kind, limits, 16 * 1024);
    let get = command(&[b"GET", b"v"]).repeat(100);
    let greedy: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let stream = connect_small(server.addr);
            let (sent, stopped) = flood(&stream, &get);
            assert!(
                stopped,
                "the server took {sent} bytes of requests without pause"
            );
            stream
        })
        .collect();
    assert_a_reader_gets(server.addr, &value);
    let answer = bulk(&value);

    // The limit, the connection that crossed it (its budget and one
    // answer), and for each connection the floor and one answer; twice
    // that, as vectors grow to twice their content.
    let floor = resp::OUTPUT_FLOOR;
    let bound = 2 * (TOTAL + PER_CONN + (CONNS + 1) * (floor + answer.len()));
    let most = counts!(held).most_output;
    assert!(
        most <= bound,
        "{CONNS} connections that do not read made the server hold {most} bytes of answers (bound {bound})"
    );
    drop(greedy);
    server.assert_alive();
}

/// Sends `pattern` over and over until the peer stops taking it or closes
/// the connection; whether it closed it.
fn flood_until_cut(stream: &TcpStream, pattern: &[u8]) -> bool {
    stream.set_nonblocking(true).unwrap();
    let (mut sent, mut stalls) = (0usize, 0);
    let cut = loop {
        match (&*stream).write(&pattern[sent % pattern.len()..]) {
            Ok(n) => (sent, stalls) = (sent + n, 0),
            Err(e) if e.kind() == ErrorKind::WouldBlock && stalls < 5 => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    cut
}

/// Each connection that does not read holds up to one answer past the
/// shrunken budget, so answers of 64 KiB from 48 such connections add up
/// to 3 MiB (and 1 MiB answers to a GiB from a thousand). Past twice the
/// limit, the server cuts connections whose answers have gone unread for
/// a while, stalest first, until it holds less; a client that reads is
/// still answered.
fn resp_server_cuts_the_stalest_non_readers_past_twice_its_output_limit(kind: BackendKind) {
    const CONNS: usize = 48;
    const TOTAL: usize = 64 * 1024;
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        output_total: TOTAL,
        // Longer than the test: only the output limit cuts.
        send_timeout: Duration::from_secs(3600),
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let (server, value) = resp_holding_a_value(kind, limits, 64 * 1024);
    let get = command(&[b"GET", b"v"]).repeat(100);
    let greedy: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let stream = connect_small(server.addr);
            flood_until_cut(&stream, &get);
            stream
        })
        .collect();
    // Twice the limit, and one answer (its vector up to twice its size).
    let bound = 2 * TOTAL + 2 * bulk(&value).len();
    let now = wait_for(
        || counts!(held),
        "cut stalled connections",
        |c| c.output <= bound,
    );
    assert!(
        now.most_output > bound,
        "the test never went past the limit: {now:?}"
    );
    assert_a_reader_gets(server.addr, &value);
    drop(greedy);
    server.assert_alive();
}

/// A peer that sends requests and never reads their answers is closed
/// once `send_timeout` passes with no byte of them taken, and what the
/// server held for it is dropped.
fn resp_server_closes_a_connection_that_leaves_its_answers_unread(kind: BackendKind) {
    let held = Arc::new(resp::Held::default());
    let limits = resp::Limits {
        send_timeout: Duration::from_millis(300),
        held: Some(held.clone()),
        ..resp::Limits::default()
    };
    let (server, _) = resp_holding_a_value(kind, limits, 64 * 1024);
    let mut greedy = connect_small(server.addr);
    flood_until_cut(&greedy, &command(&[b"GET", b"v"]).repeat(100));
    assert!(counts!(held).output > 0, "the server holds answers for it");
    wait_for(
        || counts!(held),
        "dropped the unread answers",
        |c| c.output == 0,
    );
    // What the socket buffers held, then the end.
    let received = read_until_closed(&mut greedy);
    assert!(
        received.len() < 4 << 20,
        "{} bytes after the cut",
        received.len()
    );
    server.assert_alive();
}

/// After a burst of connections holding large unfinished requests, the
/// server keeps at most its limit of spare vectors, and no input.
fn http_server_keeps_few_spare_bytes_after_a_burst(kind: BackendKind) {
    const SPARES: usize = 256 * 1024;
    let held = Arc::new(http::Held::default());
    let limits = http::Limits {
        spares: SPARES,
        held: Some(held.clone()),
        ..http::Limits::default()
    };
    let server = start(kind, |l, r| http_server::serve_with(l, r, limits));
    let counts = || counts!(held);
    let filler = format!("X-Filler: {}\r\n", "f".repeat(40 * 1024));
    let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{filler}");
    let mut burst: Vec<TcpStream> = (0..64).map(|_| server.connect()).collect();
    for stream in &mut burst {
        stream.write_all(head.as_bytes()).unwrap();
    }
    wait_for(counts, "held the burst", |c| c.input >= 64 * head.len());
    for mut stream in burst {
        stream.write_all(b"Connection: close\r\n\r\n").unwrap();
        let reply = read_to_close(stream);
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply:?}");
    }
    let after = wait_for(counts, "let go of the input and output", |c| {
        c.input == 0 && c.output == 0
    });
    let spares = after.spares;
    assert!(
        spares <= SPARES,
        "the server kept {spares} bytes of spare vectors"
    );
    server.assert_alive();
}

/// A connection whose request has begun but not arrived whole within
/// `request_timeout` is closed (slowloris; a peer gone mid-request); one
/// that finishes its request in time, and an idle one, are served on.
fn closes_a_late_request(server: &Server, half: &[u8], whole: &[u8], answer: &str) {
    let mut idle = server.connect();
    let mut late = server.connect();
    late.write_all(half).unwrap();
    // Within the client's 10 s read timeout, or this fails.
    let unanswered = read_until_closed(&mut late);
    assert!(unanswered.is_empty(), "{unanswered:?}");
    let mut prompt = server.connect();
    prompt.write_all(half).unwrap();
    prompt.write_all(&whole[half.len()..]).unwrap();
    let mut reply = vec![0; answer.len()];
    prompt.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), answer);
    idle.write_all(whole).unwrap();
    idle.read_exact(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), answer);
    server.assert_alive();
}

fn resp_server_closes_a_request_that_does_not_arrive_in_time(kind: BackendKind) {
    let limits = resp::Limits {
        request_timeout: Duration::from_millis(300),
        ..resp::Limits::default()
    };
    let server = start(kind, |l, r| resp_server::serve_with(l, r, limits));
    let whole = command(&[b"PING"]);
    closes_a_late_request(&server, &whole[..5], &whole, "+PONG\r\n");
}

fn http_server_closes_a_request_that_does_not_arrive_in_time(kind: BackendKind) {
    let limits = http::Limits {
        request_timeout: Duration::from_millis(300),
        ..http::Limits::default()
    };
    let server = start(kind, |l, r| http_server::serve_with(l, r, limits));
    let whole = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    closes_a_late_request(&server, &whole[..10], whole, "HTTP/1.1 200 OK");
}
