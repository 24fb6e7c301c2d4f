//! File-system types: how to open a file, what `stat` returns, and the
//! advice `fadvise` and `madvise` give the kernel.

use std::time::{Duration, SystemTime};

/// How [`Ring::open`](crate::Ring::open) opens a file, like
/// [`std::fs::OpenOptions`], with its checks: an open with no access, one
/// that creates or truncates without write access, or one that truncates
/// and appends (unless `create_new`) fails with `InvalidInput` and touches
/// no file. Files are always opened close-on-exec.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// All options off, mode `0o666` (before the umask).
    pub const fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }
    /// Open for reading.
    pub const fn read(mut self, on: bool) -> Self {
        self.read = on;
        self
    }
    /// Open for writing.
    pub const fn write(mut self, on: bool) -> Self {
        self.write = on;
        self
    }
    /// Every write goes to the end of the file.
    pub const fn append(mut self, on: bool) -> Self {
        self.append = on;
        self
    }
    /// Truncate the file to length 0.
    pub const fn truncate(mut self, on: bool) -> Self {
        self.truncate = on;
        self
    }
    /// Create the file if it does not exist.
    pub const fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }
    /// Create the file, failing with `EEXIST` if it exists.
    pub const fn create_new(mut self, on: bool) -> Self {
        self.create_new = on;
        self
    }
    /// Permission bits of a created file.
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    /// Extra `O_*` flags (e.g. `libc::O_DIRECT`), or-ed in; the access mode
    /// bits (`O_ACCMODE`) are ignored, as std ignores them.
    pub const fn custom_flags(mut self, flags: i32) -> Self {
        self.custom_flags = flags;
        self
    }

    /// The `open(2)` flags, checked as `std::fs::OpenOptions` checks them:
    /// some access is needed; creating or truncating needs write access;
    /// truncating cannot go with append (unless the file is new).
    pub(crate) fn flags(&self) -> std::io::Result<i32> {
        let access = match (self.read, self.write, self.append) {
            (false, false, false) => {
                return Err(invalid("no access mode set (read, write or append)"))
            }
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
        };
        let creates = self.truncate || self.create || self.create_new;
        if creates && !self.write && !self.append {
            return Err(invalid(
                "creating or truncating a file needs write or append access",
            ));
        }
        if self.append && self.truncate && !self.create_new {
            return Err(invalid("truncating a file cannot go with appending to it"));
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (false, false, false) => 0,
        };
        Ok(access | creation | libc::O_CLOEXEC | (self.custom_flags & !libc::O_ACCMODE))
    }

    pub(crate) fn mode_bits(&self) -> u32 {
        self.mode
    }
}

/// What [`Ring::stat`](crate::Ring::stat), [`Ring::lstat`](crate::Ring::lstat)
/// and [`Ring::fstat`](crate::Ring::fstat) return: the fields of `statx(2)`.
/// Where there is no `statx` (off Linux) the fields it adds to `stat` are
/// empty: `mask` and the attributes 0, `mount_id` and `btime` as the
/// platform has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Inode number.
    pub ino: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// Device holding the file, as (major, minor).
    pub dev: (u32, u32),
    /// Device the file represents, if special, as (major, minor).
    pub rdev: (u32, u32),
    /// Last access, as seconds and nanoseconds since the epoch.
    pub atime: (i64, u32),
    /// Last modification.
    pub mtime: (i64, u32),
    /// Last status change.
    pub ctime: (i64, u32),
    /// Creation, when the file system records it (`None` otherwise).
    pub btime: Option<(i64, u32)>,
    /// Which fields the file system filled in (`libc::STATX_*` bits);
    /// 0 where there is no `statx`.
    pub mask: u32,
    /// Attributes the file has (`libc::STATX_ATTR_*`: immutable,
    /// append-only, compressed, encrypted, ...).
    pub attributes: u64,
    /// Which of `attributes` the file system supports: a bit clear here
    /// says nothing of the file.
    pub attributes_mask: u64,
    /// The id of the mount holding the file (as in `/proc/self/mountinfo`),
    /// when the kernel reports it (Linux 5.8).
    pub mount_id: Option<u64>,
}

impl Metadata {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.is_type(libc::S_IFREG)
    }
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.is_type(libc::S_IFDIR)
    }
    /// Whether it is a symbolic link (only `lstat` reports one).
    pub fn is_symlink(&self) -> bool {
        self.is_type(libc::S_IFLNK)
    }
    #[allow(clippy::unnecessary_cast)] // `mode_t` is 16 bits on some systems
    fn is_type(&self, ty: libc::mode_t) -> bool {
        self.mode & libc::S_IFMT as u32 == ty as u32
    }
    /// Permission bits.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
    /// Last modification as a `SystemTime`.
    pub fn modified(&self) -> SystemTime {
        to_system_time(self.mtime)
    }
}

fn to_system_time((sec, nsec): (i64, u32)) -> SystemTime {
    let offset = Duration::new(sec.unsigned_abs(), nsec);
    if sec >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

#[cfg(target_os = "linux")]
impl From<&libc::statx> for Metadata {
    fn from(s: &libc::statx) -> Metadata {
        let ts = |t: libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
        Metadata {
            mode: u32::from(s.stx_mode),
            size: s.stx_size,
            nlink: s.stx_nlink,
            uid: s.stx_uid,
            gid: s.stx_gid,
            ino: s.stx_ino,
            blocks: s.stx_blocks,
            blksize: s.stx_blksize,
            dev: (s.stx_dev_major, s.stx_dev_minor),
            rdev: (s.stx_rdev_major, s.stx_rdev_minor),
            atime: ts(s.stx_atime),
            mtime: ts(s.stx_mtime),
            ctime: ts(s.stx_ctime),
            btime: (s.stx_mask & libc::STATX_BTIME != 0).then(|| ts(s.stx_btime)),
            mask: s.stx_mask,
            attributes: s.stx_attributes,
            attributes_mask: s.stx_attributes_mask,
            mount_id: (s.stx_mask & libc::STATX_MNT_ID != 0).then_some(s.stx_mnt_id),
        }
    }
}

impl From<&std::fs::Metadata> for Metadata {
    fn from(m: &std::fs::Metadata) -> Metadata {
        use std::os::unix::fs::MetadataExt;
        let dev = m.dev();
        let rdev = m.rdev();
        Metadata {
            mode: m.mode(),
            size: m.size(),
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            ino: m.ino(),
            blocks: m.blocks(),
            blksize: m.blksize() as u32,
            dev: split_dev(dev),
            rdev: split_dev(rdev),
            atime: (m.atime(), m.atime_nsec() as u32),
            mtime: (m.mtime(), m.mtime_nsec() as u32),
            ctime: (m.ctime(), m.ctime_nsec() as u32),
            btime: m.created().ok().and_then(|t| {
                let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
                Some((d.as_secs() as i64, d.subsec_nanos()))
            }),
            mask: 0,
            attributes: 0,
            attributes_mask: 0,
            mount_id: None,
        }
    }
}

/// The fields ouro asks `statx` for: the basic ones, birth time and mount id.
#[cfg(target_os = "linux")]
pub(crate) const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME | libc::STATX_MNT_ID;

#[allow(clippy::unnecessary_cast)] // `dev_t` is not u64 everywhere
pub(crate) fn split_dev(dev: u64) -> (u32, u32) {
    let dev = dev as libc::dev_t;
    (libc::major(dev) as u32, libc::minor(dev) as u32)
}

/// What [`Ring::fadvise`](crate::Ring::fadvise) tells the kernel about how
/// a range of a file will be read, as `posix_fadvise(2)`'s advice. Advice
/// changes how the kernel caches the file, never what a read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// No particular pattern (the default): `POSIX_FADV_NORMAL`.
    Normal,
    /// Read in order, front to back: read further ahead
    /// (`POSIX_FADV_SEQUENTIAL`).
    Sequential,
    /// Read in no particular order: read less ahead (`POSIX_FADV_RANDOM`).
    Random,
    /// Read once (`POSIX_FADV_NOREUSE`).
    NoReuse,
    /// Needed soon: start reading it into the page cache
    /// (`POSIX_FADV_WILLNEED`).
    WillNeed,
    /// Not needed soon: its clean cached pages may be dropped
    /// (`POSIX_FADV_DONTNEED`); the file's contents stay as they are.
    DontNeed,
}

impl Advice {
    /// The number `posix_fadvise(2)` and io_uring take.
    #[cfg(target_os = "linux")]
    pub(crate) fn raw(self) -> i32 {
        match self {
            Advice::Normal => libc::POSIX_FADV_NORMAL,
            Advice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            Advice::Random => libc::POSIX_FADV_RANDOM,
            Advice::NoReuse => libc::POSIX_FADV_NOREUSE,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
            Advice::DontNeed => libc::POSIX_FADV_DONTNEED,
        }
    }
}

/// What [`Ring::madvise`](crate::Ring::madvise) tells the kernel about how
/// a buffer's memory will be used, as `madvise(2)`'s advice.
///
/// Only advice that never changes the memory's contents is here: the buffer
/// is still the caller's after the operation, and safe code must read back
/// what it wrote. `MADV_DONTNEED`, `MADV_FREE` and `MADV_REMOVE` would
/// zero or discard private memory under it, so they are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryAdvice {
    /// No particular pattern (the default): `MADV_NORMAL`.
    Normal,
    /// Used in no particular order: page in less ahead (`MADV_RANDOM`).
    Random,
    /// Used in order, front to back: page in further ahead
    /// (`MADV_SEQUENTIAL`).
    Sequential,
    /// Needed soon: page it in now (`MADV_WILLNEED`).
    WillNeed,
}

impl MemoryAdvice {
    /// The number `madvise(2)` and io_uring take.
    pub(crate) fn raw(self) -> i32 {
        match self {
            MemoryAdvice::Normal => libc::MADV_NORMAL,
            MemoryAdvice::Random => libc::MADV_RANDOM,
            MemoryAdvice::Sequential => libc::MADV_SEQUENTIAL,
            MemoryAdvice::WillNeed => libc::MADV_WILLNEED,
        }
    }
}

fn invalid(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}
