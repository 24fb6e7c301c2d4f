//! `resolv.conf` watched for changes, as glibc and Go watch it: before a
//! lookup, at most once per interval of ring time, the file's identity
//! (device, inode), size and modification time are compared with those it
//! had when last read; a difference means it is read again.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::Config;

/// How often a [`Resolver`](super::Resolver) made with
/// [`from_resolv_conf`](super::Resolver::from_resolv_conf) looks at its
/// file, at most (Go's interval).
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

/// A `resolv.conf` path and what it held when last read.
#[derive(Debug)]
pub(crate) struct ResolvConfWatch {
    path: PathBuf,
    stamp: Option<Stamp>,
    interval: Duration,
    next_check: Instant,
}

impl ResolvConfWatch {
    /// Reads the file (see [`Config::from_file`]) and starts watching it;
    /// the first look is due `interval` after `now`.
    pub fn start(path: PathBuf, interval: Duration, now: Instant) -> io::Result<(Self, Config)> {
        let stamp = stamp(&path)?;
        let config = Config::from_file(&path)?;
        let watch = ResolvConfWatch {
            path,
            stamp,
            interval,
            next_check: now + interval,
        };
        Ok((watch, config))
    }

    /// The file's new configuration, if the look is due at `now` and the
    /// file changed. A file that cannot be looked at or read keeps the
    /// configuration in use (a missing one gives the defaults, as when
    /// starting), and is looked at again at the next interval.
    pub fn changed(&mut self, now: Instant) -> Option<Config> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + self.interval;
        let stamp = stamp(&self.path).ok()?;
        if stamp == self.stamp {
            return None;
        }
        let config = Config::from_file(&self.path).ok()?;
        self.stamp = stamp;
        Some(config)
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
