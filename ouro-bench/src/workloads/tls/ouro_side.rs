//! The ouro contestant: a client and a server `TlsStream` on one ring.

use std::io;
use std::net::TcpStream;
use std::rc::Rc;

use ouro::{BackendKind, Completion, Ctx, Ring, RunMode};
use ouro_tls::{TlsEvent, TlsStream};

use super::{tcp_pair, Configs, HIGH_WATER, RECORD, SERVER_NAME};

type Stream = TlsStream<Bench, Rc<TcpStream>>;

/// One connection's two ends; the key of their tasks is `2 * session +
/// side`, so completions of an earlier session (cancelled) are told apart.
struct Bench {
    configs: Configs,
    session: u64,
    client: Stream,
    server: Stream,
    handshakes_done: u8,
    sessions_left: u64,
    /// Bulk: plaintext left to write, and to receive.
    to_send: u64,
    to_receive: u64,
    record: Vec<u8>,
    failure: Option<io::Error>,
}

const CLIENT: u64 = 0;
const SERVER: u64 = 1;

fn ring() -> io::Result<Ring<Bench>> {
    Ring::builder()
        .backend(BackendKind::Uring)
        .entries(256)
        .build()
}

fn pair(session: u64, configs: &Configs) -> io::Result<(Stream, Stream)> {
    let (client, server) = tcp_pair()?;
    let ctx = Ctx::new(on_tls);
    let client = TlsStream::client(
        Rc::new(client),
        configs.client.clone(),
        SERVER_NAME,
        ctx.key(2 * session + CLIENT),
    )?;
    let server = TlsStream::server(
        Rc::new(server),
        configs.server.clone(),
        ctx.key(2 * session + SERVER),
    )?;
    Ok((client, server))
}

impl Bench {
    fn new(configs: &Configs, sessions: u64, bytes: u64) -> io::Result<Bench> {
        let (client, server) = pair(0, configs)?;
        Ok(Bench {
            configs: configs.clone(),
            session: 0,
            client,
            server,
            handshakes_done: 0,
            sessions_left: sessions,
            to_send: bytes,
            to_receive: bytes,
            record: vec![0x5a; RECORD],
            failure: None,
        })
    }

    fn run(mut self, mut ring: Ring<Bench>) -> io::Result<()> {
        self.client.start(&mut ring);
        self.server.start(&mut ring);
        ring.run(&mut self, RunMode::Forever)?;
        self.failure.map_or(Ok(()), Err)
    }

    fn send_more(&mut self, ring: &mut Ring<Bench>) -> io::Result<()> {
        while self.to_send > 0 && self.client.queued() < HIGH_WATER {
            let len = RECORD.min(self.to_send as usize);
            self.client.write(ring, &self.record[..len])?;
            self.to_send -= len as u64;
        }
        Ok(())
    }
}

pub fn handshakes(configs: &Configs, count: u64) -> io::Result<()> {
    Bench::new(configs, count, 0)?.run(ring()?)
}

pub fn bulk(configs: &Configs, bytes: u64) -> io::Result<()> {
    Bench::new(configs, 1, bytes)?.run(ring()?)
}

fn on_tls(bench: &mut Bench, ring: &mut Ring<Bench>, c: Completion) -> io::Result<()> {
    if c.key() / 2 != bench.session {
        return Ok(()); // a cancelled task of an earlier session
    }
    let side = c.key() % 2;
    let stream = if side == CLIENT {
        &mut bench.client
    } else {
        &mut bench.server
    };
    stream.on_completion(ring, c)?;
    while let Some(event) = next_event(bench, side) {
        match event {
            TlsEvent::HandshakeDone(_) => {
                bench.handshakes_done += 1;
                if bench.to_send > 0 && side == CLIENT {
                    bench.send_more(ring)?;
                }
            }
            TlsEvent::Written { .. } if side == CLIENT && bench.client.is_open() => {
                bench.send_more(ring)?
            }
            TlsEvent::Received(bytes) => {
                bench.to_receive = bench.to_receive.saturating_sub(bytes.len() as u64);
                bench.server.recycle(bytes);
                if bench.to_receive == 0 {
                    ring.stop();
                }
            }
            TlsEvent::Failed(err) => {
                bench.failure.get_or_insert(err);
                ring.stop();
            }
            TlsEvent::Written { .. } | TlsEvent::Closed => {}
        }
    }
    if bench.handshakes_done == 2 && bench.to_receive == 0 {
        next_session(bench, ring)?;
    }
    Ok(())
}

fn next_event(bench: &mut Bench, side: u64) -> Option<TlsEvent> {
    if side == CLIENT {
        bench.client.next_event()
    } else {
        bench.server.next_event()
    }
}

/// Both ends finished their handshake: cancel their receives and start
/// the next session, or stop.
fn next_session(bench: &mut Bench, ring: &mut Ring<Bench>) -> io::Result<()> {
    bench.client.cancel(ring);
    bench.server.cancel(ring);
    bench.handshakes_done = 0;
    bench.sessions_left -= 1;
    if bench.sessions_left == 0 {
        ring.stop();
        return Ok(());
    }
    bench.session += 1;
    let (client, server) = pair(bench.session, &bench.configs)?;
    bench.client = client;
    bench.server = server;
    bench.client.start(ring);
    bench.server.start(ring);
    Ok(())
}
