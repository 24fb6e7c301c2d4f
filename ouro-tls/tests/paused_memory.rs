//! A server stream whose peer sends and never reads, paused as a server
//! does once its answers pile up, holds what it has queued and little
//! more: the receive buffer a busy stream grew and the vectors it kept for
//! reuse are freed while it receives nothing. Live heap bytes are counted
//! by this binary's allocator (one test, so nothing else runs meanwhile).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ouro::{Completion, Ctx, Ring, RunMode};
use ouro_tls::rustls::pki_types::ServerName;
use ouro_tls::rustls::ClientConnection;
use ouro_tls::{client_config, server_config, TlsEvent, TlsStream, Versions};
use support::certs::Pki;
use support::watchdog::AbortAfter;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to `System` unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Answers queued above which the server pauses, as `tls_echo` does with
/// its share of the memory it allows.
const PAUSE_ABOVE: usize = 64 * 1024;
/// What the client writes at a time.
const CHUNK: usize = 16 * 1024;

struct Server {
    stream: Option<TlsStream<Server, Rc<TcpStream>>>,
    /// `queued` when the stream was paused.
    paused_with: Option<usize>,
    settled: bool,
}

fn on_settled(server: &mut Server, _: &mut Ring<Server>, _: Completion) -> std::io::Result<()> {
    server.settled = true;
    Ok(())
}

fn on_tls(server: &mut Server, ring: &mut Ring<Server>, c: Completion) -> std::io::Result<()> {
    let stream = server.stream.as_mut().expect("the stream");
    stream.on_completion(ring, c)?;
    while let Some(event) = stream.next_event() {
        match event {
            TlsEvent::Received(bytes) => {
                let queued = stream.write(ring, &bytes)?;
                stream.recycle(bytes);
                if queued > PAUSE_ABOVE && !stream.is_receiving_paused() {
                    stream.pause_receiving();
                    server.paused_with = Some(queued);
                }
            }
            TlsEvent::Failed(err) => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

/// A blocking rustls client that shakes hands, then writes until told to
/// stop (or the server gives up), and never reads.
fn flood(socket: TcpStream, pki: &Pki, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let config = client_config(std::slice::from_ref(&pki.ca), &[], Versions::Both).unwrap();
    std::thread::spawn(move || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config, name).unwrap();
        let mut socket = socket;
        while conn.is_handshaking() {
            conn.complete_io(&mut socket).expect("the handshake");
        }
        let chunk = vec![7u8; CHUNK];
        while !stop.load(Ordering::Relaxed) {
            conn.writer().write_all(&chunk).unwrap();
            while conn.wants_write() {
                if conn.write_tls(&mut socket).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn a_paused_stream_holds_its_queue_and_frees_its_receive_buffers() {
    let _limit = AbortAfter::new(Duration::from_secs(60));
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (socket, _) = listener.accept().unwrap();
    let config = server_config(
        pki.localhost.chain.clone(),
        pki.localhost.key(),
        &[],
        Versions::Both,
    )
    .unwrap();
    let mut ring = Ring::new(64).unwrap();
    let mut server = Server {
        stream: Some(TlsStream::server(Rc::new(socket), config, Ctx::new(on_tls)).unwrap()),
        paused_with: None,
        settled: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(client, &pki, stop.clone());
    server.stream.as_mut().unwrap().start(&mut ring);
    while server.paused_with.is_none() {
        ring.run(&mut server, RunMode::Once).unwrap();
    }
    // The receive in flight at the pause comes back with more bytes.
    ring.timer(Duration::from_millis(200), Ctx::new(on_settled));
    while !server.settled {
        ring.run(&mut server, RunMode::Once).unwrap();
    }
    let queued = server.stream.as_ref().unwrap().queued();
    let with_stream = LIVE.load(Ordering::Relaxed);
    let stream = server.stream.take().unwrap();
    drop(stream);
    let held = with_stream - LIVE.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    drop(ring);
    flooder.join().unwrap();
    // The records queued (in vectors grown by doubling, so up to twice
    // their length; often none by now, the kernel's socket buffers having
    // taken them), the session's own state and a receive buffer of the
    // size asked for, holding the start of a record. Before, the busy
    // stream's receive buffer and spare vectors stayed: over 290 KiB.
    let bound = 2 * queued as isize + 64 * 1024;
    assert!(
        held <= bound,
        "a paused stream holds {held} bytes with {queued} queued (paused with {:?}); at most {bound} expected",
        server.paused_with
    );
}
