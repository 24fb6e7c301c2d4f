//! The simulated file system of a world (its one host): directories and
//! regular files in memory, opened through real fds (memfds, as sockets
//! are) that the world maps to its open files and checks by identity.
//!
//! Durability: what a write puts in a file is visible at once but pending
//! until an `fsync` (or `fdatasync`) of the file keeps it; a crash
//! ([`World::crash`](super::World::crash)) keeps what was synced, plus a
//! seeded prefix of the unsynced blocks, the last of them possibly torn.
//! Names (create, unlink, rename, mkdir, link) are kept at once.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::faults::{Fault, Stream};
use super::net::{identity, Reply};
use super::world::State;
use super::{unsupported, SimBackend};
use crate::fd::{Fd, Named};
use crate::op::{Op, StatBuf};

/// What a crash keeps or loses whole, but for the first block lost, of
/// which a seeded prefix may survive (a torn write).
const BLOCK: usize = 4096;

/// The largest a simulated file grows (it is held in memory): writing,
/// truncating or allocating past it is `EFBIG`, as past a file system's
/// largest file.
const LARGEST_FILE: usize = 1 << 30;

/// The permission bits new files and directories get (mode less a umask
/// of 022, as a process's usually is).
const UMASK: u32 = 0o022;

struct Inode {
    dir: bool,
    mode: u32,
    /// What reads see.
    data: Vec<u8>,
    /// What a crash keeps for sure.
    synced: Vec<u8>,
    /// `data` differs from `synced`.
    dirty: bool,
    /// Blocks whose pending data a failed fsync forgot: reads see it, but
    /// no fsync or crash keeps it unless it is written again.
    forgotten: BTreeSet<usize>,
    links: u32,
}

impl Inode {
    fn new(dir: bool, mode: u32) -> Inode {
        Inode {
            dir,
            mode: mode & 0o7777 & !UMASK,
            data: Vec::new(),
            synced: Vec::new(),
            dirty: false,
            forgotten: BTreeSet::new(),
            links: 1,
        }
    }
}

/// An open file description: what an fd names.
struct OpenFile {
    inode: usize,
    pos: u64,
    read: bool,
    write: bool,
    append: bool,
}

/// The world's files: inode 0 is the root directory, which every path
/// starts from (relative paths too).
pub(crate) struct Files {
    inodes: Vec<Inode>,
    /// Paths, normalised (`a/b`, no leading or repeated slashes).
    names: BTreeMap<Vec<u8>, usize>,
    open: Vec<Option<OpenFile>>,
    /// Process fds of open files, by number: (open file, device, inode).
    fds: Vec<Option<(usize, u64, u64)>>,
}

impl Default for Files {
    fn default() -> Files {
        Files {
            inodes: vec![Inode::new(true, 0o755)],
            names: BTreeMap::new(),
            open: Vec::new(),
            fds: Vec::new(),
        }
    }
}

impl Files {
    /// The open file behind process fd `raw`, if the world made that fd
    /// and it is still open.
    fn lookup(&self, raw: RawFd) -> Option<usize> {
        let (open, dev, ino) = (*self.fds.get(usize::try_from(raw).ok()?)?)?;
        (identity(raw) == Some((dev, ino))).then_some(open)
    }

    /// How many of the world's file fds are still open.
    pub(crate) fn open_count(&self) -> usize {
        (0..self.fds.len())
            .filter(|&raw| self.lookup(raw as RawFd).is_some())
            .count()
    }

    fn close(&mut self, raw: RawFd) {
        if let Some(open) = self.lookup(raw) {
            self.open[open] = None;
            self.fds[raw as usize] = None;
        }
    }

    /// The inode `key` names, `None` if it does not exist but its parent
    /// directory does.
    fn find(&self, key: &[u8]) -> Result<Option<usize>, i32> {
        if key.is_empty() {
            return Ok(Some(0));
        }
        for (i, _) in key.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            match self.names.get(&key[..i]) {
                None => return Err(libc::ENOENT),
                Some(&inode) if !self.inodes[inode].dir => return Err(libc::ENOTDIR),
                Some(_) => {}
            }
        }
        Ok(self.names.get(key).copied())
    }

    fn add(&mut self, key: Vec<u8>, inode: Inode) -> usize {
        self.inodes.push(inode);
        let i = self.inodes.len() - 1;
        self.names.insert(key, i);
        i
    }

    /// `open(2)`'s checks and effects; the inode to open.
    fn open_inode(&mut self, path: &[u8], flags: i32, mode: u32) -> Result<usize, i32> {
        let key = normalise(path)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let create = flags & libc::O_CREAT != 0;
        let inode = match self.find(&key)? {
            Some(_) if create && flags & libc::O_EXCL != 0 => return Err(libc::EEXIST),
            Some(i) if self.inodes[i].dir && (writes || create) => return Err(libc::EISDIR),
            Some(i) if !self.inodes[i].dir && flags & libc::O_DIRECTORY != 0 => {
                return Err(libc::ENOTDIR)
            }
            Some(i) => i,
            None if !create => return Err(libc::ENOENT),
            None => self.add(key, Inode::new(false, mode)),
        };
        let file = &mut self.inodes[inode];
        if flags & libc::O_TRUNC != 0 && !file.dir && !file.data.is_empty() {
            file.data.clear();
            file.dirty = true;
        }
        Ok(inode)
    }

    fn fd_for(&mut self, file: OpenFile) -> io::Result<OwnedFd> {
        // SAFETY: a NUL-terminated name; memfd_create returns a new fd or -1.
        let raw = unsafe { libc::memfd_create(c"ouro-sim-file".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just made, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (dev, ino) = identity(raw).ok_or_else(io::Error::last_os_error)?;
        let open = match self.open.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.open.push(None);
                self.open.len() - 1
            }
        };
        self.open[open] = Some(file);
        let i = raw as usize;
        if i >= self.fds.len() {
            self.fds.resize(i + 1, None);
        }
        self.fds[i] = Some((open, dev, ino));
        Ok(fd)
    }

    fn mkdir(&mut self, path: &[u8], mode: u32) -> Result<(), i32> {
        let key = normalise(path)?;
        match self.find(&key)? {
            Some(_) => Err(libc::EEXIST),
            None => {
                self.add(key, Inode::new(true, mode));
                Ok(())
            }
        }
    }

    fn unlink(&mut self, path: &[u8], dir: bool) -> Result<(), i32> {
        let key = normalise(path)?;
        let inode = self.find(&key)?.ok_or(libc::ENOENT)?;
        if key.is_empty() {
            return Err(libc::EBUSY);
        }
        match (dir, self.inodes[inode].dir) {
            (false, true) => return Err(libc::EISDIR),
            (true, false) => return Err(libc::ENOTDIR),
            (true, true) if self.has_children(&key) => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.names.remove(&key);
        self.inodes[inode].links -= 1;
        Ok(())
    }

    fn has_children(&self, key: &[u8]) -> bool {
        let mut prefix = key.to_vec();
        prefix.push(b'/');
        self.names
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(&prefix))
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<(), i32> {
        let (from, to) = (normalise(from)?, normalise(to)?);
        let moving = self.find(&from)?.ok_or(libc::ENOENT)?;
        let replaced = self.find(&to)?;
        if from.is_empty() || to.is_empty() {
            return Err(libc::EBUSY);
        }
        if from == to {
            return Ok(());
        }
        let dir = self.inodes[moving].dir;
        if dir && to.starts_with(&from) && to.get(from.len()) == Some(&b'/') {
            return Err(libc::EINVAL);
        }
        if let Some(old) = replaced {
            match (dir, self.inodes[old].dir) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                (true, true) if self.has_children(&to) => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            self.inodes[old].links -= 1;
        }
        let mut prefix = from.clone();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> = self
            .names
            .range(prefix.clone()..)
            .take_while(|(name, _)| name.starts_with(&prefix))
            .map(|(name, _)| name.clone())
            .collect();
        for name in below {
            if let Some(inode) = self.names.remove(&name) {
                let mut moved = to.clone();
                moved.extend_from_slice(&name[from.len()..]);
                self.names.insert(moved, inode);
            }
        }
        self.names.remove(&from);
        self.names.insert(to, moving);
        Ok(())
    }

    fn hard_link(&mut self, original: &[u8], link: &[u8]) -> Result<(), i32> {
        let (original, link) = (normalise(original)?, normalise(link)?);
        let inode = self.find(&original)?.ok_or(libc::ENOENT)?;
        if self.find(&link)?.is_some() {
            return Err(libc::EEXIST);
        }
        if self.inodes[inode].dir {
            return Err(libc::EPERM);
        }
        self.inodes[inode].links += 1;
        self.names.insert(link, inode);
        Ok(())
    }

    /// Keeps what `inode`'s data is now, as a successful fsync does, but
    /// for the blocks a failed fsync forgot: they keep what was synced
    /// before (zeroes past its end).
    fn sync(&mut self, inode: usize) {
        let file = &mut self.inodes[inode];
        if !file.dirty {
            return;
        }
        if file.forgotten.is_empty() {
            file.synced.clone_from(&file.data);
            file.dirty = false;
            return;
        }
        let old = std::mem::replace(&mut file.synced, file.data.clone());
        for &b in &file.forgotten {
            let start = (b * BLOCK).min(file.synced.len());
            let end = ((b + 1) * BLOCK).min(file.synced.len());
            let kept = block(&old, b);
            let (from_old, zeroes) =
                file.synced[start..end].split_at_mut(kept.len().min(end - start));
            from_old.copy_from_slice(&kept[..from_old.len()]);
            zeroes.fill(0);
        }
        file.dirty = file.synced != file.data;
    }

    /// A fsync of `inode` failed: as on Linux, its pending data is marked
    /// clean without reaching the disk.
    fn forget(&mut self, inode: usize) {
        let file = &mut self.inodes[inode];
        let blocks = file.data.len().max(file.synced.len()).div_ceil(BLOCK);
        for b in 0..blocks {
            if block(&file.data, b) != block(&file.synced, b) {
                file.forgotten.insert(b);
            }
        }
    }

    /// The host crashed: every open file is gone, and each file keeps what
    /// was synced and a seeded prefix of its unsynced blocks (not those a
    /// failed fsync forgot), the last of them torn at a seeded byte.
    /// Returns how many files were torn inside a block.
    fn crash(&mut self, rng: &mut fastrand::Rng) -> u64 {
        self.open.clear();
        self.fds.clear();
        let mut torn = 0;
        for file in self.inodes.iter_mut().filter(|f| f.dirty) {
            let len = file.data.len();
            let blocks = len.max(file.synced.len()).div_ceil(BLOCK);
            let unsynced: Vec<usize> = (0..blocks)
                .filter(|&b| block(&file.data, b) != block(&file.synced, b))
                .filter(|b| !file.forgotten.contains(b))
                .collect();
            let kept = rng.usize(0..=unsynced.len());
            if kept == unsynced.len() && file.forgotten.is_empty() {
                file.synced.clone_from(&file.data);
            } else {
                for (i, &b) in unsynced.iter().enumerate().take(kept + 1) {
                    let start = b * BLOCK;
                    let mut end = ((b + 1) * BLOCK).min(len);
                    if start >= end {
                        continue;
                    }
                    if i == kept {
                        end = start + rng.usize(0..end - start);
                        torn += u64::from(end > start);
                    }
                    if end > file.synced.len() {
                        file.synced.resize(end, 0);
                    }
                    file.synced[start..end].copy_from_slice(&file.data[start..end]);
                }
            }
            file.data.clone_from(&file.synced);
            file.dirty = false;
            file.forgotten.clear();
        }
        torn
    }
}

/// Block `b` of `data` (shorter or empty past its end).
fn block(data: &[u8], b: usize) -> &[u8] {
    let start = (b * BLOCK).min(data.len());
    &data[start..((b + 1) * BLOCK).min(data.len())]
}

/// `path` (NUL-terminated or not) as a key: its components joined by
/// single slashes, `.` dropped and `..` taking one off.
fn normalise(path: &[u8]) -> Result<Vec<u8>, i32> {
    let path = path.strip_suffix(&[0]).unwrap_or(path);
    if path.is_empty() {
        return Err(libc::ENOENT);
    }
    let mut key = Vec::with_capacity(path.len());
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                let cut = key.iter().rposition(|&b| b == b'/').unwrap_or(0);
                key.truncate(cut);
            }
            _ => {
                if !key.is_empty() {
                    key.push(b'/');
                }
                key.extend_from_slice(part);
            }
        }
    }
    Ok(key)
}

impl State {
    /// The host's files lose what was not synced, and its open files
    /// close (their fds, still open in the process, are then `EBADF`).
    pub(crate) fn crash_files(&mut self) {
        let torn = self.fs.crash(self.streams.get(Stream::FilesCrash));
        for _ in 0..torn {
            self.faults.add(Fault::FilesTorn);
        }
    }

    /// An error a write or fsync fails with, if the configuration draws
    /// one: `EIO` or `ENOSPC`, as the kernel can return for both.
    fn file_error(&mut self) -> Option<i32> {
        if !self
            .streams
            .chance(Stream::FilesErrors, self.config.file_errors)
        {
            return None;
        }
        if self.streams.get(Stream::FilesErrors).bool() {
            self.faults.add(Fault::FilesEio);
            Some(libc::EIO)
        } else {
            self.faults.add(Fault::FilesEnospc);
            Some(libc::ENOSPC)
        }
    }

    /// How many of `n` bytes a read or write moves: all, or fewer if the
    /// configuration draws a short one.
    fn file_amount(&mut self, n: usize, class: Fault) -> usize {
        if n > 1
            && self
                .streams
                .chance(Stream::FilesShort, self.config.file_short_io)
        {
            self.faults.add(class);
            return self.streams.get(Stream::FilesShort).usize(1..n);
        }
        n
    }

    /// Where a read or write of open file `open` starts (`u64::MAX`: at
    /// its position), and whether it moves the position.
    fn start_at(&self, open: usize, offset: u64, write: bool) -> (usize, bool) {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let len = self.fs.inodes[file.inode].data.len();
        if write && file.append {
            (len, true)
        } else if offset == u64::MAX {
            (usize::try_from(file.pos).unwrap_or(usize::MAX), true)
        } else {
            (usize::try_from(offset).unwrap_or(usize::MAX), false)
        }
    }

    /// Reads from open file `open` into `room` pieces of memory.
    fn read_file(&mut self, open: usize, offset: u64, room: &[libc::iovec]) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let (inode, readable) = (file.inode, file.read);
        if self.fs.inodes[inode].dir {
            return -libc::EISDIR;
        }
        if !readable {
            return -libc::EBADF;
        }
        let (at, moves) = self.start_at(open, offset, false);
        let len = self.fs.inodes[inode].data.len();
        let total: usize = room.iter().map(|v| v.iov_len).sum();
        let n = self.file_amount(total.min(len.saturating_sub(at)), Fault::FilesShortRead);
        let data = &self.fs.inodes[inode].data[at.min(len)..at.min(len) + n];
        let mut copied = 0;
        for piece in room {
            let part = piece.iov_len.min(n - copied);
            let to = piece.iov_base.cast::<u8>();
            // SAFETY: each piece is room the operation owns until it
            // completes, `iov_len` bytes long; `part` is at most that.
            unsafe { std::ptr::copy_nonoverlapping(data[copied..].as_ptr(), to, part) };
            copied += part;
        }
        self.advance(open, moves, at + n);
        n as i32
    }

    /// Writes the `bytes` pieces into open file `open`.
    fn write_file(&mut self, open: usize, offset: u64, bytes: &[libc::iovec]) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        if !file.write {
            return -libc::EBADF;
        }
        let inode = file.inode;
        let total: usize = bytes.iter().map(|v| v.iov_len).sum();
        if total == 0 {
            return 0;
        }
        let past_any_file = offset.checked_add(total as u64);
        if offset != u64::MAX && past_any_file.is_none_or(|end| end > i64::MAX as u64) {
            return -libc::EINVAL;
        }
        if let Some(errno) = self.file_error() {
            return -errno;
        }
        let n = self.file_amount(total, Fault::FilesShortWrite);
        let (at, moves) = self.start_at(open, offset, true);
        if at.checked_add(n).is_none_or(|end| end > LARGEST_FILE) {
            return -libc::EFBIG;
        }
        let file = &mut self.fs.inodes[inode];
        if file.data.len() < at + n {
            file.data.resize(at + n, 0);
        }
        let mut copied = 0;
        for piece in bytes {
            let part = piece.iov_len.min(n - copied);
            let from = piece.iov_base.cast::<u8>().cast_const();
            // SAFETY: each piece is memory of a buffer the operation owns
            // until it completes, `iov_len` bytes long; `part` is at most that.
            let piece = unsafe { std::slice::from_raw_parts(from, part) };
            file.data[at + copied..at + copied + part].copy_from_slice(piece);
            copied += part;
        }
        file.dirty = true;
        let rewritten = at / BLOCK..(at + n).div_ceil(BLOCK);
        file.forgotten.retain(|b| !rewritten.contains(b));
        self.advance(open, moves, at + n);
        n as i32
    }

    fn advance(&mut self, open: usize, moves: bool, to: usize) {
        if let (true, Some(file)) = (moves, self.fs.open[open].as_mut()) {
            file.pos = to as u64;
        }
    }

    fn fsync_file(&mut self, open: usize) -> i32 {
        let inode = self.fs.open[open].as_ref().expect("an open file").inode;
        if let Some(errno) = self.file_error() {
            self.fs.forget(inode);
            return -errno;
        }
        if self.bug == Some(super::Bug::FsyncForgets) && self.streams.chance(Stream::Planted, 0.2) {
            return 0;
        }
        self.fs.sync(inode);
        0
    }

    fn truncate_file(&mut self, open: usize, len: u64) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let inode = &mut self.fs.inodes[file.inode];
        if !file.write || inode.dir || len > i64::MAX as u64 {
            return -libc::EINVAL;
        }
        if len > LARGEST_FILE as u64 {
            return -libc::EFBIG;
        }
        inode.data.resize(len as usize, 0);
        inode.dirty = true;
        inode.forgotten.retain(|&b| b * BLOCK < len as usize);
        0
    }

    fn allocate_file(&mut self, open: usize, mode: i32, offset: u64, len: u64) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let inode = &mut self.fs.inodes[file.inode];
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= LARGEST_FILE as u64);
        match end {
            _ if len == 0 || offset > i64::MAX as u64 => -libc::EINVAL,
            _ if !file.write => -libc::EBADF,
            _ if inode.dir => -libc::EISDIR,
            None => -libc::EFBIG,
            Some(_) if mode == libc::FALLOC_FL_KEEP_SIZE => 0,
            Some(end) if mode == 0 => {
                if inode.data.len() < end as usize {
                    inode.data.resize(end as usize, 0);
                    inode.dirty = true;
                }
                0
            }
            Some(_) => -libc::EOPNOTSUPP,
        }
    }

    fn stat_inode(&self, inode: usize, out: &mut StatBuf) {
        let file = &self.fs.inodes[inode];
        let kind = if file.dir {
            libc::S_IFDIR
        } else {
            libc::S_IFREG
        };
        fill_stat(
            out,
            kind | file.mode,
            file.data.len() as u64,
            file.links,
            inode as u64 + 1,
        );
    }
}

fn fill_stat(out: &mut StatBuf, mode: u32, size: u64, nlink: u32, ino: u64) {
    // SAFETY: statx is plain integers, for which all zeroes is a value.
    *out = unsafe { std::mem::zeroed() };
    out.stx_mask = libc::STATX_BASIC_STATS;
    out.stx_mode = mode as u16;
    out.stx_size = size;
    out.stx_nlink = nlink;
    out.stx_ino = ino;
    out.stx_blksize = BLOCK as u32;
    out.stx_blocks = size.div_ceil(512);
}

impl SimBackend {
    /// The open file `fd` names, if the world made it and it is still open.
    fn file_of(&self, state: &State, fd: Fd) -> Option<usize> {
        match fd.named() {
            Named::Raw(raw) => state.fs.lookup(raw),
            Named::Ring(file) => state.fs.lookup(self.files.raw(file)),
        }
    }

    /// Carries out `op` if it works on the world's files: a path operation,
    /// or one on an fd of an open file; `None` for any other.
    pub(super) fn carry_out_file(
        &mut self,
        state: &mut State,
        op: &mut Op,
    ) -> Option<io::Result<Reply>> {
        let done = |res: Result<(), i32>| Reply::Res(res.err().map_or(0, |e| -e));
        let reply = match op {
            Op::Open {
                path, flags, mode, ..
            } => match state.fs.open_inode(path, *flags, *mode) {
                Ok(inode) => {
                    let access = *flags & libc::O_ACCMODE;
                    let file = OpenFile {
                        inode,
                        pos: 0,
                        read: access != libc::O_WRONLY,
                        write: access != libc::O_RDONLY,
                        append: *flags & libc::O_APPEND != 0,
                    };
                    match state.fs.fd_for(file) {
                        Ok(fd) => Reply::Fd(fd),
                        Err(err) => Reply::Res(-err.raw_os_error().unwrap_or(libc::EMFILE)),
                    }
                }
                Err(errno) => Reply::Res(-errno),
            },
            Op::Stat { path, out, .. } => {
                match normalise(path).and_then(|key| state.fs.find(&key)) {
                    Ok(Some(inode)) => {
                        state.stat_inode(inode, out);
                        Reply::Res(0)
                    }
                    Ok(None) => Reply::Res(-libc::ENOENT),
                    Err(errno) => Reply::Res(-errno),
                }
            }
            Op::Unlink { path, flags } => {
                done(state.fs.unlink(path, *flags & libc::AT_REMOVEDIR != 0))
            }
            Op::Rename { from, to } => done(state.fs.rename(from, to)),
            Op::Mkdir { path, mode } => done(state.fs.mkdir(path, *mode)),
            Op::HardLink { original, link } => done(state.fs.hard_link(original, link)),
            Op::Close { fd } => {
                let raw = fd.as_ref()?.as_raw_fd();
                state.fs.lookup(raw)?;
                state.fs.close(raw);
                drop(fd.take());
                Reply::Res(0)
            }
            Op::CloseRing { file } => {
                self.file_of(state, Fd::ring(*file))?;
                state.fs.close(self.files.raw(*file));
                drop(self.take_ring_file(*file));
                Reply::Res(0)
            }
            _ => {
                let open = self.file_of(state, op.fds()[0]?)?;
                return Some(carry_out_on_file(state, op, open));
            }
        };
        Some(Ok(reply))
    }
}

fn piece(ptr: *mut u8, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    }
}

/// Carries out `op` on open file `open`.
fn carry_out_on_file(state: &mut State, op: &mut Op, open: usize) -> io::Result<Reply> {
    let res = match op {
        Op::Read { offset, .. } => {
            let offset = *offset;
            let (ptr, room) = op.read_target().unwrap_or((std::ptr::null_mut(), 0));
            state.read_file(open, offset, &[piece(ptr, room)])
        }
        Op::Readv {
            bufs, iov, offset, ..
        } => {
            bufs.fill_iovecs(iov, true);
            state.read_file(open, *offset, iov)
        }
        Op::Write { buf, offset, .. } => {
            let bytes = piece(buf.as_ptr().cast_mut(), buf.len());
            state.write_file(open, *offset, &[bytes])
        }
        Op::Writev {
            bufs, iov, offset, ..
        } => {
            bufs.fill_iovecs(iov, false);
            state.write_file(open, *offset, iov)
        }
        Op::Fsync { .. } => state.fsync_file(open),
        Op::Ftruncate { len, .. } => state.truncate_file(open, *len),
        Op::Fallocate {
            mode, offset, len, ..
        } => state.allocate_file(open, *mode, *offset, *len),
        Op::Fadvise { .. } => 0,
        Op::StatFd { out, .. } => {
            let inode = state.fs.open[open].as_ref().expect("an open file").inode;
            state.stat_inode(inode, out);
            0
        }
        op => return Err(unsupported(&format!("{:?} on a file", op.kind()))),
    };
    Ok(Reply::Res(res))
}
