//! The examples' command lines and exits, one convention for all of them:
//!
//! - `--help` (or `-h`) prints the usage on stdout; the status is 0;
//! - a command line the program cannot run with (an unknown argument, a
//!   missing value, a number out of range) prints `error: WHAT` and the
//!   usage on stderr; the status is 2;
//! - a failure prints one line, `error: WHAT`, on stderr; the status is 1;
//! - a stdout whose reader went away (`| head`) ends the program at once,
//!   quietly, with status 0, as it ends `head`, `ls` or `ouro-sim`; any
//!   other failure to write there (a full disk) is a failure naming stdout.
//!
//! Each example's `main_with` returns `io::Result<()>`, so that the tests
//! can run it as `main` does; `--help` and a bad command line travel as
//! errors whose payloads [`status`] recognises.

// Each example uses part of it.
#![allow(dead_code)]

use std::error::Error;
use std::fmt::{self, Display};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::str::FromStr;

use ouro::BackendKind;

/// `--help` was asked for: the usage, for stdout.
#[derive(Debug)]
struct Help(String);

/// The command line cannot be run: what is wrong, and the usage.
#[derive(Debug)]
struct BadCommandLine {
    problem: String,
    usage: String,
}

impl Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Display for BadCommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl Error for Help {}
impl Error for BadCommandLine {}

/// The error that makes [`status`] print `usage` on stdout and return 0.
pub fn help(usage: &str) -> io::Error {
    io::Error::other(Help(usage.to_string()))
}

/// The error that makes [`status`] print `problem` and `usage` on stderr
/// and return 2.
pub fn bad_command_line(usage: &str, problem: impl Display) -> io::Error {
    let bad = BadCommandLine {
        problem: problem.to_string(),
        usage: usage.to_string(),
    };
    io::Error::new(io::ErrorKind::InvalidInput, bad)
}

/// What an example's `main` returns: runs `main_with` on the command
/// line's arguments and exits as the module's documentation says.
pub fn main(
    usage: &str,
    main_with: impl FnOnce(std::vec::IntoIter<String>) -> io::Result<()>,
) -> ExitCode {
    let result = arguments(usage).and_then(|args| main_with(args.into_iter()));
    ExitCode::from(status(result))
}

/// The arguments after the program's name; one that is not UTF-8 is a bad
/// command line (`std::env::args` would panic on it).
fn arguments(usage: &str) -> io::Result<Vec<String>> {
    std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string().map_err(|arg| {
                bad_command_line(usage, format!("{}: not UTF-8", arg.to_string_lossy()))
            })
        })
        .collect()
}

/// Reports how a `main_with` ended, as the module's documentation says,
/// and returns the exit status.
pub fn status(result: io::Result<()>) -> u8 {
    let Err(err) = result else {
        return 0;
    };
    if let Some(Help(usage)) = payload::<Help>(&err) {
        return match line(format_args!("{usage}")) {
            Ok(()) => 0,
            Err(err) => fail(&err),
        };
    }
    if let Some(bad) = payload::<BadCommandLine>(&err) {
        let _ = writeln!(io::stderr().lock(), "error: {}\n{}", bad.problem, bad.usage);
        return 2;
    }
    fail(&err)
}

fn payload<T: Error + 'static>(err: &io::Error) -> Option<&T> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<T>())
}

/// Says on stderr that the program failed; status 1. (A stderr that
/// cannot be written to leaves only the status to say it.)
fn fail(err: &io::Error) -> u8 {
    let _ = writeln!(io::stderr().lock(), "error: {err}");
    1
}

/// Writes `text` and a newline to stdout, at once (also when stdout is a
/// pipe: a reader waits for the line). A closed stdout ends the program
/// (see the module's documentation).
pub fn line(text: fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(stdout_failed)
}

/// Writes `bytes` to stdout, as [`line()`] writes.
pub fn write_all(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_failed)
}

/// The error for a failed write to stdout, which names it; a stdout whose
/// reader went away ends the program here, quietly, with status 0: nobody
/// is left to read what it would say.
pub fn stdout_failed(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    io::Error::new(err.kind(), format!("cannot write to stdout: {err}"))
}

/// Names the address that could not be listened on (`AddrInUse` says
/// nothing of which).
pub fn cannot_listen(addr: impl Display) -> impl FnOnce(io::Error) -> io::Error {
    move |err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
}

/// A command line, read one argument at a time; its errors carry the usage.
pub struct Args<I> {
    args: I,
    usage: String,
}

impl<I: Iterator<Item = String>> Args<I> {
    /// The arguments `args` of a program whose usage is `usage`.
    pub fn new(args: I, usage: &str) -> Args<I> {
        Args {
            args,
            usage: usage.to_string(),
        }
    }

    /// The next argument; `--help` and `-h` end the reading with the usage.
    pub fn next_arg(&mut self) -> io::Result<Option<String>> {
        match self.args.next() {
            Some(arg) if arg == "--help" || arg == "-h" => Err(help(&self.usage)),
            arg => Ok(arg),
        }
    }

    /// All the remaining arguments, for a program that takes no options:
    /// one that looks like an option is an unknown argument.
    pub fn words(&mut self) -> io::Result<Vec<String>> {
        let mut words = Vec::new();
        while let Some(word) = self.next_arg()? {
            if word.starts_with('-') {
                return Err(self.unexpected(&word));
            }
            words.push(word);
        }
        Ok(words)
    }

    /// The value that must follow `flag`.
    pub fn value(&mut self, flag: &str) -> io::Result<String> {
        self.args
            .next()
            .ok_or_else(|| self.bad(format!("{flag} needs a value")))
    }

    /// `flag`'s value, read as a `T` (an address, say).
    pub fn parsed<T: FromStr>(&mut self, flag: &str) -> io::Result<T>
    where
        T::Err: Display,
    {
        let value = self.value(flag)?;
        value
            .parse()
            .map_err(|err| self.bad(format!("{flag} {value}: {err}")))
    }

    /// `flag`'s value: a whole number in `range`.
    pub fn number(&mut self, flag: &str, range: RangeInclusive<usize>) -> io::Result<usize> {
        let value = self.value(flag)?;
        value
            .parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                let (low, high) = range.into_inner();
                self.bad(format!(
                    "{flag} {value}: expected a whole number from {low} to {high}"
                ))
            })
    }

    /// `flag`'s value: `uring` or `poll`.
    pub fn backend(&mut self, flag: &str) -> io::Result<BackendKind> {
        match self.value(flag)?.as_str() {
            "uring" => Ok(BackendKind::Uring),
            "poll" => Ok(BackendKind::Poll),
            other => Err(self.bad(format!("{flag} {other}: expected uring or poll"))),
        }
    }

    /// `text` read as a `T` (an address, say).
    pub fn parse<T: FromStr>(&self, text: &str) -> io::Result<T>
    where
        T::Err: Display,
    {
        text.parse()
            .map_err(|err| self.bad(format!("{text}: {err}")))
    }

    /// An argument the program does not take: an unknown option, or one
    /// more than it takes.
    pub fn unexpected(&self, arg: &str) -> io::Error {
        if arg.starts_with('-') {
            self.bad(format!("unknown argument {arg}"))
        } else {
            self.bad(format!("unexpected argument {arg}"))
        }
    }

    /// An error about the command line, with the usage.
    pub fn bad(&self, problem: impl Display) -> io::Error {
        bad_command_line(&self.usage, problem)
    }
}
