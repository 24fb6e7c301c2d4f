//! Where a scenario runs: a ring on the simulator (faults off) or on a
//! real backend over loopback, and the few things that differ between
//! them (the addresses sockets use). A scenario starts operations, waits
//! for them and writes what each ended with into its transcript.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use ouro::sim::{Config, World};
use ouro::{BackendKind, Completion, Ctx, Outcome, Ring, RingFd, RunMode, Task};

/// Completions not yet claimed by the scenario, by key.
pub type Done = Vec<(u64, Outcome)>;

/// What one step of a scenario came to, with what may differ between
/// runs (fd numbers, ports) left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Succeeded with nothing to report.
    Ok,
    /// Made a new fd (a socket, an accepted connection).
    Fd,
    /// Moved this many bytes.
    Bytes(usize),
    /// A fact the scenario checked (bytes in order, an order of events).
    Fact(String),
    /// Failed with this error (its name).
    Err(String),
}

/// How the ring of a run is made.
#[derive(Clone, Copy, Debug)]
pub enum Leg {
    /// The simulator, faults off (its results are deterministic).
    Simulated,
    /// A real backend, on loopback.
    Real(BackendKind),
}

/// A scenario's ring, its pending completions and its transcript.
pub struct Env {
    pub ring: Ring<Done>,
    done: Done,
    next_key: u64,
    world: Option<World>,
    leg: Leg,
    /// Rings made besides the scenario's own (kept until the end).
    others: Vec<Ring<Done>>,
    pub transcript: Vec<(&'static str, Step)>,
}

impl Env {
    /// A new ring on `leg`.
    pub fn new(leg: Leg) -> Env {
        let world = match leg {
            Leg::Simulated => Some(World::with_config(1, Config::calm())),
            Leg::Real(_) => None,
        };
        Env {
            ring: make_ring(world.as_ref(), leg),
            done: Vec::new(),
            next_key: 0,
            world,
            leg,
            others: Vec::new(),
            transcript: Vec::new(),
        }
    }

    /// Another ring of the same kind (of the same world, if simulated).
    pub fn another_ring(&self) -> Ring<Done> {
        make_ring(self.world.as_ref(), self.leg)
    }

    /// Whether the ring is the simulator's (whose files are its own).
    pub fn simulated(&self) -> bool {
        self.world.is_some()
    }

    /// Keeps `ring` until the scenario ends.
    pub fn keep(&mut self, ring: Ring<Done>) {
        self.others.push(ring);
    }

    /// The address a listener binds to: any port of the world's address,
    /// or a free port of loopback.
    pub fn listen_addr(&self) -> SocketAddr {
        match self.leg {
            Leg::Simulated => SocketAddr::from(([10, 0, 0, 1], 7000)),
            Leg::Real(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// The address `listener`, bound to `asked`, listens on: the port the
    /// kernel picked on loopback (the simulator's listener has the port it
    /// asked for, and its fds are not sockets the process could ask).
    pub fn bound_addr(&self, listener: RingFd, asked: SocketAddr) -> SocketAddr {
        if self.world.is_some() {
            return asked;
        }
        let fd = self.ring.fd(listener).expect("the listener's fd");
        let addr = socket2::SockRef::from(&fd)
            .local_addr()
            .expect("the listener's address");
        addr.as_socket().expect("an IP listener")
    }

    /// An address nobody listens on: a port of loopback just given back,
    /// or a port of the world's address nothing was bound to.
    pub fn refused_addr(&self) -> SocketAddr {
        match self.leg {
            Leg::Simulated => SocketAddr::from(([10, 0, 0, 1], 7999)),
            Leg::Real(_) => {
                let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
                taken.local_addr().expect("its address")
            }
        }
    }

    /// Starts an operation whose completion [`Env::wait`] then returns.
    pub fn start(&mut self, op: impl FnOnce(&mut Ring<Done>, Ctx<Done>) -> Task) -> (u64, Task) {
        self.next_key += 1;
        let key = self.next_key;
        let task = op(&mut self.ring, Ctx::new(record).key(key));
        (key, task)
    }

    /// The completion of the operation `key`, once it has come.
    pub fn wait(&mut self, key: u64) -> Outcome {
        loop {
            if let Some(outcome) = self.take(key) {
                return outcome;
            }
            assert!(
                self.ring.live_tasks() > 0,
                "operation {key} will never complete: nothing is in flight"
            );
            self.turn();
        }
    }

    /// The completion of the operation `key`, if it has come.
    pub fn take(&mut self, key: u64) -> Option<Outcome> {
        let i = self.done.iter().position(|&(k, _)| k == key)?;
        Some(self.done.remove(i).1)
    }

    /// Keys of the completions delivered so far, in order of delivery.
    pub fn delivered(&self) -> Vec<u64> {
        self.done.iter().map(|&(k, _)| k).collect()
    }

    /// One turn of the ring: waits for at least one completion.
    pub fn turn(&mut self) {
        self.ring
            .run(&mut self.done, RunMode::Once)
            .expect("running the ring");
    }

    /// Starts an operation and waits for it.
    pub fn op(&mut self, op: impl FnOnce(&mut Ring<Done>, Ctx<Done>) -> Task) -> Outcome {
        let (key, _) = self.start(op);
        self.wait(key)
    }

    /// Writes a step into the transcript.
    pub fn note(&mut self, step: &'static str, what: Step) {
        self.transcript.push((step, what));
    }

    /// Writes an outcome into the transcript, normalized; returns the fd
    /// it made (registered with the ring), if any.
    pub fn note_outcome(&mut self, step: &'static str, outcome: Outcome) -> Option<RingFd> {
        let (what, fd) = normalize(outcome);
        self.note(step, what);
        fd.map(|fd| self.ring.register_fd(fd))
    }

    /// Ends the run: drops the rings and, on the simulator, runs the
    /// world's end checks (nothing in flight, no socket left open).
    pub fn finish(self) -> Vec<(&'static str, Step)> {
        let Env {
            ring,
            others,
            world,
            transcript,
            ..
        } = self;
        drop(ring);
        drop(others);
        if let Some(world) = world {
            let violations = world.finish();
            assert!(violations.is_empty(), "simulator checks: {violations:?}");
        }
        transcript
    }
}

fn make_ring(world: Option<&World>, leg: Leg) -> Ring<Done> {
    match (world, leg) {
        (Some(world), _) => Ring::simulated(world),
        (None, Leg::Real(kind)) => Ring::builder()
            .backend(kind)
            .entries(64)
            .build()
            .expect("setting up the backend"),
        (None, Leg::Simulated) => panic!("a simulated leg has a world"),
    }
}

/// The callback of every operation and message: keeps the completion.
pub fn record(done: &mut Done, _: &mut Ring<Done>, c: Completion) -> io::Result<()> {
    done.push((c.key(), c.outcome));
    Ok(())
}

/// An outcome as a step, and the fd it made, if any.
fn normalize(outcome: Outcome) -> (Step, Option<std::os::fd::OwnedFd>) {
    let unit = |res: io::Result<()>| match res {
        Ok(()) => Step::Ok,
        Err(err) => error(&err),
    };
    match outcome {
        Outcome::Socket(Ok(fd)) | Outcome::Accept(Ok((fd, _))) => (Step::Fd, Some(fd)),
        Outcome::Socket(Err(err)) | Outcome::Accept(Err(err)) => (error(&err), None),
        Outcome::Send(res, _) | Outcome::Recv(res, _) | Outcome::SendTo(res, _) => match res {
            Ok(n) => (Step::Bytes(n), None),
            Err(err) => (error(&err), None),
        },
        Outcome::SendMsg(res, _) => match res {
            Ok(n) => (Step::Bytes(n), None),
            Err(err) => (error(&err), None),
        },
        Outcome::RecvFrom(Err(err), _) => (error(&err), None),
        Outcome::Noop(res)
        | Outcome::Timer(res)
        | Outcome::Cancel(res)
        | Outcome::Connect(res)
        | Outcome::Bind(res)
        | Outcome::Listen(res)
        | Outcome::Close(res)
        | Outcome::Shutdown(res) => (unit(res), None),
        Outcome::MsgRing(res, _) => (unit(res), None),
        other => panic!("no conformance scenario starts {other:?}"),
    }
}

/// An error as a step: the name of its code.
pub fn error(err: &io::Error) -> Step {
    Step::Err(errno_name(err.raw_os_error()).unwrap_or_else(|| format!("{:?}", err.kind())))
}

fn errno_name(code: Option<i32>) -> Option<String> {
    let name = match code? {
        libc::EBADF => "EBADF",
        libc::EPIPE => "EPIPE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECANCELED => "ECANCELED",
        libc::ETIME => "ETIME",
        libc::ENOTCONN => "ENOTCONN",
        libc::EISCONN => "EISCONN",
        libc::EINVAL => "EINVAL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        code => return Some(format!("errno {code}")),
    };
    Some(name.to_string())
}

/// How long a real leg may take before it counts as hung.
pub const LEG_LIMIT: Duration = Duration::from_secs(60);
