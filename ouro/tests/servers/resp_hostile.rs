//! Hostile input to the RESP server: whatever a client sends, it gets
//! `-ERR Protocol error` and a close (never a crash, never an allocation
//! of a size it declared), and the other clients go on being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ouro::{BackendKind, Ring};

use crate::resp_server::{parse_command, Progress, ProtocolError, MAX_ARGS, MAX_BULK, MAX_INLINE};
use crate::{resp_server, Server};

backend_tests![
    resp_server_survives_an_array_nested_40000_deep,
    resp_server_rejects_hostile_frames_and_keeps_serving,
];

/// Sends `request` (the server may close before taking all of it), then
/// reads until the server closes; a reset counts as a close, as the server
/// may close with part of the request unread.
fn send_and_read_to_close(server: &Server, request: &[u8]) -> String {
    let mut stream = server.connect();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            // A signal handled by this process (its servers install
            // handlers; children of other tests exit) can interrupt the
            // read: read again, as `read_to_end` does.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "the server did not close ({e}); it sent {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// A client whose requests are answered before, between and after the
/// hostile ones.
struct GoodClient(TcpStream);

impl GoodClient {
    fn new(server: &Server) -> GoodClient {
        let mut good = GoodClient(server.connect());
        good.round_trip(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nok\r\n", b"+OK\r\n");
        good
    }

    fn round_trip(&mut self, request: &[u8], expected: &[u8]) {
        self.0.write_all(request).unwrap();
        let mut reply = vec![0u8; expected.len()];
        self.0
            .read_exact(&mut reply)
            .expect("the good client's reply");
        assert_eq!(reply, expected);
    }

    fn assert_served(&mut self) {
        self.round_trip(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$2\r\nok\r\n");
    }
}

fn assert_protocol_error(request: &[u8], reply: &str) {
    let shown = String::from_utf8_lossy(&request[..request.len().min(60)]);
    assert!(
        reply.starts_with("-ERR Protocol error"),
        "{shown:?}... got {reply:?}"
    );
    assert_eq!(
        reply.matches("\r\n").count(),
        1,
        "{shown:?}... got {reply:?}"
    );
}

/// `*1\r\n` 40,000 times (160 KB): an array in an array in an array...
/// A command is a flat array of bulk strings, so the first nested array is
/// an error, found without descending into it.
fn resp_server_survives_an_array_nested_40000_deep(kind: BackendKind) {
    let server = Server::start_on(resp_server::serve, Ring::builder().backend(kind));
    let mut good = GoodClient::new(&server);
    let nested = b"*1\r\n".repeat(40_000);
    assert_protocol_error(&nested, &send_and_read_to_close(&server, &nested));
    good.assert_served();
    server.assert_alive();
}

/// Declared lengths huge, negative, overflowing or not canonical numbers;
/// elements that are not bulk strings; bulk strings without their CRLF;
/// inline lines past 64 KiB. Each gets an error and a close at once
/// (none waits for the megabytes it declares), and the good client is
/// served throughout.
fn resp_server_rejects_hostile_frames_and_keeps_serving(kind: BackendKind) {
    let server = Server::start_on(resp_server::serve, Ring::builder().backend(kind));
    let mut good = GoodClient::new(&server);
    let digits = "9".repeat(100);
    let mut hostile: Vec<Vec<u8>> = [
        "*2147483647\r\n",
        "*4294967296\r\n",
        "*9223372036854775808\r\n",
        "*99999999999999999999999999\r\n",
        "*-2\r\n",
        "*-2147483648\r\n",
        "*-0\r\n",
        "*01\r\n",
        "*+1\r\n",
        "* 1\r\n",
        "*1 \r\n",
        "*1\n$1\r\na\r\n",
        "*\r\n",
        "*x\r\n",
        "*1\r\n$9999999999\r\n",
        "*1\r\n$2147483647\r\n",
        "*1\r\n$1048577\r\n",
        "*1\r\n$99999999999999999999999\r\n",
        "*1\r\n$-1\r\n",
        "*1\r\n$-2\r\n",
        "*1\r\n$-9223372036854775809\r\n",
        "*1\r\n$\r\n",
        "*1\r\n$3\r\nabcX\r\n",
        "*1\r\n$3\r\nabc\n\r\n",
        "*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n",
        "*1\r\n*-1\r\n",
        "*1\r\n:5\r\n",
        "*1\r\n+OK\r\n",
        "*1\r\n-ERR\r\n",
        "*2\r\n$3\r\nGET\r\n%1\r\n",
        // No line end yet, but no number this long is valid: no waiting.
        &format!("*{digits}"),
        &format!("*1\r\n${digits}"),
    ]
    .iter()
    .map(|frame| frame.as_bytes().to_vec())
    .collect();
    let mut long_line = vec![b'A'; 1 << 20];
    long_line.extend_from_slice(b"\r\n");
    hostile.push(long_line);
    hostile.push(vec![b'A'; 1 << 20]);
    for request in &hostile {
        assert_protocol_error(request, &send_and_read_to_close(&server, request));
        good.assert_served();
    }
    server.assert_alive();
}

/// The parser's refusals come at the first byte that decides them: no
/// recursion into nested arrays, no waiting for a length that could not
/// be held.
#[test]
fn resp_parser_refuses_nesting_and_huge_lengths_at_once() {
    let nested = b"*1\r\n".repeat(40_000);
    assert_eq!(
        parse_command(&nested),
        Err(ProtocolError::ExpectedBulk(b'*'))
    );
    let too_many = format!("*{}", MAX_ARGS + 1);
    assert_eq!(
        parse_command(too_many.as_bytes()),
        Err(ProtocolError::MultibulkLength)
    );
    let most = encode(&vec![b"k".to_vec(); MAX_ARGS]);
    assert_eq!(parse_command(&most).unwrap().unwrap().0.len(), MAX_ARGS);
    let too_long = format!("*1\r\n${}", MAX_BULK + 1);
    assert_eq!(
        parse_command(too_long.as_bytes()),
        Err(ProtocolError::BulkLength)
    );
    assert_eq!(
        parse_command(format!("*1\r\n${MAX_BULK}\r\n").as_bytes()),
        Ok(None)
    );
    for null in [&b"*-1\r\n"[..], b"*0\r\n"] {
        assert_eq!(parse_command(null), Ok(Some((vec![], null.len()))));
    }

    let mut line = vec![b'a'; MAX_INLINE];
    line.push(b'\n');
    assert_eq!(
        parse_command(&line),
        Ok(Some((vec![&line[..MAX_INLINE]], line.len())))
    );
    line.insert(0, b'a');
    assert_eq!(parse_command(&line), Err(ProtocolError::InlineTooBig));
    assert_eq!(parse_command(&line[..MAX_INLINE]), Ok(None));
}

/// A small deterministic generator (xorshift64*), so that a failure
/// repeats.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Bytes weighted towards the ones RESP gives meaning to.
    fn byte(&mut self) -> u8 {
        const MEANINGFUL: &[u8] = b"*$\r\n-+:0123456789 a";
        if self.below(4) == 0 {
            self.next() as u8
        } else {
            MEANINGFUL[self.below(MEANINGFUL.len())]
        }
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1)).map(|_| self.byte()).collect()
    }
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Any command encoded as an array of bulk strings (whatever bytes they
/// hold) reads back exactly, whatever follows it; every shorter prefix is
/// incomplete, never an error.
#[test]
fn resp_parser_reads_back_every_encoded_command() {
    let mut random = Random(0x5eed_0fc0_ffee);
    for _ in 0..2_000 {
        let args: Vec<Vec<u8>> = (0..random.below(8)).map(|_| random.bytes(40)).collect();
        let command = encode(&args);
        let mut input = command.clone();
        input.extend(random.bytes(20));
        let (parsed, len) = parse_command(&input).unwrap().expect("a whole command");
        assert_eq!(len, command.len());
        assert!(parsed.iter().eq(args.iter()), "{input:?}");
        for end in 0..command.len() {
            assert_eq!(
                parse_command(&command[..end]),
                Ok(None),
                "{:?}",
                &command[..end]
            );
        }
    }
}

/// 100,000 random and mutated inputs: the parser never panics; a command
/// it returns lies within the input, within the bounds, and reads the same
/// without what follows it; an error stays an error whatever follows.
#[test]
fn resp_parser_survives_random_and_mutated_input() {
    let mut random = Random(0xbad_1dea_5eed);
    for round in 0..100_000 {
        let input = if round % 2 == 0 {
            random.bytes(64)
        } else {
            let args: Vec<Vec<u8>> = (0..random.below(5)).map(|_| random.bytes(10)).collect();
            mutate(&mut random, encode(&args))
        };
        match parse_command(&input) {
            Ok(Some((args, len))) => {
                assert!(0 < len && len <= input.len(), "{input:?}");
                assert!(args.len() <= MAX_ARGS);
                let range = input[..len].as_ptr_range();
                for arg in &args {
                    assert!(range.contains(&arg.as_ptr()) || arg.is_empty(), "{input:?}");
                    assert!(arg.as_ptr_range().end <= range.end, "{input:?}");
                }
                assert_eq!(parse_command(&input[..len]), Ok(Some((args, len))));
            }
            Ok(None) => {}
            Err(error) => {
                let mut longer = input.clone();
                longer.extend(random.bytes(64));
                assert_eq!(parse_command(&longer), Err(error), "{input:?}");
            }
        }
    }
}

/// Random and mutated inputs growing one byte at a time: reading each
/// prefix on from where the last one was read gives what reading it whole
/// gives, up to the first prefix that is a command or an error.
#[test]
fn resp_parser_reads_input_in_pieces_as_it_reads_it_whole() {
    let mut random = Random(0x5b17_7e5b_17e5);
    for round in 0..20_000 {
        let input = if round % 2 == 0 {
            random.bytes(64)
        } else {
            let args: Vec<Vec<u8>> = (0..random.below(5)).map(|_| random.bytes(10)).collect();
            mutate(&mut random, encode(&args))
        };
        let mut progress = Progress::default();
        for end in 1..=input.len() {
            let prefix = &input[..end];
            let read = progress.advance(prefix);
            assert_eq!(read, parse_command(prefix), "{prefix:?}");
            if read != Ok(None) {
                break;
            }
        }
    }
}

/// `encode`d bytes with a few changed, inserted, removed or cut off.
fn mutate(random: &mut Random, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=random.below(3) {
        let at = random.below(bytes.len() + 1);
        match random.below(4) {
            0 if at < bytes.len() => bytes[at] = random.byte(),
            1 => bytes.insert(at, random.byte()),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}
