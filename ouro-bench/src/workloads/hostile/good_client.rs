//! The well-behaved client that runs beside every attack: one connection,
//! a request every `PACE`, each answer read whole and checked, each round
//! trip timed. A failed round trip (an error, a wrong answer, no answer
//! within `TIMEOUT`) counts as a failure with its time, and the client
//! connects again.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::target::{read_answer, Server};

/// Time between the good client's requests: paced, not flooding, so that
/// it measures how the server treats an ordinary client.
const PACE: Duration = Duration::from_millis(5);
/// A round trip slower than this has failed.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// What the good client saw.
#[derive(Debug, Default)]
pub struct Served {
    /// Every round trip's time, failed ones included.
    pub latencies: Vec<Duration>,
    /// Round trips that failed.
    pub failures: usize,
    /// Why the first of them failed.
    pub first_failure: Option<String>,
    /// Whether every failed round trip failed by taking too long (no
    /// answer within `TIMEOUT`), not by a wrong answer or a closed
    /// connection.
    pub only_timeouts: bool,
}

impl Served {
    /// The `p`th percentile of the round trips' times (nearest rank).
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.latencies, p)
    }

    /// The slowest round trip.
    pub fn worst(&self) -> Option<Duration> {
        self.latencies.iter().max().copied()
    }
}

/// The `p`th percentile of `samples` by nearest rank: the smallest sample
/// that at least `p` % of them do not exceed.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A good client at work.
pub struct GoodClient {
    stop: Arc<AtomicBool>,
    started: Instant,
    thread: JoinHandle<Served>,
}

impl GoodClient {
    /// Connects to `addr` and makes a first round trip (before the attack:
    /// the good client is an established one), then goes on making them,
    /// expecting `answer` to each request.
    pub fn start(addr: SocketAddr, server: Server, answer: Vec<u8>) -> io::Result<GoodClient> {
        let mut stream = connect(addr)?;
        round_trip(&mut stream, server, &answer)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("good client".into())
            .spawn(move || round_trips(stream, addr, server, &answer, &stopping))?;
        Ok(GoodClient {
            stop,
            started: Instant::now(),
            thread,
        })
    }

    /// Stops it once it has run at least `at_least`; what it saw.
    pub fn finish(self, at_least: Duration) -> Served {
        if let Some(rest) = at_least.checked_sub(self.started.elapsed()) {
            std::thread::sleep(rest);
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| Served {
            failures: 1,
            first_failure: Some("the good client panicked".into()),
            ..Served::default()
        })
    }
}

fn round_trips(
    open: TcpStream,
    addr: SocketAddr,
    server: Server,
    answer: &[u8],
    stop: &AtomicBool,
) -> Served {
    let mut served = Served {
        only_timeouts: true,
        ..Served::default()
    };
    let mut stream = Some(open);
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let result = match stream.take() {
            Some(open) => Ok(open),
            None => connect(addr),
        }
        .and_then(|mut open| {
            round_trip(&mut open, server, answer)?;
            Ok(open)
        });
        served.latencies.push(start.elapsed());
        match result {
            Ok(open) => stream = Some(open),
            Err(e) => {
                served.failures += 1;
                served.only_timeouts &= is_timeout(&e);
                served.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        std::thread::sleep(PACE);
    }
    served
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn round_trip(stream: &mut TcpStream, server: Server, answer: &[u8]) -> io::Result<()> {
    stream.write_all(server.request())?;
    let got = read_answer(stream, server)?;
    if got != answer {
        return Err(io::Error::other(format!(
            "wrong answer: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(80)])
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples = ms(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&samples, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 99.0), None);
    }

    #[test]
    fn one_slow_round_trip_in_a_hundred_is_under_p99_but_two_are_not() {
        let mut samples = ms(&[1; 99]);
        samples.push(Duration::from_millis(500));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(1)));
        samples[0] = Duration::from_millis(400);
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(400)));
    }
}
