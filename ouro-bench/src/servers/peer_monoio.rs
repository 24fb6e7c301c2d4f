//! monoio's servers, on its io_uring driver (current thread, its default
//! ring setup): a task per connection with an owned buffer, as monoio's
//! examples do.

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::{http_server, ECHO_BUFFER, HTTP_MAX_INPUT};

/// Runs `connection` for every connection accepted on `listener`, forever.
fn serve<F: std::future::Future<Output = ()> + 'static>(
    listener: OwnedFd,
    connection: fn(TcpStream) -> F,
) -> io::Result<()> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(256)
        .build()?;
    runtime.block_on(async {
        let listener = monoio::net::TcpListener::from_std(TcpListener::from(listener))?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            monoio::spawn(connection(stream));
        }
    })
}

pub fn echo(listener: OwnedFd) -> io::Result<()> {
    serve(listener, |mut stream| async move {
        let mut buf = Vec::with_capacity(ECHO_BUFFER);
        loop {
            let (res, read) = stream.read(buf).await;
            buf = read;
            match res {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let (res, written) = stream.write_all(buf).await;
            buf = written;
            if res.is_err() {
                return;
            }
            buf.clear();
        }
    })
}

pub fn http(listener: OwnedFd) -> io::Result<()> {
    serve(listener, |mut stream| async move {
        let (mut input, mut output) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
        let (mut progress, mut closing) = (http_server::Progress::default(), false);
        while !closing {
            input.reserve(4096);
            let len = input.len();
            let (res, read) = stream.read(input.slice_mut(len..)).await;
            input = read.into_inner();
            match res {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let used =
                http_server::respond(&input, &mut progress, &mut output, usize::MAX, &mut closing);
            input.drain(..used);
            closing |= input.len() > HTTP_MAX_INPUT;
            if !output.is_empty() {
                let (res, written) = stream.write_all(output).await;
                output = written;
                if res.is_err() {
                    return;
                }
                output.clear();
            }
        }
    })
}
