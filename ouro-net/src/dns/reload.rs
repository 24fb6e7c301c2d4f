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
    /// looked at again at the next interval. A file refused for what it is
    /// (too large, not a regular file) is remembered as that version: it
    /// is not read again until it changes.
    pub fn changed(&mut self, now: Instant) -> Option<T> {
        if self.next_check.is_none_or(|due| now < due) {
            return None;
        }
        self.next_check = now.checked_add(self.interval);
        let stamp = stamp(&self.path).ok()?;
        if stamp == self.stamp {
            return None;
        }
        match (self.read)(&self.path) {
            Ok(contents) => {
                self.stamp = stamp;
                Some(contents)
            }
            Err(e) if is_refusal(&e) => {
                self.stamp = stamp;
                None
            }
            // A passing failure (EACCES, EIO): worth trying again.
            Err(_) => None,
        }
    }
}

/// Whether reading failed for what the file is, which does not change
/// until the file does: `InvalidData` (too large) or `InvalidInput` (not
/// a regular file), as `read_config_file` refuses.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static READS: AtomicUsize = AtomicUsize::new(0);

    /// Counts its calls; refuses the file once it holds more than a byte.
    fn counted_read(path: &Path) -> io::Result<u64> {
        READS.fetch_add(1, Ordering::SeqCst);
        let len = std::fs::metadata(path)?.len();
        if len > 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too large"));
        }
        Ok(len)
    }

    #[test]
    fn a_refused_file_is_not_read_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "x").unwrap();
        let start = Instant::now();
        let every = Duration::from_secs(1);
        let (mut watch, len) = FileWatch::start(path.clone(), counted_read, every, start).unwrap();
        assert_eq!(len, 1);
        std::fs::write(&path, "too large").unwrap();
        let before = READS.load(Ordering::SeqCst);
        for i in 1..=5 {
            assert_eq!(watch.changed(start + every * i), None);
        }
        assert_eq!(READS.load(Ordering::SeqCst) - before, 1, "read once");
        std::fs::write(&path, "").unwrap();
        assert_eq!(watch.changed(start + every * 6), Some(0));
    }
}
