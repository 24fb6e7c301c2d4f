//! The tokio-rustls contestant: client and server futures joined on a
//! current-thread runtime.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{tcp_pair, Configs, RECORD, SERVER_NAME};

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
}

type Sessions = (
    tokio_rustls::client::TlsStream<TcpStream>,
    tokio_rustls::server::TlsStream<TcpStream>,
);

async fn connect(configs: &Configs) -> io::Result<Sessions> {
    let (client, server) = tcp_pair()?;
    let (client, server) = (TcpStream::from_std(client)?, TcpStream::from_std(server)?);
    let connector = TlsConnector::from(configs.client.clone());
    let acceptor = TlsAcceptor::from(configs.server.clone());
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    let (client, server) = tokio::join!(connector.connect(name, client), acceptor.accept(server));
    Ok((client?, server?))
}

pub fn handshakes(configs: &Configs, count: u64) -> io::Result<()> {
    runtime()?.block_on(async {
        for _ in 0..count {
            connect(configs).await?;
        }
        Ok(())
    })
}

pub fn bulk(configs: &Configs, bytes: u64) -> io::Result<()> {
    runtime()?.block_on(async {
        let (mut client, mut server) = connect(configs).await?;
        let send = async {
            let record = vec![0x5a; RECORD];
            let mut sent = 0;
            while sent < bytes {
                let len = RECORD.min((bytes - sent) as usize);
                client.write_all(&record[..len]).await?;
                sent += len as u64;
            }
            client.flush().await?;
            Ok::<_, io::Error>(client)
        };
        let receive = async {
            let mut buf = vec![0; RECORD];
            let mut received = 0;
            while received < bytes {
                match server.read(&mut buf).await? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => received += n as u64,
                }
            }
            Ok(())
        };
        let (sent, received) = tokio::join!(send, receive);
        sent?;
        received
    })
}
