//! The seed's example: a writer that writes the same bytes to two fds,
//! re-submitting partial writes, with one callback that matches on its
//! message enum. Both writes share one buffer (`Rc<[u8]>`), so the bytes are
//! not copied per fd.
//!
//! Run: `cargo run --example multiwriter` — writes to standard output and a
//! temporary file, then shows that the file got the same bytes.

use std::io;
use std::mem;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use ouro::{Buf, Completion, Ctx, IntoBuf, Offset, Outcome, Ring, RunMode};

#[path = "support/cli.rs"]
pub mod cli;
#[path = "support/logging.rs"]
mod logging;

ouro::messages! {
    /// Which of the two fds a write was for.
    pub enum Msg { Fd1, Fd2 }
}

/// Writes everything given to it to two fds.
pub struct MultiWriter {
    /// Shared with the writes in flight, which keep them open.
    fds: [Rc<OwnedFd>; 2],
    /// The bytes being flushed, shared by the writes to both fds.
    flushing: Rc<[u8]>,
    /// How much of `flushing` each fd has taken.
    written: [usize; 2],
    /// Bytes written since the current flush began.
    queued: Vec<u8>,
}

impl MultiWriter {
    /// A writer to `fd1` and `fd2`.
    pub fn new(fd1: OwnedFd, fd2: OwnedFd) -> MultiWriter {
        MultiWriter {
            fds: [Rc::new(fd1), Rc::new(fd2)],
            flushing: Rc::from(&[][..]),
            written: [0, 0],
            queued: Vec::new(),
        }
    }

    /// Queues bytes for the next flush.
    pub fn write(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
    }

    /// How many bytes each fd has received so far in the current flush.
    pub fn written(&self) -> [usize; 2] {
        self.written
    }

    /// Whether both fds have everything written so far.
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty() && !self.is_flushing()
    }

    fn is_flushing(&self) -> bool {
        self.written != [self.flushing.len(); 2]
    }

    /// Starts writing the queued bytes to both fds. A flush already under
    /// way takes the new bytes along when it is done.
    pub fn flush<S: AsMut<MultiWriter>>(&mut self, ring: &mut Ring<S>) {
        if self.is_flushing() || self.queued.is_empty() {
            return;
        }
        self.flushing = Rc::from(mem::take(&mut self.queued));
        self.written = [0, 0];
        for msg in [Msg::Fd1, Msg::Fd2] {
            self.submit(ring, msg, self.flushing.clone());
        }
    }

    fn submit<S: AsMut<MultiWriter>>(&self, ring: &mut Ring<S>, msg: Msg, buf: impl IntoBuf) {
        let ctx = Ctx::new(MultiWriter::on_completion::<S>).msg(msg);
        ring.write(&self.fds[msg as usize], buf, Offset::Current, ctx);
    }

    /// The one callback for both fds: the message says which one.
    fn on_completion<S: AsMut<MultiWriter>>(
        state: &mut S,
        ring: &mut Ring<S>,
        c: Completion,
    ) -> io::Result<()> {
        let this = state.as_mut();
        let msg: Msg = c.message()?;
        let Outcome::Write(result, mut buf) = c.outcome else {
            return Err(io::Error::other(
                "MultiWriter got a completion that is not a write",
            ));
        };
        let n = result?;
        this.written[msg as usize] += n;
        buf.consume(n);
        if !buf.is_empty() {
            // A partial write: only this fd goes again, with the rest.
            this.submit(ring, msg, buf);
            return Ok(());
        }
        drop::<Buf>(buf);
        if !this.is_flushing() {
            this.flush(ring);
        }
        Ok(())
    }
}

/// The program's state: here just the writer.
pub struct App {
    writer: MultiWriter,
}

impl AsMut<MultiWriter> for App {
    fn as_mut(&mut self) -> &mut MultiWriter {
        &mut self.writer
    }
}

/// Writes `chunks` to both fds through `ring`, returning when both have
/// all of them; how many bytes each fd took.
pub fn run(
    ring: &mut Ring<App>,
    fd1: OwnedFd,
    fd2: OwnedFd,
    chunks: &[&[u8]],
) -> io::Result<[usize; 2]> {
    let mut app = App {
        writer: MultiWriter::new(fd1, fd2),
    };
    for chunk in chunks {
        app.writer.write(chunk);
    }
    app.writer.flush(ring);
    ring.run(&mut app, RunMode::UntilDone)?;
    Ok(app.writer.written())
}

const USAGE: &str = "usage: multiwriter   (no arguments: it writes to stdout and a temporary file)";

/// What `main` does, given the command line's arguments (after the
/// program's name), of which it takes none.
pub fn main_with(args: impl Iterator<Item = String>) -> io::Result<()> {
    let mut args = cli::Args::new(args, USAGE);
    if let Some(arg) = args.next_arg()? {
        return Err(args.unexpected(&arg));
    }
    logging::init();
    let fd1 = io::stdout().as_fd().try_clone_to_owned()?;
    let path = std::env::temp_dir().join(format!("ouro-multiwriter-{}.txt", std::process::id()));
    let fd2 = OwnedFd::from(std::fs::File::create(&path)?);

    let mut ring = Ring::new(16)?;
    let chunks: [&[u8]; 2] = [b"Hello, world!\n", b"Every byte goes to both fds.\n"];
    let written = run(&mut ring, fd1, fd2, &chunks);
    // Read and removed before the writes' result is looked at: a closed
    // stdout ends the process there (`cli::stdout_failed`), and must not
    // leave the file behind.
    let copy = std::fs::read(&path);
    std::fs::remove_file(&path)?;
    let written = written.map_err(|err| match err.kind() {
        // Only stdout can be a pipe: the other fd is a file.
        io::ErrorKind::BrokenPipe => cli::stdout_failed(err),
        _ => io::Error::new(
            err.kind(),
            format!("writing to stdout and {}: {err}", path.display()),
        ),
    })?;
    let copy = copy?;
    cli::line(format_args!(
        "multiwriter: {} bytes to stdout and {} to {} ({})",
        written[0],
        copy.len(),
        path.display(),
        if copy == chunks.concat() {
            "identical"
        } else {
            "DIFFERENT"
        }
    ))
}

fn main() -> std::process::ExitCode {
    cli::main(USAGE, main_with)
}
