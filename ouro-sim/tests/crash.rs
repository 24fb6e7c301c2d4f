//! Crashes of a simulated host: what was synced survives whole, what was
//! not is lost but for a prefix of its blocks (the last possibly torn),
//! operations in flight vanish with the ring, and the files' old fds are
//! `EBADF` to the restarted ring.

mod common;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use common::socket;
use ouro::fs::OpenOptions;
use ouro::net::Type;
use ouro::sim::{Config, Stop, World};
use ouro::{Completion, Ctx, Offset, Outcome, Ring};

type Got = Vec<Completion>;

fn collect(got: &mut Got, _: &mut Ring<Got>, c: Completion) -> io::Result<()> {
    got.push(c);
    Ok(())
}

/// Runs `ring` until nothing is scheduled; what completed, in order.
fn settle(ring: Ring<Got>, world: &World) -> (Ring<Got>, Got) {
    let mut node = (ring, Vec::new());
    world
        .run(&mut [&mut node], Duration::from_secs(60))
        .unwrap();
    node
}

fn open(world: &World, path: &str) -> (Ring<Got>, Rc<OwnedFd>) {
    let mut ring = Ring::simulated(world);
    let options = OpenOptions::new().read(true).write(true).create(true);
    ring.open(path, &options, Ctx::new(collect));
    let (ring, mut got) = settle(ring, world);
    match got.remove(0).outcome {
        Outcome::Open(Ok(fd)) => (ring, Rc::new(fd)),
        other => panic!("expected an open file, got {other:?}"),
    }
}

fn write(ring: &mut Ring<Got>, fd: &Rc<OwnedFd>, bytes: Vec<u8>, at: u64) {
    ring.write(fd.clone(), bytes, Offset::At(at), Ctx::new(collect));
}

/// The file's whole content, read through a new ring.
fn contents(world: &World, path: &str) -> Vec<u8> {
    let (mut ring, fd) = open(world, path);
    ring.read(
        fd.clone(),
        Vec::with_capacity(1 << 16),
        Offset::At(0),
        Ctx::new(collect),
    );
    let (mut ring, mut got) = settle(ring, world);
    ring.close(Rc::try_unwrap(fd).unwrap(), Ctx::new(collect));
    settle(ring, world);
    match got.remove(0).outcome {
        Outcome::Read(Ok(_), buf) => buf.into_vec(),
        other => panic!("expected a read, got {other:?}"),
    }
}

const SYNCED: usize = 3 * 4096 + 100;
const UNSYNCED: usize = 3 * 4096;

/// Writes a synced part and an unsynced part after it, crashes with a
/// write and an fsync in flight, and returns what the file holds after.
fn crash_after_writes(seed: u64) -> Vec<u8> {
    let world = World::with_config(seed, Config::calm());
    let (mut ring, fd) = open(&world, "/log");
    write(&mut ring, &fd, vec![1; SYNCED], 0);
    let (mut ring, _) = settle(ring, &world);
    ring.fsync(fd.clone(), Ctx::new(collect));
    let (mut ring, got) = settle(ring, &world);
    assert!(matches!(got[0].outcome, Outcome::Fsync(Ok(()))));
    write(&mut ring, &fd, vec![2; UNSYNCED], SYNCED as u64);
    let (mut ring, _) = settle(ring, &world);
    // Started, and in flight when the host goes down: neither completes
    // (the write reached the page cache, unsynced).
    write(&mut ring, &fd, vec![3; 10], (SYNCED + UNSYNCED) as u64);
    ring.read(
        fd.clone(),
        Vec::with_capacity(64),
        Offset::At(0),
        Ctx::new(collect),
    );
    let mut node = (ring, Vec::new());
    world.run(&mut [&mut node], Duration::ZERO).unwrap();
    let (ring, got) = node;
    assert!(got.is_empty(), "{got:?}");
    world.crash(ring);
    // The old fd names a file of the host before the crash.
    let mut restarted = Ring::simulated(&world);
    restarted.fsync(fd.clone(), Ctx::new(collect));
    let (restarted, got) = settle(restarted, &world);
    match &got[0].outcome {
        Outcome::Fsync(Err(err)) => assert_eq!(err.raw_os_error(), Some(libc::EBADF)),
        other => panic!("expected EBADF, got {other:?}"),
    }
    drop(restarted);
    drop(fd);
    let after = contents(&world, "/log");
    assert_eq!(world.finish(), Vec::<String>::new());
    after
}

#[test]
fn synced_data_survives_a_crash_and_unsynced_data_keeps_a_seeded_torn_prefix() {
    let (mut lost, mut all, mut torn) = (0, 0, 0);
    for seed in 0..40 {
        let after = crash_after_writes(seed);
        assert!(after.len() >= SYNCED, "seed {seed}: synced bytes lost");
        assert!(after[..SYNCED].iter().all(|&b| b == 1), "seed {seed}");
        let kept = &after[SYNCED..];
        let mut unsynced = vec![2; UNSYNCED];
        unsynced.extend([3; 10]);
        assert!(unsynced.starts_with(kept), "seed {seed}: not a prefix");
        if kept.len() == unsynced.len() {
            all += 1;
        } else {
            lost += 1;
            torn += usize::from(after.len() != SYNCED && after.len() % 4096 != 0);
        }
    }
    assert!(lost > 0 && all > 0 && torn > 0, "{lost} {all} {torn}");
    assert_eq!(
        crash_after_writes(7),
        crash_after_writes(7),
        "a seed replays its crash"
    );
}

/// Writes a synced part and an unsynced one, has an fsync fail, then
/// (after writing the unsynced part again if `rewrite`) fsyncs with
/// success and crashes: what the file holds after.
fn crash_after_a_failed_fsync(seed: u64, rewrite: bool) -> Vec<u8> {
    let world = World::with_config(seed, Config::calm());
    let (mut ring, fd) = open(&world, "/log");
    write(&mut ring, &fd, vec![1; SYNCED], 0);
    ring.fsync(fd.clone(), Ctx::new(collect));
    let (mut ring, _) = settle(ring, &world);
    write(&mut ring, &fd, vec![2; UNSYNCED], SYNCED as u64);
    let (mut ring, _) = settle(ring, &world);
    world.set_config(Config {
        file_errors: 1.0,
        ..Config::calm()
    });
    ring.fsync(fd.clone(), Ctx::new(collect));
    let (mut ring, got) = settle(ring, &world);
    let failed = match &got[0].outcome {
        Outcome::Fsync(Err(err)) => err.raw_os_error(),
        other => panic!("expected a failed fsync, got {other:?}"),
    };
    assert!(
        matches!(failed, Some(libc::EIO | libc::ENOSPC)),
        "{failed:?}"
    );
    world.set_config(Config::calm());
    if rewrite {
        write(&mut ring, &fd, vec![2; UNSYNCED], SYNCED as u64);
    }
    ring.fsync(fd.clone(), Ctx::new(collect));
    let (ring, got) = settle(ring, &world);
    assert!(matches!(
        got.last().unwrap().outcome,
        Outcome::Fsync(Ok(()))
    ));
    world.crash(ring);
    drop(fd);
    contents(&world, "/log")
}

#[test]
fn a_failed_fsync_forgets_the_pending_data_until_it_is_written_again() {
    for seed in 0..10 {
        // Reads still saw it, and the next fsync succeeded (keeping the
        // length), yet the data is gone: zeroes in its place.
        let after = crash_after_a_failed_fsync(seed, false);
        assert_eq!(after.len(), SYNCED + UNSYNCED, "seed {seed}");
        assert!(after[..SYNCED].iter().all(|&b| b == 1), "seed {seed}");
        assert!(after[SYNCED..].iter().all(|&b| b == 0), "seed {seed}");
        let after = crash_after_a_failed_fsync(seed, true);
        assert_eq!(after.len(), SYNCED + UNSYNCED, "seed {seed}");
        assert!(after[..SYNCED].iter().all(|&b| b == 1), "seed {seed}");
        assert!(after[SYNCED..].iter().all(|&b| b == 2), "seed {seed}");
    }
}

#[test]
fn a_crash_ends_the_connections_in_the_crashed_rings_table_for_their_peers() {
    let server_addr = SocketAddr::from(([10, 0, 0, 1], 7000));
    let world = World::new(3);
    let (listening, connecting) = (socket(&world, Type::STREAM), socket(&world, Type::STREAM));
    let mut server: Ring<Got> = Ring::simulated(&world);
    let listener = server.register_fd(listening);
    server.bind(listener, server_addr, Ctx::new(collect));
    server.listen(listener, 4, Ctx::new(collect));
    server.accept(listener, Ctx::new(collect));
    let mut client: Ring<Got> = Ring::simulated(&world);
    let conn = client.register_fd(connecting);
    client.connect(conn, server_addr, Ctx::new(collect));
    let mut server = (server, Vec::new());
    let mut client = (client, Vec::new());
    world
        .run(&mut [&mut server, &mut client], Duration::from_secs(1))
        .unwrap();
    let (mut server_ring, server_got) = server;
    let accepted = server_got.into_iter().find_map(|c| match c.outcome {
        Outcome::Accept(Ok((fd, _))) => Some(fd),
        _ => None,
    });
    let accepted = accepted.expect("a connection");
    server_ring.register_fd(accepted);
    let (mut client_ring, _) = client;
    client_ring.recv(conn, Vec::with_capacity(64), Ctx::new(collect));
    world.crash(server_ring);
    let (mut client_ring, mut got) = settle(client_ring, &world);
    match got.remove(0).outcome {
        Outcome::Recv(Ok(0), _) => {}
        other => panic!("the peer of a crashed ring's connection must see its end: {other:?}"),
    }
    client_ring.close(conn, Ctx::new(collect));
    settle(client_ring, &world);
    assert_eq!(world.finish(), Vec::<String>::new(), "nothing left open");
}

#[test]
fn running_some_rings_while_another_has_completions_ready_neither_spins_nor_loses_them() {
    let world = World::new(4);
    let mut waiting: Ring<Got> = Ring::simulated(&world);
    waiting.noop(Ctx::new(collect));
    let mut waiting = (waiting, Vec::new());
    // Its no-op is carried out and ready, but the ring is not run again.
    world.run(&mut [&mut waiting], Duration::ZERO).unwrap();
    let mut other: Ring<Got> = Ring::simulated(&world);
    other.timer(Duration::from_millis(5), Ctx::new(collect));
    let mut other = (other, Vec::new());
    let stop = world
        .run(&mut [&mut other], Duration::from_secs(1))
        .unwrap();
    assert_eq!(stop, Stop::Idle);
    assert_eq!(other.1.len(), 1, "the ring that ran got its timer");
    assert!(waiting.1.is_empty());
    world
        .run(&mut [&mut waiting, &mut other], Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        waiting.1.len(),
        1,
        "run again, the first ring gets its completion"
    );
}
