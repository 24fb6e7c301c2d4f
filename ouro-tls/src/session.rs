//! The one place that names rustls' connection types: a TLS session that
//! takes ciphertext in, gives plaintext out and writes its records into
//! caller-owned vectors. Moving to another rustls release changes this file
//! (and the config helpers), not the stream.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::TlsVersion;

/// What feeding received bytes to a session produced.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// The peer's `close_notify` arrived: no more plaintext will come.
    pub(crate) peer_closed: bool,
}

/// A client or server TLS session, without any IO of its own.
pub(crate) struct Session(Connection);

impl Session {
    pub(crate) fn client(
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Session> {
        let conn = ClientConnection::new(config, server_name).map_err(tls_error)?;
        Ok(Session::unlimited(conn.into()))
    }

    pub(crate) fn server(config: Arc<ServerConfig>) -> io::Result<Session> {
        let conn = ServerConnection::new(config).map_err(tls_error)?;
        Ok(Session::unlimited(conn.into()))
    }

    /// The stream drains every record the session makes into its own
    /// write queue (whose length is the backpressure signal), so the
    /// session's buffers need no limit of their own.
    fn unlimited(mut conn: Connection) -> Session {
        conn.set_buffer_limit(None);
        Session(conn)
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.0.is_handshaking()
    }

    pub(crate) fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.0.alpn_protocol().map(<[u8]>::to_vec)
    }

    pub(crate) fn protocol_version(&self) -> Option<TlsVersion> {
        match self.0.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// Takes the received `ciphertext` whole, appending the plaintext it
    /// carried to `plaintext`. A protocol or certificate error comes back
    /// as `InvalidData` (the alert for the peer is then waiting in
    /// [`write_records`](Session::write_records)).
    pub(crate) fn feed(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> io::Result<Fed> {
        let mut fed = Fed::default();
        while !ciphertext.is_empty() && !fed.peer_closed {
            // The session takes at most what its deframer has room for; the
            // plaintext is drained after each step so that room comes back.
            let taken = self.0.read_tls(&mut ciphertext)?;
            self.0.process_new_packets().map_err(tls_error)?;
            fed.peer_closed = self.drain_plaintext(plaintext)? || taken == 0;
        }
        Ok(fed)
    }

    /// Returns whether the peer has closed cleanly. Copies the session's
    /// chunks as they are: `read_to_end` would zero the vector's spare
    /// capacity before every read, a second pass over each record.
    fn drain_plaintext(&mut self, plaintext: &mut Vec<u8>) -> io::Result<bool> {
        let mut reader = self.0.reader();
        loop {
            let taken = match reader.fill_buf() {
                Ok([]) => return Ok(true),
                Ok(chunk) => {
                    plaintext.extend_from_slice(chunk);
                    chunk.len()
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            };
            reader.consume(taken);
        }
    }

    /// Queues `plaintext` to be sent (encrypted once the handshake is done).
    pub(crate) fn write_plaintext(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.0.writer().write_all(plaintext)
    }

    pub(crate) fn send_close_notify(&mut self) {
        self.0.send_close_notify();
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.0.wants_write()
    }

    /// Appends the records waiting to be sent to `out`.
    pub(crate) fn write_records(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.0.wants_write() {
            self.0.write_tls(out)?;
        }
        Ok(())
    }
}

/// A rustls error as an `io::Error` (`InvalidData`) whose message names
/// the cause ("invalid peer certificate: Expired", ...).
pub(crate) fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}
