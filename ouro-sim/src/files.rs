//! The files scenario: a writer appends checksummed records to log files
//! and fsyncs them, noting in a ledger kept outside its ring how many
//! records of each log it was told are durable. Its host crashes at seeded
//! times (the ring dropped with operations in flight, unsynced data lost
//! or torn); each restart first reads every log back and checks that all
//! records acknowledged durable survived intact, that nothing claims to be
//! a record that was never written, and that whatever follows the intact
//! records (a torn tail) is caught by the checksum; then it cuts the tail
//! off, syncs, and goes on writing.

use std::io;
use std::time::Duration;

use ouro::fs::OpenOptions;
use ouro::sim::{Config, World};
use ouro::{Completion, Ctx, Offset, Outcome, Ring, RingFd};

use crate::Load;

const DIR: &str = "/logs";
/// Records each log gets per round of the load.
const RECORDS_PER_ROUND: u64 = 8;
/// The longest payload of a record.
const MOST_PAYLOAD: usize = 300;
/// Record header: payload length (u32) and sequence number (u64).
const HEADER: usize = 12;
/// Record trailer: the checksum (u64).
const TRAILER: usize = 8;
const READ_SIZE: usize = 4096;
const RETRY_PAUSE: Duration = Duration::from_millis(2);
/// The host crashes at a seeded time below this after each start.
const CRASH_MOST_NS: u64 = 30_000_000;
/// Virtual time, with faults off, in which the writer must finish.
const LIVENESS_BOUND: Duration = Duration::from_secs(10);

ouro::messages! {
    enum Msg { Mkdir, Opened, Read, Truncated, Synced, Wrote, Retry, Closed }
}

/// What the writer was told, kept outside its ring so that it survives
/// the crashes.
#[derive(Clone, Debug, Default)]
struct Ledger {
    /// By log: records acknowledged durable (by a successful fsync).
    durable: Vec<u64>,
    /// By log: records whose write was ever started.
    attempted: Vec<u64>,
}

/// What a log waits to do again after a pause.
enum Again {
    Write(Vec<u8>),
    /// Write again from the last durable record.
    Rewrite,
    /// Ask for the fsync again.
    Sync,
}

#[derive(Default)]
struct Log {
    fd: Option<RingFd>,
    /// The file as read back at the start.
    contents: Vec<u8>,
    /// Intact records in the file, as far as this start knows.
    records: u64,
    /// Their length in bytes.
    end: u64,
    since_sync: u64,
    /// Records the fsync in flight covers.
    syncing: u64,
    again: Option<Again>,
    done: bool,
}

/// The writer on one start of its host (or, `checking`, the last start's
/// reader, which only checks the logs).
pub struct Writer {
    world: World,
    logs: Vec<Log>,
    ledger: Ledger,
    target: u64,
    sync_every: u64,
    checking: bool,
    /// On a failed fsync, ask again instead of writing again (the bug
    /// of [`run_retrying_fsync`]).
    retry_fsync: bool,
}

impl Writer {
    fn start(
        world: &World,
        ledger: Ledger,
        load: Load,
        (checking, retry_fsync): (bool, bool),
    ) -> (Ring<Writer>, Writer) {
        let mut ring = Ring::simulated(world);
        ring.mkdir(DIR, 0o755, ctx(Msg::Mkdir, 0));
        let writer = Writer {
            world: world.clone(),
            logs: ledger.durable.iter().map(|_| Log::default()).collect(),
            ledger,
            target: u64::from(load.rounds) * RECORDS_PER_ROUND,
            sync_every: 1 + world.seeded("files/sync_every") % 4,
            checking,
            retry_fsync,
        };
        (ring, writer)
    }

    fn on_completion(&mut self, ring: &mut Ring<Writer>, c: Completion) -> io::Result<()> {
        let (msg, key, outcome): (Msg, u64, Outcome) = c.into_parts()?;
        let k = key as usize;
        match (msg, outcome) {
            (Msg::Mkdir, Outcome::Mkdir(res)) => {
                if let Err(err) = res {
                    if err.kind() != io::ErrorKind::AlreadyExists {
                        return Err(err);
                    }
                }
                let options = OpenOptions::new().read(true).write(!self.checking);
                let options = options.create(!self.checking);
                for log in 0..self.logs.len() {
                    ring.open(log_path(log), &options, ctx(Msg::Opened, log as u64));
                }
            }
            (Msg::Opened, Outcome::Open(fd)) => {
                let fd = ring.register_fd(fd?);
                self.logs[k].fd = Some(fd);
                read(ring, fd, key, 0, Vec::with_capacity(READ_SIZE));
            }
            (Msg::Read, Outcome::Read(n, buf)) => {
                let log = &mut self.logs[k];
                if n? == 0 {
                    return self.recovered(ring, k);
                }
                log.contents.extend_from_slice(&buf);
                let mut buf = buf.into_vec();
                buf.clear();
                read(ring, fd_of(log)?, key, log.contents.len() as u64, buf);
            }
            (Msg::Truncated, Outcome::Ftruncate(res)) => {
                res?;
                self.sync(ring, k)?;
            }
            (Msg::Synced, Outcome::Fsync(Ok(()))) => {
                let log = &mut self.logs[k];
                self.ledger.durable[k] = log.syncing;
                log.since_sync = 0;
                if log.records == self.target {
                    log.done = true;
                } else {
                    self.write_next(ring, k)?;
                }
            }
            // EIO or ENOSPC: as on Linux, the data written since the last
            // successful fsync may never reach the disk, and the next fsync
            // would not say so. The writer writes it all again, after a
            // pause.
            (Msg::Synced, Outcome::Fsync(Err(_))) if self.retry_fsync => {
                self.pause(ring, k, Again::Sync)
            }
            (Msg::Synced, Outcome::Fsync(Err(_))) => {
                let durable = self.ledger.durable[k];
                let log = &mut self.logs[k];
                (log.records, log.end) = (durable, length_of(k, durable));
                log.since_sync = 0;
                self.pause(ring, k, Again::Rewrite);
            }
            (Msg::Wrote, Outcome::Write(Ok(n), buf)) => {
                let log = &mut self.logs[k];
                log.end += n as u64;
                if n < buf.len() {
                    let mut rest = buf.into_vec();
                    rest.drain(..n);
                    write(ring, fd_of(log)?, key, log.end, rest);
                } else {
                    log.records += 1;
                    log.since_sync += 1;
                    if log.since_sync >= self.sync_every || log.records == self.target {
                        self.sync(ring, k)?;
                    } else {
                        self.write_next(ring, k)?;
                    }
                }
            }
            (Msg::Wrote, Outcome::Write(Err(_), buf)) => {
                self.pause(ring, k, Again::Write(buf.into_vec()))
            }
            (Msg::Retry, Outcome::Timer(_)) => match self.logs[k].again.take() {
                Some(Again::Write(rest)) => {
                    let log = &self.logs[k];
                    write(ring, fd_of(log)?, key, log.end, rest);
                }
                Some(Again::Rewrite) if self.logs[k].records == self.target => {
                    self.sync(ring, k)?
                }
                Some(Again::Rewrite) => self.write_next(ring, k)?,
                Some(Again::Sync) => self.sync(ring, k)?,
                None => {}
            },
            (Msg::Closed, Outcome::Close(res)) => res?,
            (msg, outcome) => {
                return Err(io::Error::other(format!(
                    "files: log {k}: {msg:?} ended with {outcome:?}"
                )))
            }
        }
        Ok(())
    }

    /// Log `k` was read back: checks it against the ledger, then (unless
    /// only checking) cuts off what follows the intact records and syncs.
    fn recovered(&mut self, ring: &mut Ring<Writer>, k: usize) -> io::Result<()> {
        let log = &mut self.logs[k];
        let contents = std::mem::take(&mut log.contents);
        let (records, end) = intact(k, &contents);
        let (durable, attempted) = (self.ledger.durable[k], self.ledger.attempted[k]);
        if records < durable {
            self.world.report(format!(
                "files: log {k} holds {records} intact records after a restart, but {durable} \
                 were acknowledged durable (bytes {end}.. of {} are not a record)",
                contents.len()
            ));
        }
        if records > attempted {
            self.world.report(format!(
                "files: log {k} holds {records} intact records, but only {attempted} were \
                 ever written"
            ));
        }
        let fd = fd_of(log)?;
        (log.records, log.end) = (records, end as u64);
        if self.checking {
            if records != self.target || end != contents.len() {
                self.world.report(format!(
                    "files: log {k} should hold exactly its {} records, all synced, but holds \
                     {records} intact records in {end} of its {} bytes",
                    self.target,
                    contents.len()
                ));
            }
            log.done = true;
            log.fd = None;
            ring.close(fd, ctx(Msg::Closed, k as u64));
        } else if end < contents.len() {
            ring.ftruncate(fd, end as u64, ctx(Msg::Truncated, k as u64));
        } else {
            self.sync(ring, k)?;
        }
        Ok(())
    }

    fn sync(&mut self, ring: &mut Ring<Writer>, k: usize) -> io::Result<()> {
        let log = &mut self.logs[k];
        log.syncing = log.records;
        ring.fsync(fd_of(log)?, ctx(Msg::Synced, k as u64));
        Ok(())
    }

    fn write_next(&mut self, ring: &mut Ring<Writer>, k: usize) -> io::Result<()> {
        let log = &self.logs[k];
        let seq = log.records;
        let attempted = &mut self.ledger.attempted[k];
        *attempted = (*attempted).max(seq + 1);
        write(ring, fd_of(log)?, k as u64, log.end, record(k, seq));
        Ok(())
    }

    fn pause(&mut self, ring: &mut Ring<Writer>, k: usize, again: Again) {
        self.logs[k].again = Some(again);
        ring.timer(RETRY_PAUSE, ctx(Msg::Retry, k as u64));
    }

    /// Closes every log (at the end).
    fn stop(&mut self, ring: &mut Ring<Writer>) {
        for (k, log) in self.logs.iter_mut().enumerate() {
            if let Some(fd) = log.fd.take() {
                ring.close(fd, ctx(Msg::Closed, k as u64));
            }
        }
    }

    /// The logs not finished, each with what it has done.
    fn unfinished(&self) -> Vec<String> {
        let durable = &self.ledger.durable;
        (self.logs.iter().enumerate())
            .filter(|(_, log)| !log.done)
            .map(|(k, log)| {
                format!(
                    "log {k}: {} of {} records written, {} durable",
                    log.records, self.target, durable[k]
                )
            })
            .collect()
    }
}

fn ctx(msg: Msg, key: u64) -> Ctx<Writer> {
    Ctx::new(Writer::on_completion).msg(msg).key(key)
}

fn fd_of(log: &Log) -> io::Result<RingFd> {
    log.fd
        .ok_or_else(|| io::Error::other("files: a log without an fd"))
}

fn read(ring: &mut Ring<Writer>, fd: RingFd, key: u64, at: u64, buf: Vec<u8>) {
    ring.read(fd, buf, Offset::At(at), ctx(Msg::Read, key));
}

fn write(ring: &mut Ring<Writer>, fd: RingFd, key: u64, at: u64, bytes: Vec<u8>) {
    ring.write(fd, bytes, Offset::At(at), ctx(Msg::Wrote, key));
}

fn log_path(log: usize) -> String {
    format!("{DIR}/log{log}")
}

/// FNV-1a over `bytes`, from `hash`.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What record `seq` of log `log` is made from: its payload's length and
/// bytes depend on both alone, so a record is the same whichever start
/// wrote it.
fn record_seed(log: usize, seq: u64) -> (u64, usize) {
    let seed = fnv(0xcbf2_9ce4_8422_2325, &[log as u8]) ^ seq.wrapping_mul(0x9e37_79b9);
    (seed, 1 + (seed % MOST_PAYLOAD as u64) as usize)
}

/// The bytes the first `records` records of log `log` take.
fn length_of(log: usize, records: u64) -> u64 {
    (0..records)
        .map(|seq| (HEADER + record_seed(log, seq).1 + TRAILER) as u64)
        .sum()
}

/// Record `seq` of log `log`.
fn record(log: usize, seq: u64) -> Vec<u8> {
    let (seed, len) = record_seed(log, seq);
    let mut bytes = Vec::with_capacity(HEADER + len + TRAILER);
    bytes.extend_from_slice(&(len as u32).to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend((0..len).map(|i| (seed as usize).wrapping_add(i * 7) as u8));
    let sum = checksum(log, &bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

fn checksum(log: usize, bytes: &[u8]) -> u64 {
    fnv(fnv(0xcbf2_9ce4_8422_2325, &[log as u8, 0xa5]), bytes)
}

/// How many records at the start of `contents` are log `log`'s records
/// 0, 1, … intact, and how many bytes they take.
fn intact(log: usize, contents: &[u8]) -> (u64, usize) {
    let (mut records, mut at) = (0, 0);
    while let Some(header) = contents.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        if len == 0 || len > MOST_PAYLOAD || seq != records {
            break;
        }
        let size = HEADER + len + TRAILER;
        let Some(whole) = contents.get(at..at + size) else {
            break;
        };
        let (body, sum) = whole.split_at(HEADER + len);
        let sum = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
        if sum != checksum(log, body) || whole != record(log, seq) {
            break;
        }
        records += 1;
        at += size;
    }
    (records, at)
}

/// Runs the files scenario in `world`: `load.clients` logs of
/// `8 × load.rounds` records each; `load.rounds` starts of the writer, each
/// ended by a crash at a seeded time under 30 ms of virtual time (with the
/// world's faults on); then a start with the faults off in which the
/// writer must finish every log within 10 s of virtual time; then, after
/// one more crash, a reader that checks each log holds exactly its
/// records. Violations go to the world.
pub fn run(world: &World, load: Load) -> io::Result<()> {
    run_writer(world, load, false)
}

/// [`run`] with a writer that, when an fsync fails, asks for it again
/// instead of writing the records since the last durable one again: the
/// second fsync succeeds, but as on Linux the data the first one failed
/// to keep is lost at the next crash. The checks find it.
pub fn run_retrying_fsync(world: &World, load: Load) -> io::Result<()> {
    run_writer(world, load, true)
}

fn run_writer(world: &World, load: Load, retry_fsync: bool) -> io::Result<()> {
    let logs = load.clients.max(1) as usize;
    let mut ledger = Ledger {
        durable: vec![0; logs],
        attempted: vec![0; logs],
    };
    for round in 0..load.rounds {
        let mut writer = Writer::start(world, ledger, load, (false, retry_fsync));
        let at = world.seeded(&format!("files/crash/{round}")) % CRASH_MOST_NS;
        world.run(&mut [&mut writer], Duration::from_nanos(at))?;
        ledger = crash(world, writer);
    }
    world.set_config(Config::calm());
    let mut writer = Writer::start(world, ledger, load, (false, retry_fsync));
    world.run(&mut [&mut writer], LIVENESS_BOUND)?;
    let pending = writer.1.unfinished();
    if !pending.is_empty() {
        world.report(format!(
            "liveness: the writer had not finished {LIVENESS_BOUND:?} after the faults \
             stopped: {}",
            pending.join("; ")
        ));
    }
    let (ring, state) = &mut writer;
    state.stop(ring);
    world.run(&mut [&mut writer], LIVENESS_BOUND)?;
    ledger = crash(world, writer);
    let mut reader = Writer::start(world, ledger, load, (true, retry_fsync));
    world.run(&mut [&mut reader], LIVENESS_BOUND)?;
    let unread = reader.1.unfinished();
    if !unread.is_empty() {
        world.report(format!(
            "files: the reader did not check every log: {}",
            unread.join("; ")
        ));
    }
    Ok(())
}

/// Crashes the writer's host; the ledger is what outlives it.
fn crash(world: &World, (ring, writer): (Ring<Writer>, Writer)) -> Ledger {
    world.crash(ring);
    writer.ledger
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_back_and_a_torn_or_foreign_one_ends_the_intact_run() {
        let mut log: Vec<u8> = (0..5).flat_map(|seq| record(3, seq)).collect();
        let whole = log.len();
        assert_eq!(intact(3, &log), (5, whole));
        assert_eq!(
            intact(4, &log).0,
            0,
            "another log's records pass as this one's"
        );
        log.extend_from_slice(&record(3, 5)[..10]);
        assert_eq!(intact(3, &log), (5, whole));
        let mut flipped = log.clone();
        flipped[whole - 3] ^= 1;
        assert_eq!(intact(3, &flipped).0, 4);
        assert_eq!(intact(3, &[0; 64]), (0, 0));
    }
}
