//! The examples, run as written (their `run` is what their `main` calls).

use std::io::Read;
use std::os::fd::OwnedFd;

use ouro::BackendKind;

use crate::echo_example::{self, Options};
use crate::harness::{pipe, ring, temp_file};
use crate::multiwriter_example;

backend_tests![
    echo_clients_all_finish_with_every_byte_verified,
    echo_with_two_receive_buffers_still_verifies_every_byte,
    multiwriter_writes_everything_to_both_fds
];

fn echo_run(kind: BackendKind, buffers: u16) {
    let options = Options {
        serve: None,
        clients: 8,
        rounds: 25,
        size: 5000,
        backend: Some(kind),
        buffers,
    };
    let report = echo_example::run(&options).unwrap();
    assert_eq!(report.clients_done, 8);
    assert_eq!(report.round_trips, 8 * 25);
    assert_eq!(report.bytes_verified, 8 * 25 * 5000);
}

fn echo_clients_all_finish_with_every_byte_verified(kind: BackendKind) {
    echo_run(kind, 1024);
}

/// Eight connections share two receive buffers: receives keep running out
/// (`ENOBUFS`) and must be re-armed as sends give buffers back.
fn echo_with_two_receive_buffers_still_verifies_every_byte(kind: BackendKind) {
    echo_run(kind, 2);
}

/// 256 KiB to a pipe (four times what it holds, so the writes wait for the
/// reader and may come back partial) and to a file.
fn multiwriter_writes_everything_to_both_fds(kind: BackendKind) {
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
    let (reader, writer) = pipe();
    let reading = std::thread::spawn(move || {
        let mut piped = Vec::new();
        std::fs::File::from(reader).read_to_end(&mut piped).unwrap();
        piped
    });
    let file = temp_file(b"");
    let file_fd = OwnedFd::from(file.try_clone().unwrap());
    let mut ring = ring(kind, 16);
    let chunks = [&data[..1000], &data[1000..]];
    let written = multiwriter_example::run(&mut ring, writer, file_fd, &chunks).unwrap();
    assert_eq!(written, [data.len(); 2]);
    // `run` dropped the writer, so the reader has reached end of file.
    let piped = reading.join().unwrap();
    assert!(
        piped == data,
        "the pipe got {} bytes, not the same",
        piped.len()
    );
    let mut stored = Vec::new();
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert!(
        stored == data,
        "the file got {} bytes, not the same",
        stored.len()
    );
}
