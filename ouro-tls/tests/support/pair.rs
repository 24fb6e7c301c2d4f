//! A client and a server, both `TlsStream`s on one ring over loopback TCP,
//! each playing a role; what each saw is kept for the test to check.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_tls::{
    server_config, CertificateDer, ClientConfig, Handshake, ServerConfig, TlsEvent, TlsStream,
    Versions,
};

pub type Stream = TlsStream<Pair, Rc<TcpStream>>;

/// Bytes written per `write` when sending a payload, and the records that
/// may be queued before the sender waits for `Written` events.
const CHUNK: usize = 64 * 1024;
const HIGH_WATER: usize = 256 * 1024;

pub enum Role {
    /// Echoes everything; closes after the peer closes.
    Echo,
    /// Sends the payload after the handshake (in chunks, minding the
    /// queue), closes once all of it has come back.
    Send { payload: Vec<u8>, sent: usize },
    /// Sends the payload after the handshake, then cuts the connection
    /// without `close_notify`.
    Cut { payload: Vec<u8> },
    /// Sends the request after the handshake, then reads until the peer
    /// closes, and closes too.
    Request { request: Vec<u8>, sent: usize },
    /// Answers a request (once its head has arrived) with the response,
    /// then closes.
    Reply { response: Vec<u8> },
    /// Cancels its stream at its first event, in the middle of the
    /// handshake.
    CancelEarly,
}

pub struct Side {
    pub stream: Option<Stream>,
    pub role: Role,
    pub handshake: Option<Handshake>,
    pub received: Vec<u8>,
    pub closed: bool,
    pub failed: Option<io::Error>,
    /// The `queued` of each `Written` event before `HandshakeDone`.
    pub written_while_handshaking: Vec<usize>,
    /// The stream's `queued` when it was dropped.
    pub queued_at_drop: Option<usize>,
}

pub struct Pair {
    pub client: Side,
    pub server: Side,
}

pub const CLIENT: u64 = 0;
pub const SERVER: u64 = 1;

pub fn tcp_pair() -> (Rc<TcpStream>, Rc<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (Rc::new(client), Rc::new(server))
}

impl Pair {
    /// A client to `localhost` with `client_config` and a server with
    /// `server_config`, both with a handshake deadline of 20 s.
    pub fn new(
        client_config: Arc<ClientConfig>,
        client_role: Role,
        server_config: Arc<ServerConfig>,
        server_role: Role,
    ) -> Pair {
        let (client_socket, server_socket) = tcp_pair();
        let ctx = Ctx::new(on_tls);
        let deadline = Duration::from_secs(20);
        let client = TlsStream::client(
            client_socket.clone(),
            client_config,
            "localhost",
            ctx.key(CLIENT),
        )
        .expect("client")
        .with_handshake_timeout(deadline);
        let server = TlsStream::server(server_socket.clone(), server_config, ctx.key(SERVER))
            .expect("server")
            .with_handshake_timeout(deadline);
        Pair {
            client: Side::new(Some(client), client_role),
            server: Side::new(Some(server), server_role),
        }
    }

    /// Both streams receive into buffers of `capacity` bytes.
    pub fn receive_capacity(mut self, capacity: usize) -> Pair {
        for side in [&mut self.client, &mut self.server] {
            side.stream = side
                .stream
                .take()
                .map(|s| s.with_receive_capacity(capacity));
        }
        self
    }

    /// One stream alone (its peer is the test's), as the client side.
    pub fn alone(stream: Stream, role: Role) -> Pair {
        Pair {
            client: Side::new(Some(stream), role),
            server: Side::new(None, Role::Echo),
        }
    }

    /// Starts the streams on `ring` (for a test that acts before running).
    pub fn start(&mut self, ring: &mut Ring<Pair>) {
        for side in [&mut self.client, &mut self.server] {
            if let Some(stream) = side.stream.as_mut() {
                stream.start(ring);
            }
        }
    }

    /// Runs `ring` until neither side has a task left.
    pub fn finish(mut self, mut ring: Ring<Pair>) -> Pair {
        ring.run(&mut self, RunMode::UntilDone).expect("run");
        assert!(
            self.client.stream.is_none(),
            "the client's stream never ended"
        );
        assert!(
            self.server.stream.is_none(),
            "the server's stream never ended"
        );
        self
    }

    /// Runs both sides on a new ring until neither has a task left.
    pub fn run(mut self) -> Pair {
        let mut ring = Ring::new(64).expect("ring");
        self.start(&mut ring);
        self.finish(ring)
    }
}

impl Side {
    fn new(stream: Option<Stream>, role: Role) -> Side {
        Side {
            stream,
            role,
            handshake: None,
            received: Vec::new(),
            closed: false,
            failed: None,
            written_while_handshaking: Vec::new(),
            queued_at_drop: None,
        }
    }

    pub fn failure(&self) -> String {
        match &self.failed {
            Some(err) => err.to_string(),
            None => panic!(
                "no failure: handshake {:?}, closed {}",
                self.handshake, self.closed
            ),
        }
    }
}

pub fn on_tls(pair: &mut Pair, ring: &mut Ring<Pair>, c: Completion) -> io::Result<()> {
    let side = if c.key() == CLIENT {
        &mut pair.client
    } else {
        &mut pair.server
    };
    let Some(stream) = side.stream.as_mut() else {
        panic!("a completion for a stream already dropped: {:?}", c.outcome);
    };
    stream.on_completion(ring, c)?;
    while let Some(event) = side.stream.as_mut().and_then(|s| s.next_event()) {
        side.on_event(ring, event)?;
    }
    side.drop_when_done();
    Ok(())
}

impl Side {
    fn on_event(&mut self, ring: &mut Ring<Pair>, event: TlsEvent) -> io::Result<()> {
        let stream = self.stream.as_mut().expect("a stream");
        if let Role::CancelEarly = self.role {
            stream.cancel(ring);
        }
        match event {
            TlsEvent::HandshakeDone(handshake) => {
                assert!(self.handshake.is_none(), "a second handshake event");
                self.handshake = Some(handshake);
                self.send_more(ring)?;
            }
            TlsEvent::Received(bytes) => {
                self.received.extend_from_slice(&bytes);
                if let Role::Echo = self.role {
                    match stream.write(ring, &bytes) {
                        // Plaintext that came before a failure, which the
                        // next event reports.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                        written => drop(written?),
                    }
                }
                stream.recycle(bytes);
                if let Role::Reply { response } = &mut self.role {
                    if self.received.windows(4).any(|w| w == b"\r\n\r\n") && !response.is_empty() {
                        stream.write(ring, &std::mem::take(response))?;
                        stream.shutdown(ring);
                    }
                }
                if let Role::Send { payload, .. } = &self.role {
                    if self.received.len() >= payload.len() {
                        stream.shutdown(ring);
                    }
                }
            }
            TlsEvent::Written { queued } => {
                if self.handshake.is_none() {
                    self.written_while_handshaking.push(queued);
                }
                if let (Role::Cut { .. }, 0) = (&self.role, queued) {
                    if self.handshake.is_some() {
                        // FIN without close_notify, as a truncation attack does.
                        stream.fd().shutdown(Shutdown::Both)?;
                        stream.cancel(ring);
                    }
                }
                self.send_more(ring)?;
            }
            TlsEvent::Closed => {
                self.closed = true;
                stream.shutdown(ring);
            }
            TlsEvent::Failed(err) => {
                assert!(self.failed.is_none(), "a second failure: {err}");
                self.failed = Some(err);
            }
        }
        Ok(())
    }

    fn send_more(&mut self, ring: &mut Ring<Pair>) -> io::Result<()> {
        let stream = self.stream.as_mut().expect("a stream");
        if self.handshake.is_none() || self.failed.is_some() {
            return Ok(());
        }
        match &mut self.role {
            Role::Send { payload, sent }
            | Role::Request {
                request: payload,
                sent,
            } => {
                while *sent < payload.len() && stream.queued() < HIGH_WATER {
                    let end = (*sent + CHUNK).min(payload.len());
                    stream.write(ring, &payload[*sent..end])?;
                    *sent = end;
                }
            }
            Role::Cut { payload } if !payload.is_empty() => {
                stream.write(ring, &std::mem::take(payload))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Drops the stream (and with it the socket) once it has ended and has
    /// nothing in flight, as a server would.
    fn drop_when_done(&mut self) {
        let ended = self.failed.is_some()
            || (self.closed && self.stream.as_ref().is_some_and(|s| s.queued() == 0));
        if let Some(stream) = self.stream.take_if(|s| ended && s.is_idle()) {
            self.queued_at_drop = Some(stream.queued());
        }
    }
}

/// A client on `client` meets a server presenting a self-signed
/// certificate made here: the client refuses it (`UnknownIssuer`) before
/// any plaintext goes across.
pub fn assert_refuses_a_self_signed_server(client: Arc<ClientConfig>) {
    let self_signed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![CertificateDer::from(self_signed.cert.der().to_vec())];
    let key = self_signed.signing_key.serialize_der().try_into().unwrap();
    let server = server_config(chain, key, &[], Versions::Both).unwrap();
    let payload = b"secret".to_vec();
    let pair = Pair::new(client, Role::Send { payload, sent: 0 }, server, Role::Echo).run();
    let failure = pair.client.failure();
    assert!(failure.contains("UnknownIssuer"), "{failure}");
    assert!(pair.client.handshake.is_none(), "the handshake finished");
    assert!(pair.server.received.is_empty());
}

/// An ouro server alone on a ring with `config`, and `client` run on a
/// thread of its own against it; returns what the server saw.
pub fn server_against(
    config: Arc<ServerConfig>,
    client: impl FnOnce(TcpStream) + Send + 'static,
) -> Pair {
    let (client_socket, server_socket) = tcp_pair();
    let stream = TlsStream::server(server_socket, config, Ctx::new(on_tls)).unwrap();
    let client_socket = Rc::try_unwrap(client_socket).expect("the only owner");
    let thread = std::thread::spawn(move || client(client_socket));
    let pair = Pair::alone(stream, Role::Echo).run();
    thread.join().expect("the client thread");
    pair
}
