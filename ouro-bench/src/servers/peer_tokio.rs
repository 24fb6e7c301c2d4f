//! tokio's servers, on its current-thread runtime: the idiomatic task per
//! connection, reading into a buffer of its own and writing back with
//! `write_all`.

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{http_server, ECHO_BUFFER, HTTP_MAX_INPUT};

/// Runs `connection` for every connection accepted on `listener`, forever.
fn serve<F: std::future::Future<Output = ()> + Send + 'static>(
    listener: OwnedFd,
    connection: fn(TcpStream) -> F,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let listener = TcpListener::from(listener);
    listener.set_nonblocking(true)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(connection(stream));
        }
    })
}

pub fn echo(listener: OwnedFd) -> io::Result<()> {
    serve(listener, |mut stream| async move {
        let mut buf = vec![0u8; ECHO_BUFFER];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

pub fn http(listener: OwnedFd) -> io::Result<()> {
    serve(listener, |mut stream| async move {
        let (mut input, mut output) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
        let (mut progress, mut closing) = (http_server::Progress::default(), false);
        while !closing {
            input.reserve(4096);
            match stream.read_buf(&mut input).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let used =
                http_server::respond(&input, &mut progress, &mut output, usize::MAX, &mut closing);
            input.drain(..used);
            closing |= input.len() > HTTP_MAX_INPUT;
            if !output.is_empty() && stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
    })
}
