//! The one place that names rustls' connection types: a TLS session over
//! rustls' unbuffered API, without any IO of its own. Records are deframed
//! and decrypted where they were received (the stream's receive buffer, no
//! copy into rustls) and sealed into the stream's [`Outbox`]. Moving to
//! another rustls release changes this file (and the config helpers), not
//! the stream.

use std::io;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{ClientConfig, CommonState, ServerConfig};

use crate::{KeyExchange, TlsVersion};

/// Sealing a record's plaintext adds less than this (header, content type,
/// nonce, tag; no padding): the first guess at the room a record needs.
const RECORD_OVERHEAD: usize = 64;
/// The most plaintext one record carries.
const RECORD_PLAINTEXT: usize = 16 * 1024;
/// A record's header: type, version, length.
const RECORD_HEADER: usize = 5;

/// What feeding received bytes to a session produced.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// The peer's `close_notify` arrived: no more plaintext will come.
    pub(crate) peer_closed: bool,
}

/// Records waiting to be sent: the first `filled` bytes of `buf`. The
/// vector's whole length stays initialised from one use to the next, so
/// that sealing into it writes each byte once (a safe `&mut [u8]` over
/// spare capacity would need zeroing first).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    filled: usize,
}

impl Outbox {
    /// Bytes of records waiting.
    pub(crate) fn len(&self) -> usize {
        self.filled
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The records made so far as `(vector, length)`, the box starting
    /// again in `reuse` (a vector given back by an earlier `take`).
    pub(crate) fn take(&mut self, reuse: Vec<u8>) -> (Vec<u8>, usize) {
        let filled = std::mem::take(&mut self.filled);
        (std::mem::replace(&mut self.buf, reuse), filled)
    }

    /// Lets `write` put bytes after the filled ones, first in `room`
    /// bytes, then in as many as it says it needs.
    fn append(
        &mut self,
        room: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
    ) -> io::Result<()> {
        let mut needed = room;
        loop {
            if self.buf.len() < self.filled + needed {
                self.buf.resize(self.filled + needed, 0);
            }
            match write(&mut self.buf[self.filled..]) {
                Ok(written) => {
                    self.filled += written;
                    return Ok(());
                }
                Err(Short::Room(required)) if required > needed => needed = required,
                Err(Short::Room(required)) => {
                    return Err(io::Error::other(format!(
                        "rustls asked for {required} bytes of room and refused {needed}"
                    )))
                }
                Err(Short::Failed(err)) => return Err(err),
            }
        }
    }
}

/// Why a record did not fit the room it was given.
enum Short {
    Room(usize),
    Failed(io::Error),
}

impl From<EncryptError> for Short {
    fn from(err: EncryptError) -> Short {
        match err {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Short::Room(required_size)
            }
            other => Short::Failed(io::Error::other(other)),
        }
    }
}

impl From<EncodeError> for Short {
    fn from(err: EncodeError) -> Short {
        match err {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Short::Room(required_size)
            }
            other => Short::Failed(io::Error::other(other)),
        }
    }
}

enum Connection {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseNotify {
    NotAsked,
    /// Asked for and not sealed yet: during the handshake, records cannot
    /// be.
    Asked,
    Sent,
}

/// A client or server TLS session, without any IO of its own.
pub(crate) struct Session {
    conn: Connection,
    /// Plaintext written before records could be sealed (during the
    /// handshake), sealed as soon as they can.
    unsealed: Vec<u8>,
    close_notify: CloseNotify,
    /// The received bytes rustls still holds (a handshake message split
    /// across records) and what follows them: while there are any, the
    /// receive buffer takes only new bytes, appended here by `feed`, so
    /// that each byte is copied once however finely the message is cut.
    /// Also what the passes that seal writes between receives run over.
    held: Vec<u8>,
    /// Plaintext a pass over `held` decrypted, for the next `feed`.
    held_plaintext: Vec<u8>,
    /// Bytes `feed` has copied into `held`: the tests check it stays
    /// linear in the bytes received.
    #[cfg(test)]
    copied: usize,
}

/// What one pass over the connection's states works with.
struct Pass<'a> {
    plaintext: &'a mut Vec<u8>,
    records: &'a mut Outbox,
    unsealed: &'a mut Vec<u8>,
    close_notify: &'a mut CloseNotify,
    /// Plaintext being written: sealed after `unsealed` if records may be
    /// sealed, else left for the caller to keep.
    fresh: &'a [u8],
    peer_closed: bool,
    consumed: usize,
}

/// Whether a pass goes on after a state.
enum Then {
    Next,
    Stop,
}

impl Session {
    pub(crate) fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Session> {
        let conn = UnbufferedClientConnection::new(config, server_name).map_err(tls_error)?;
        Ok(Session::new(Connection::Client(conn)))
    }

    pub(crate) fn server(config: Arc<ServerConfig>) -> io::Result<Session> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        Ok(Session::new(Connection::Server(conn)))
    }

    fn new(conn: Connection) -> Session {
        Session {
            conn,
            unsealed: Vec::new(),
            close_notify: CloseNotify::NotAsked,
            held: Vec::new(),
            held_plaintext: Vec::new(),
            #[cfg(test)]
            copied: 0,
        }
    }

    fn common(&self) -> &CommonState {
        match &self.conn {
            Connection::Client(conn) => conn,
            Connection::Server(conn) => conn,
        }
    }

    /// Bytes of plaintext written and not yet sealed into records (they
    /// wait for the handshake's keys).
    pub(crate) fn unsealed_len(&self) -> usize {
        self.unsealed.len()
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.common().is_handshaking()
    }

    pub(crate) fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.common().alpn_protocol().map(<[u8]>::to_vec)
    }

    pub(crate) fn key_exchange(&self) -> Option<KeyExchange> {
        let group = self.common().negotiated_key_exchange_group()?.name();
        Some(match group {
            rustls::NamedGroup::X25519 => KeyExchange::X25519,
            rustls::NamedGroup::secp256r1 => KeyExchange::Secp256r1,
            rustls::NamedGroup::secp384r1 => KeyExchange::Secp384r1,
            rustls::NamedGroup::X25519MLKEM768 => KeyExchange::X25519MlKem768,
            other => KeyExchange::Other(u16::from(other)),
        })
    }

    pub(crate) fn protocol_version(&self) -> Option<TlsVersion> {
        match self.common().protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// Seals the client's hello (a server has nothing to say first).
    pub(crate) fn start(&mut self, records: &mut Outbox) -> io::Result<()> {
        self.pass_over_held(&[], records).map(drop)
    }

    /// Deframes and decrypts the records in `received` where they lie,
    /// appending their plaintext to `plaintext` and what the session
    /// answers to `records`, and removes from `received` what it took: a
    /// record cut short stays for the next receive to complete. While
    /// rustls holds received bytes, `received` is taken into the session
    /// and comes back empty. A protocol or certificate error comes back
    /// as `InvalidData`, with the alert for the peer in `records`.
    pub(crate) fn feed(
        &mut self,
        received: &mut Vec<u8>,
        plaintext: &mut Vec<u8>,
        records: &mut Outbox,
    ) -> io::Result<Fed> {
        plaintext.append(&mut self.held_plaintext);
        if !self.held.is_empty() {
            self.take_into_held(received);
            std::mem::swap(received, &mut self.held);
        }
        let (result, peer_closed) = self.pass(received, &[], plaintext, records);
        // After the peer's close_notify rustls looks at no more bytes.
        if !peer_closed && starts_with_whole_record(received) {
            // rustls keeps whole records it has read (a handshake message
            // waiting for its next part) and will look at them again.
            std::mem::swap(received, &mut self.held);
        }
        result.map(|_sealed| Fed { peer_closed })
    }

    /// Appends the new bytes in `received` to `held`, leaving it empty.
    fn take_into_held(&mut self, received: &mut Vec<u8>) {
        #[cfg(test)]
        {
            self.copied += received.len();
        }
        self.held.extend_from_slice(received);
        received.clear();
    }

    /// Seals `plaintext` into `records`, or keeps it for when the
    /// handshake lets records be sealed.
    pub(crate) fn write(&mut self, plaintext: &[u8], records: &mut Outbox) -> io::Result<()> {
        if self.is_handshaking() {
            self.unsealed.extend_from_slice(plaintext);
            return Ok(());
        }
        let sealed = self.pass_over_held(plaintext, records)?;
        if !sealed {
            self.unsealed.extend_from_slice(plaintext);
        }
        Ok(())
    }

    /// Seals `close_notify` after everything written so far, into
    /// `records` now or once the handshake is done.
    pub(crate) fn send_close_notify(&mut self, records: &mut Outbox) -> io::Result<()> {
        if self.close_notify == CloseNotify::NotAsked {
            self.close_notify = CloseNotify::Asked;
        }
        if self.is_handshaking() {
            return Ok(());
        }
        self.pass_over_held(&[], records).map(drop)
    }

    /// Whether `close_notify` is sealed (in records given out or still in
    /// an outbox).
    pub(crate) fn close_notify_sealed(&self) -> bool {
        self.close_notify == CloseNotify::Sent
    }

    /// A pass outside `feed`: over the received bytes rustls holds.
    /// Returns whether `fresh` was sealed.
    fn pass_over_held(&mut self, fresh: &[u8], records: &mut Outbox) -> io::Result<bool> {
        let mut held = std::mem::take(&mut self.held);
        let mut plaintext = std::mem::take(&mut self.held_plaintext);
        let (result, _) = self.pass(&mut held, fresh, &mut plaintext, records);
        self.held = held;
        self.held_plaintext = plaintext;
        result
    }

    /// Runs the connection over `bytes`, sealing `fresh` if records may be
    /// sealed, and removes from `bytes` what it consumed. Returns whether
    /// `fresh` was sealed, and whether the peer's `close_notify` came.
    fn pass(
        &mut self,
        bytes: &mut Vec<u8>,
        fresh: &[u8],
        plaintext: &mut Vec<u8>,
        records: &mut Outbox,
    ) -> (io::Result<bool>, bool) {
        let mut pass = Pass {
            plaintext,
            records,
            unsealed: &mut self.unsealed,
            close_notify: &mut self.close_notify,
            fresh,
            peer_closed: false,
            consumed: 0,
        };
        let result = run(&mut self.conn, bytes, &mut pass);
        let (consumed, sealed, peer_closed) =
            (pass.consumed, pass.fresh.is_empty(), pass.peer_closed);
        bytes.drain(..consumed);
        (result.map(|()| sealed), peer_closed)
    }
}

/// Drives the connection over `incoming` until it needs more bytes; after
/// an error, seals the alert for the peer.
fn run(conn: &mut Connection, incoming: &mut [u8], pass: &mut Pass) -> io::Result<()> {
    let err = loop {
        let rest = &mut incoming[pass.consumed..];
        let then = match conn {
            Connection::Client(conn) => step(conn.process_tls_records(rest), pass),
            Connection::Server(conn) => step(conn.process_tls_records(rest), pass),
        };
        match then {
            Ok(Then::Next) => {}
            Ok(Then::Stop) => return Ok(()),
            Err(err) => break err,
        }
    };
    // The failed connection hands out the alert it queued before it looks
    // at the bytes again (which would fail again, and alert twice).
    let rest = &mut incoming[pass.consumed..];
    match conn {
        Connection::Client(conn) => seal_alert(conn.process_tls_records(rest), pass),
        Connection::Server(conn) => seal_alert(conn.process_tls_records(rest), pass),
    }
    Err(err)
}

/// Handles one state of the connection.
fn step<Data>(status: UnbufferedStatus<'_, '_, Data>, pass: &mut Pass) -> io::Result<Then> {
    pass.consumed += status.discard;
    match status.state.map_err(tls_error)? {
        ConnectionState::ReadTraffic(mut traffic) => {
            while let Some(record) = traffic.next_record() {
                let record = record.map_err(tls_error)?;
                pass.plaintext.extend_from_slice(record.payload);
                pass.consumed += record.discard;
            }
            Ok(Then::Next)
        }
        ConnectionState::EncodeTlsData(mut encode) => {
            pass.records
                .append(RECORD_OVERHEAD, |room| Ok(encode.encode(room)?))?;
            Ok(Then::Next)
        }
        ConnectionState::TransmitTlsData(mut transmit) => {
            if let Some(mut traffic) = transmit.may_encrypt_app_data() {
                seal_writes(&mut traffic, pass)?;
            }
            // The records are in the outbox, which the stream sends.
            transmit.done();
            Ok(Then::Next)
        }
        ConnectionState::WriteTraffic(mut traffic) => {
            seal_writes(&mut traffic, pass)?;
            Ok(Then::Stop)
        }
        ConnectionState::PeerClosed => {
            pass.peer_closed = true;
            Ok(Then::Next)
        }
        ConnectionState::Closed | ConnectionState::BlockedHandshake => Ok(Then::Stop),
        ConnectionState::ReadEarlyData(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent early (0-RTT) data, which ouro-tls does not take",
        )),
        other => Err(io::Error::other(format!(
            "a TLS session state ouro-tls does not know: {other:?}"
        ))),
    }
}

/// Seals the plaintext kept during the handshake, the plaintext being
/// written, and `close_notify` if it was asked for, in that order.
fn seal_writes<Data>(traffic: &mut WriteTraffic<'_, Data>, pass: &mut Pass) -> io::Result<()> {
    for plaintext in [std::mem::take(pass.unsealed).as_slice(), pass.fresh] {
        if !plaintext.is_empty() {
            let room =
                plaintext.len() + RECORD_OVERHEAD * plaintext.len().div_ceil(RECORD_PLAINTEXT);
            pass.records
                .append(room, |room| Ok(traffic.encrypt(plaintext, room)?))?;
        }
    }
    pass.fresh = &[];
    if *pass.close_notify == CloseNotify::Asked {
        pass.records.append(
            RECORD_OVERHEAD,
            |room| Ok(traffic.queue_close_notify(room)?),
        )?;
        *pass.close_notify = CloseNotify::Sent;
    }
    Ok(())
}

/// Seals the alert a failed connection hands out, if it does: sealing it
/// may fail too, but the session's error is the one to report.
fn seal_alert<Data>(status: UnbufferedStatus<'_, '_, Data>, pass: &mut Pass) {
    pass.consumed += status.discard;
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
        let _ = pass
            .records
            .append(RECORD_OVERHEAD, |room| Ok(encode.encode(room)?));
    }
}

/// Whether `bytes` starts with a whole record: after a pass, one that
/// rustls has read and not consumed (records are read in order, and what
/// follows a record cut short is the rest of it).
fn starts_with_whole_record(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..RECORD_HEADER) else {
        return false;
    };
    let body = usize::from(u16::from_be_bytes([header[3], header[4]]));
    bytes.len() >= RECORD_HEADER + body
}

/// A rustls error as an `io::Error` (`InvalidData`) whose message names
/// the cause ("invalid peer certificate: Expired", ...).
pub(crate) fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client_config, server_config, Versions};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// A client configuration trusting a fresh CA, and a server one with a
    /// `localhost` leaf of it whose records carry at most 32 bytes, so that
    /// each session ticket spans several records.
    fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let client = client_config(std::slice::from_ref(ca.der()), &[], Versions::Tls13).unwrap();
        let mut server = server_config(chain, key, &[], Versions::Tls13).unwrap();
        Arc::make_mut(&mut server).max_fragment_size = Some(32);
        (client, server)
    }

    /// Moves the records in `outbox` to the end of `received`.
    fn deliver(outbox: &mut Outbox, received: &mut Vec<u8>) {
        let (records, len) = outbox.take(Vec::new());
        received.extend_from_slice(&records[..len]);
    }

    /// Where each record in `bytes` ends.
    fn record_ends(bytes: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut end = 0;
        while let Some(header) = bytes.get(end..end + RECORD_HEADER) {
            end += RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
            ends.push(end);
        }
        ends
    }

    /// A handshake message of `len` bytes (type ClientHello, body all
    /// `A`) cut into records of `per_record` bytes.
    fn fragmented_hello(len: usize, per_record: usize) -> Vec<u8> {
        let mut message = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        message.resize(4 + len, b'A');
        let mut records = Vec::new();
        for part in message.chunks(per_record) {
            records.extend_from_slice(&[0x16, 0x03, 0x01, 0, part.len() as u8]);
            records.extend_from_slice(part);
        }
        records
    }

    #[test]
    fn a_message_in_one_byte_records_is_copied_once_not_once_per_receive() {
        let (_, server_config) = configs();
        let mut server = Session::server(server_config).unwrap();
        let wire = fragmented_hello(16_000, 1);
        let (mut received, mut plaintext, mut records) =
            (Vec::new(), Vec::new(), Outbox::default());
        let mut ended = None;
        // One record per receive, as a peer trickling them would send.
        for record in wire.chunks(RECORD_HEADER + 1) {
            received.extend_from_slice(record);
            if let Err(err) = server.feed(&mut received, &mut plaintext, &mut records) {
                ended = Some(err);
                break;
            }
        }
        // The whole message arrived: rustls refuses it (no valid hello).
        let err = ended.expect("a hello of all As taken");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // Every record after the first waited in `held` for the rest,
        // each copied there once.
        assert!(
            server.copied <= wire.len() && server.copied > wire.len() / 2,
            "{} bytes copied for {} received",
            server.copied,
            wire.len()
        );
    }

    #[test]
    fn a_write_while_a_session_ticket_is_cut_short_goes_out_and_the_ticket_is_taken_later() {
        let (client_config, server_config) = configs();
        let name = ServerName::try_from("localhost").unwrap();
        let mut cuts_inside_a_ticket = 0;
        let mut cut = 1;
        loop {
            let mut client = Session::client(client_config.clone(), name.clone()).unwrap();
            let mut server = Session::server(server_config.clone()).unwrap();
            let (mut to_server, mut to_client) = (Outbox::default(), Outbox::default());
            let (mut server_got, mut client_got) = (Vec::new(), Vec::new());
            let mut plaintext = Vec::new();
            client.start(&mut to_server).unwrap();
            deliver(&mut to_server, &mut server_got);
            server
                .feed(&mut server_got, &mut plaintext, &mut to_client)
                .unwrap();
            deliver(&mut to_client, &mut client_got);
            client
                .feed(&mut client_got, &mut plaintext, &mut to_server)
                .unwrap();
            deliver(&mut to_server, &mut server_got);
            server
                .feed(&mut server_got, &mut plaintext, &mut to_client)
                .unwrap();
            assert!(!client.is_handshaking() && !server.is_handshaking());
            // What is left for the client: the server's session tickets.
            let (tickets, len) = to_client.take(Vec::new());
            let ends = record_ends(&tickets[..len]);
            assert_eq!(ends.last(), Some(&len), "whole records only");
            let Some(&end) = ends.get(cut - 1).filter(|&&end| end < len) else {
                break;
            };
            client_got.extend_from_slice(&tickets[..end]);
            client
                .feed(&mut client_got, &mut plaintext, &mut to_server)
                .unwrap();
            cuts_inside_a_ticket += usize::from(!client.held.is_empty());
            client.write(b"written mid-ticket", &mut to_server).unwrap();
            client_got.extend_from_slice(&tickets[end..len]);
            client
                .feed(&mut client_got, &mut plaintext, &mut to_server)
                .unwrap();
            assert!(client_got.is_empty() && plaintext.is_empty(), "cut {cut}");
            deliver(&mut to_server, &mut server_got);
            server
                .feed(&mut server_got, &mut plaintext, &mut to_client)
                .unwrap();
            assert_eq!(plaintext, b"written mid-ticket", "cut {cut}");
            cut += 1;
        }
        assert!(cuts_inside_a_ticket > 0, "no cut fell inside a ticket");
    }
}
