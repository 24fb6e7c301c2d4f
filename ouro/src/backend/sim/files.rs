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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::socket_fds::{identity, memfd};

/// What a crash keeps or loses whole, but for the first block lost, of
/// which a seeded prefix may survive (a torn write).
pub(super) const BLOCK: usize = 4096;

/// The largest a simulated file grows (it is held in memory): writing,
/// truncating or allocating past it is `EFBIG`, as past a file system's
/// largest file.
pub(super) const LARGEST_FILE: usize = 1 << 30;

/// The permission bits new files and directories get (mode less a umask
/// of 022, as a process's usually is).
const UMASK: u32 = 0o022;

pub(super) struct Inode {
    pub(super) dir: bool,
    pub(super) mode: u32,
    /// What reads see.
    pub(super) data: Vec<u8>,
    /// What a crash keeps for sure.
    synced: Vec<u8>,
    /// `data` differs from `synced`.
    pub(super) dirty: bool,
    /// Blocks whose pending data a failed fsync forgot: reads see it, but
    /// no fsync or crash keeps it unless it is written again.
    pub(super) forgotten: BTreeSet<usize>,
    pub(super) links: u32,
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
            // A directory's `.` and its name in its parent.
            links: if dir { 2 } else { 1 },
        }
    }
}

/// An open file description: what an fd names.
pub(super) struct OpenFile {
    pub(super) inode: usize,
    pub(super) pos: u64,
    pub(super) read: bool,
    pub(super) write: bool,
    pub(super) append: bool,
}

/// The world's files: inode 0 is the root directory, which every path
/// starts from (relative paths too).
pub(crate) struct Files {
    pub(super) inodes: Vec<Inode>,
    /// Paths, normalised (`a/b`, no leading or repeated slashes).
    names: BTreeMap<Vec<u8>, usize>,
    pub(super) open: Vec<Option<OpenFile>>,
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
    pub(super) fn lookup(&self, raw: RawFd) -> Option<usize> {
        let (open, dev, ino) = (*self.fds.get(usize::try_from(raw).ok()?)?)?;
        (identity(raw) == Some((dev, ino))).then_some(open)
    }

    /// How many of the world's file fds are still open.
    pub(crate) fn open_count(&self) -> usize {
        (0..self.fds.len())
            .filter(|&raw| self.lookup(raw as RawFd).is_some())
            .count()
    }

    pub(super) fn close(&mut self, raw: RawFd) {
        if let Some(open) = self.lookup(raw) {
            self.open[open] = None;
            self.fds[raw as usize] = None;
        }
    }

    /// The inode `key` names, `None` if it does not exist but its parent
    /// directory does.
    pub(super) fn find(&self, key: &[u8]) -> Result<Option<usize>, i32> {
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

    /// `path`'s key and the inode it names (as [`find`](Self::find)); a
    /// path ending in `/` names a directory, so a file there is `ENOTDIR`.
    pub(super) fn resolve(&self, path: &[u8]) -> Result<(Vec<u8>, Option<usize>), i32> {
        let key = normalise(path)?;
        match self.find(&key)? {
            Some(inode) if names_dir(path) && !self.inodes[inode].dir => Err(libc::ENOTDIR),
            found => Ok((key, found)),
        }
    }

    fn add(&mut self, key: Vec<u8>, inode: Inode) -> usize {
        self.inodes.push(inode);
        let i = self.inodes.len() - 1;
        self.names.insert(key, i);
        i
    }

    /// `open(2)`'s checks and effects; the inode to open.
    pub(super) fn open_inode(&mut self, path: &[u8], flags: i32, mode: u32) -> Result<usize, i32> {
        let (key, found) = self.resolve(path)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let create = flags & libc::O_CREAT != 0;
        let inode = match found {
            Some(_) if create && flags & libc::O_EXCL != 0 => return Err(libc::EEXIST),
            Some(i) if self.inodes[i].dir && (writes || create) => return Err(libc::EISDIR),
            Some(i) if !self.inodes[i].dir && flags & libc::O_DIRECTORY != 0 => {
                return Err(libc::ENOTDIR)
            }
            Some(i) => i,
            None if !create => return Err(libc::ENOENT),
            // Only a directory can be named with a `/` at the end.
            None if names_dir(path) => return Err(libc::EISDIR),
            None => self.add(key, Inode::new(false, mode)),
        };
        let file = &mut self.inodes[inode];
        if flags & libc::O_TRUNC != 0 && !file.dir && !file.data.is_empty() {
            file.data.clear();
            file.dirty = true;
        }
        Ok(inode)
    }

    pub(super) fn fd_for(&mut self, file: OpenFile) -> io::Result<OwnedFd> {
        let (fd, (dev, ino)) = memfd(c"ouro-sim-file")?;
        let raw = fd.as_raw_fd();
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

    pub(super) fn mkdir(&mut self, path: &[u8], mode: u32) -> Result<(), i32> {
        let key = normalise(path)?;
        match self.find(&key)? {
            Some(_) => Err(libc::EEXIST),
            None => {
                self.add(key, Inode::new(true, mode));
                Ok(())
            }
        }
    }

    pub(super) fn unlink(&mut self, path: &[u8], dir: bool) -> Result<(), i32> {
        let (key, found) = self.resolve(path)?;
        let inode = found.ok_or(libc::ENOENT)?;
        if key.is_empty() {
            // The root: `rmdir` says it is busy, `unlink` that it is a
            // directory.
            return Err(if dir { libc::EBUSY } else { libc::EISDIR });
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

    pub(super) fn rename(&mut self, from_path: &[u8], to_path: &[u8]) -> Result<(), i32> {
        // As Linux: both parents are looked up before either name, and a
        // `/` at the end of either is checked after both names.
        let from = normalise(from_path)?;
        let moving = self.find(&from)?;
        let to = normalise(to_path)?;
        let replaced = self.find(&to)?;
        if from.is_empty() || to.is_empty() {
            return Err(libc::EBUSY);
        }
        let moving = moving.ok_or(libc::ENOENT)?;
        let dir = self.inodes[moving].dir;
        if !dir && (names_dir(from_path) || names_dir(to_path)) {
            return Err(libc::ENOTDIR);
        }
        if from.starts_with(&to) && from.get(to.len()) == Some(&b'/') {
            // The target is an ancestor of the source: not empty.
            return Err(libc::ENOTEMPTY);
        }
        if dir && to.starts_with(&from) && to.get(from.len()) == Some(&b'/') {
            return Err(libc::EINVAL);
        }
        if replaced == Some(moving) {
            // The same name, or two hard links of one file: POSIX has
            // rename do nothing, and keep both.
            return Ok(());
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

    pub(super) fn hard_link(&mut self, original: &[u8], link: &[u8]) -> Result<(), i32> {
        // As Linux: the original is looked up whole before the link's
        // parent; a link's name ending in `/` is `EEXIST` if it exists,
        // else `ENOENT` (only `mkdir` makes a name with a `/`).
        let inode = self.resolve(original)?.1.ok_or(libc::ENOENT)?;
        let key = normalise(link)?;
        if self.find(&key)?.is_some() {
            return Err(libc::EEXIST);
        }
        if names_dir(link) {
            return Err(libc::ENOENT);
        }
        if self.inodes[inode].dir {
            return Err(libc::EPERM);
        }
        self.inodes[inode].links += 1;
        self.names.insert(key, inode);
        Ok(())
    }

    /// Keeps what `inode`'s data is now, as a successful fsync does, but
    /// for the blocks a failed fsync forgot: they keep what was synced
    /// before (zeroes past its end).
    pub(super) fn sync(&mut self, inode: usize) {
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
    pub(super) fn forget(&mut self, inode: usize) {
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
    pub(super) fn crash(&mut self, rng: &mut fastrand::Rng) -> u64 {
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

/// Whether `path` (NUL-terminated or not) ends in `/`: it names a
/// directory.
fn names_dir(path: &[u8]) -> bool {
    path.strip_suffix(&[0]).unwrap_or(path).ends_with(b"/")
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
