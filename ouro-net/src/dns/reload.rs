//! `resolv.conf` and the hosts file watched for changes, as glibc and Go
//! watch them: before a lookup, at most once per interval of ring time, a
//! file's identity (device, inode), size and modification time are
//! compared with those it had when last read; a difference means it is
//! read again.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::Config;
use super::hosts::Hosts;

/// How often a [`Resolver`](super::Resolver) made with
/// [`from_resolv_conf`](super::Resolver::from_resolv_conf) or
/// [`from_files`](super::Resolver::from_files) looks at its files, at most
/// (Go's interval).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What tells one version of the file from another: a file replaced by a
/// rename has a new inode, one rewritten in place a new modification time
/// (and usually size). `None` for a missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A watched file's path, how it is read (`resolv.conf` as
/// [`Config::from_file`], the hosts file as [`Hosts::from_file`]: each
/// reads a missing file as empty) and what it held when last read.
pub(crate) struct FileWatch<T> {
    path: PathBuf,
    read: fn(&Path) -> io::Result<T>,
    stamp: Option<Stamp>,
    interval: Duration,
    /// When to look next; never, for an interval past the clock's range.
    next_check: Option<Instant>,
}

/// The watch of a `resolv.conf`.
pub(crate) type ResolvConfWatch = FileWatch<Config>;
/// The watch of a hosts file.
pub(crate) type HostsWatch = FileWatch<Hosts>;

impl<T> FileWatch<T> {
    /// Reads the file with `read` and starts watching it; the first look
    /// is due `interval` after `now` (never, if that is past the clock's
    /// range: `Duration::MAX` reads the file once).
    pub fn start(
        path: PathBuf,
        read: fn(&Path) -> io::Result<T>,
        interval: Duration,
        now: Instant,
    ) -> io::Result<(Self, T)> {
        let stamp = stamp(&path)?;
        let contents = read(&path)?;
        let watch = FileWatch {
            path,
            read,
            stamp,
            interval,
            next_check: now.checked_add(interval),
        };
        Ok((watch, contents))
    }

    /// The file's new contents, if the look is due at `now` and the file
    /// changed. A file that cannot be looked at or read keeps the contents
    /// in use (a missing one reads as empty, as when starting), and is
    /// looked at again at the next interval.
    pub fn changed(&mut self, now: Instant) -> Option<T> {
        if self.next_check.is_none_or(|due| now < due) {
            return None;
        }
        self.next_check = now.checked_add(self.interval);
        let stamp = stamp(&self.path).ok()?;
        if stamp == self.stamp {
            return None;
        }
        let contents = (self.read)(&self.path).ok()?;
        self.stamp = stamp;
        Some(contents)
    }
}

fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
