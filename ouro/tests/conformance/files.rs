//! Scenarios on files: opening, writing, reading, syncing, truncating,
//! renaming and removing, and the errors the kernel answers with. The
//! real legs work in a temporary directory, the simulator in a directory
//! of its own file system.

use std::path::{Path, PathBuf};

use ouro::fs::OpenOptions;
use ouro::{Offset, Outcome, RingFd};

use crate::env::{error, Env, Step};

/// A fresh directory for the scenario's files, kept until the run ends.
struct Dir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Dir {
    fn new(env: &mut Env) -> Dir {
        if !env.simulated() {
            let temp = tempfile::tempdir().expect("a temporary directory");
            return Dir {
                path: temp.path().to_path_buf(),
                _temp: Some(temp),
            };
        }
        let made = env.op(|ring, ctx| ring.mkdir("/conformance", 0o755, ctx));
        assert!(matches!(made, Outcome::Mkdir(Ok(()))), "{made:?}");
        Dir {
            path: PathBuf::from("/conformance"),
            _temp: None,
        }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Opens `path` as `options` say, noting the outcome as `step`.
fn open(env: &mut Env, path: PathBuf, options: OpenOptions, step: &'static str) -> Option<RingFd> {
    match env.op(|ring, ctx| ring.open(&path, &options, ctx)) {
        Outcome::Open(Ok(fd)) => {
            env.note(step, Step::Ok);
            Some(env.ring.register_fd(fd))
        }
        Outcome::Open(Err(err)) => {
            env.note(step, error(&err));
            None
        }
        other => panic!("{other:?}"),
    }
}

/// Notes what a file operation ended with: bytes moved, or the content
/// read, or `Ok`, or the error.
fn note(env: &mut Env, step: &'static str, outcome: Outcome) {
    let what = match outcome {
        Outcome::Write(Ok(n), _) | Outcome::Writev(Ok(n), _) => Step::Bytes(n),
        Outcome::Readv(Ok(_), bufs) => {
            let parts = bufs.downcast::<Vec<u8>>().expect("byte vectors");
            Step::Fact(format!("read {parts:?}"))
        }
        Outcome::Read(Ok(_), buf) => Step::Fact(format!("read {:?}", &buf[..])),
        // A directory's size is the file system's own.
        Outcome::Stat(Ok(meta)) if meta.is_dir() => Step::Fact("a directory".into()),
        Outcome::Stat(Ok(meta)) => Step::Fact(format!(
            "size {} file {} dir {} links {}",
            meta.size,
            meta.is_file(),
            meta.is_dir(),
            meta.nlink
        )),
        Outcome::Write(Err(err), _) | Outcome::Read(Err(err), _) => error(&err),
        Outcome::Stat(Err(err))
        | Outcome::Fsync(Err(err))
        | Outcome::Ftruncate(Err(err))
        | Outcome::Unlink(Err(err))
        | Outcome::Rename(Err(err))
        | Outcome::HardLink(Err(err))
        | Outcome::Mkdir(Err(err))
        | Outcome::Fallocate(Err(err))
        | Outcome::Close(Err(err)) => error(&err),
        Outcome::Fsync(Ok(()))
        | Outcome::Ftruncate(Ok(()))
        | Outcome::Unlink(Ok(()))
        | Outcome::Rename(Ok(()))
        | Outcome::HardLink(Ok(()))
        | Outcome::Mkdir(Ok(()))
        | Outcome::Fallocate(Ok(()))
        | Outcome::Close(Ok(())) => Step::Ok,
        other => panic!("no file scenario starts {other:?}"),
    };
    env.note(step, what);
}

fn read(env: &mut Env, fd: RingFd, at: Offset, step: &'static str) {
    let got = env.op(|ring, ctx| ring.read(fd, Vec::with_capacity(64), at, ctx));
    note(env, step, got);
}

fn write(env: &mut Env, fd: RingFd, bytes: &[u8], at: Offset, step: &'static str) {
    let done = env.op(|ring, ctx| ring.write(fd, bytes.to_vec(), at, ctx));
    note(env, step, done);
}

fn close(env: &mut Env, fd: RingFd, step: &'static str) {
    let closed = env.op(|ring, ctx| ring.close(fd, ctx));
    note(env, step, closed);
}

fn stat(env: &mut Env, path: PathBuf, step: &'static str) {
    let got = env.op(|ring, ctx| ring.stat(&path, ctx));
    note(env, step, got);
}

const READ_WRITE: OpenOptions = OpenOptions::new().read(true).write(true);

pub fn files_write_read_and_sync(env: &mut Env) {
    let dir = Dir::new(env);
    let path = dir.join("data");
    let options = READ_WRITE.create_new(true);
    let fd = open(env, path.clone(), options, "create").expect("a new file");
    write(
        env,
        fd,
        b"hello world",
        Offset::Current,
        "write at the position",
    );
    write(env, fd, b"x", Offset::At(20), "write past the end");
    let meta = env.op(|ring, ctx| ring.fstat(fd, ctx));
    note(env, "fstat", meta);
    read(env, fd, Offset::At(0), "read from the start");
    read(env, fd, Offset::Current, "read at the position");
    read(env, fd, Offset::Current, "read at the end");
    let synced = env.op(|ring, ctx| ring.fsync(fd, ctx));
    note(env, "fsync", synced);
    let synced = env.op(|ring, ctx| ring.fdatasync(fd, ctx));
    note(env, "fdatasync", synced);
    let parts = vec![b"ab".to_vec(), b"cde".to_vec()];
    let wrote = env.op(|ring, ctx| ring.writev(fd, parts, Offset::At(2), ctx));
    note(env, "writev", wrote);
    let room = vec![Vec::with_capacity(3), Vec::with_capacity(30)];
    let got = env.op(|ring, ctx| ring.readv(fd, room, Offset::At(0), ctx));
    note(env, "readv", got);
    let grown = env.op(|ring, ctx| ring.fallocate(fd, 0, 0, 100, ctx));
    note(env, "fallocate", grown);
    stat(env, path.clone(), "stat");
    close(env, fd, "close");
    let again = open(env, path, READ_WRITE.truncate(true), "open truncating");
    let fd = again.expect("the file again");
    read(env, fd, Offset::At(0), "read the truncated file");
    close(env, fd, "close again");
}

pub fn files_the_kernel_refuses(env: &mut Env) {
    let dir = Dir::new(env);
    let file = dir.join("file");
    open(env, file.clone(), READ_WRITE, "open a missing file");
    let fd = open(env, file.clone(), READ_WRITE.create(true), "create").expect("a file");
    close(env, fd, "close it");
    open(
        env,
        file.clone(),
        READ_WRITE.create_new(true),
        "create it again",
    );
    open(
        env,
        dir.path.clone(),
        READ_WRITE,
        "open the directory to write",
    );
    open(env, file.join("below"), READ_WRITE, "open below a file");
    let made = env.op(|ring, ctx| ring.mkdir(&dir.path, 0o755, ctx));
    note(env, "mkdir an existing directory", made);
    let sub = dir.join("sub");
    let made = env.op(|ring, ctx| ring.mkdir(&sub, 0o755, ctx));
    note(env, "mkdir", made);
    let inner = sub.join("inner");
    let fd = open(env, inner, READ_WRITE.create(true), "create inside").expect("a file");
    close(env, fd, "close the inner file");
    let gone = env.op(|ring, ctx| ring.unlink(dir.join("missing"), ctx));
    note(env, "unlink a missing file", gone);
    let gone = env.op(|ring, ctx| ring.unlink(&sub, ctx));
    note(env, "unlink a directory", gone);
    let gone = env.op(|ring, ctx| ring.remove_dir(&file, ctx));
    note(env, "remove_dir a file", gone);
    let gone = env.op(|ring, ctx| ring.remove_dir(&sub, ctx));
    note(env, "remove_dir a directory with a file", gone);
    let read_only = OpenOptions::new().read(true);
    let fd = open(env, file.clone(), read_only, "open to read").expect("the file");
    write(env, fd, b"x", Offset::At(0), "write on a read-only fd");
    let cut = env.op(|ring, ctx| ring.ftruncate(fd, 0, ctx));
    note(env, "ftruncate a read-only fd", cut);
    let grown = env.op(|ring, ctx| ring.fallocate(fd, 0, 0, 10, ctx));
    note(env, "fallocate a read-only fd", grown);
    close(env, fd, "close the reader");
    let write_only = OpenOptions::new().write(true);
    let fd = open(env, file, write_only, "open to write").expect("the file");
    read(env, fd, Offset::At(0), "read on a write-only fd");
    let far = Offset::At(i64::MAX as u64 - 1);
    write(env, fd, b"xy", far, "write past the largest file");
    close(env, fd, "close the writer");
    read(env, fd, Offset::At(0), "read on a closed fd");
}

pub fn files_append_truncate_rename_unlink(env: &mut Env) {
    let dir = Dir::new(env);
    let (old, new) = (dir.join("old"), dir.join("new"));
    let options = READ_WRITE.create(true).append(true);
    let fd = open(env, old.clone(), options, "create to append").expect("a file");
    write(env, fd, b"abcdef", Offset::Current, "append");
    write(env, fd, b"gh", Offset::Current, "append more");
    let cut = env.op(|ring, ctx| ring.ftruncate(fd, 3, ctx));
    note(env, "ftruncate", cut);
    write(env, fd, b"XY", Offset::Current, "append after the cut");
    read(env, fd, Offset::At(0), "read it all");
    let moved = env.op(|ring, ctx| ring.rename(&old, &new, ctx));
    note(env, "rename", moved);
    stat(env, old.clone(), "stat the old name");
    stat(env, new.clone(), "stat the new name");
    let moved = env.op(|ring, ctx| ring.rename(dir.join("missing"), &old, ctx));
    note(env, "rename a missing file", moved);
    let linked = env.op(|ring, ctx| ring.hard_link(&new, &old, ctx));
    note(env, "hard link", linked);
    stat(env, new.clone(), "stat the linked file");
    let gone = env.op(|ring, ctx| ring.unlink(&new, ctx));
    note(env, "unlink", gone);
    let gone = env.op(|ring, ctx| ring.unlink(&old, ctx));
    note(env, "unlink the link", gone);
    stat(env, new, "stat after unlink");
    read(env, fd, Offset::At(0), "read the unlinked file");
    close(env, fd, "close");
}

pub fn files_directories_renamed_and_removed(env: &mut Env) {
    let dir = Dir::new(env);
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let made = env.op(|ring, ctx| ring.mkdir(&a, 0o755, ctx));
    note(env, "mkdir a", made);
    let fd = open(env, a.join("f"), READ_WRITE.create(true), "create a/f").expect("a file");
    write(env, fd, b"inside", Offset::At(0), "write a/f");
    close(env, fd, "close a/f");
    let moved = env.op(|ring, ctx| ring.rename(&a, &b, ctx));
    note(env, "rename a to b", moved);
    stat(env, b.join("f"), "stat b/f");
    stat(env, a.join("f"), "stat a/f");
    let moved = env.op(|ring, ctx| ring.rename(&b, b.join("sub"), ctx));
    note(env, "rename b into itself", moved);
    let g = dir.join("g");
    let fd = open(env, g.clone(), READ_WRITE.create(true), "create g").expect("a file");
    close(env, fd, "close g");
    let moved = env.op(|ring, ctx| ring.rename(&g, &b, ctx));
    note(env, "rename a file over a directory", moved);
    let moved = env.op(|ring, ctx| ring.rename(&b, &g, ctx));
    note(env, "rename a directory over a file", moved);
    let made = env.op(|ring, ctx| ring.mkdir(&c, 0o755, ctx));
    note(env, "mkdir c", made);
    let moved = env.op(|ring, ctx| ring.rename(&c, &b, ctx));
    note(env, "rename an empty directory over a full one", moved);
    let moved = env.op(|ring, ctx| ring.rename(&b, &c, ctx));
    note(env, "rename a directory over an empty one", moved);
    stat(env, c.join("f"), "stat c/f");
    stat(env, c.clone(), "stat c");
    let linked = env.op(|ring, ctx| ring.hard_link(&c, dir.join("d"), ctx));
    note(env, "hard link a directory", linked);
    let gone = env.op(|ring, ctx| ring.unlink(c.join("f"), ctx));
    note(env, "unlink c/f", gone);
    let gone = env.op(|ring, ctx| ring.remove_dir(&c, ctx));
    note(env, "remove_dir c", gone);
    let gone = env.op(|ring, ctx| ring.unlink(&g, ctx));
    note(env, "unlink g", gone);
}

/// Paths a `/` ends (they name directories), a rename onto the source's
/// own directory, the root, and a read that would end past the largest
/// offset.
pub fn files_paths_the_kernel_refuses(env: &mut Env) {
    let dir = Dir::new(env);
    let sub = dir.join("sub");
    let made = env.op(|ring, ctx| ring.mkdir(&sub, 0o755, ctx));
    note(env, "mkdir sub", made);
    let file = sub.join("file");
    let fd = open(env, file.clone(), READ_WRITE.create(true), "create").expect("a file");
    write(env, fd, b"data", Offset::At(0), "write");
    read(
        env,
        fd,
        Offset::At(i64::MAX as u64),
        "read past the largest offset",
    );
    close(env, fd, "close");
    stat(env, slashed(&file), "stat a file with a slash");
    stat(env, slashed(&sub), "stat a directory with a slash");
    open(env, slashed(&file), READ_WRITE, "open a file with a slash");
    let new = slashed(&sub.join("new"));
    open(
        env,
        new,
        READ_WRITE.create(true),
        "create a file with a slash",
    );
    let gone = env.op(|ring, ctx| ring.unlink(slashed(&file), ctx));
    note(env, "unlink a file with a slash", gone);
    let moved = env.op(|ring, ctx| ring.rename(&file, &sub, ctx));
    note(env, "rename a file onto its own directory", moved);
    let gone = env.op(|ring, ctx| ring.unlink("/", ctx));
    note(env, "unlink the root", gone);
    let gone = env.op(|ring, ctx| ring.unlink(&file, ctx));
    note(env, "unlink the file", gone);
    let gone = env.op(|ring, ctx| ring.remove_dir(slashed(&sub), ctx));
    note(env, "remove_dir with a slash", gone);
}

/// `path` with a `/` at the end.
fn slashed(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}/", path.display()))
}

/// A write at an offset on an `O_APPEND` fd appends, and leaves the fd's
/// position where it was; a write at the position appends and moves it.
pub fn files_positional_write_on_an_append_fd(env: &mut Env) {
    let dir = Dir::new(env);
    let path = dir.join("log");
    let options = READ_WRITE.create(true).append(true);
    let fd = open(env, path.clone(), options, "create to append").expect("a file");
    write(env, fd, b"hello", Offset::At(100), "write at 100");
    stat(env, path, "stat");
    read(env, fd, Offset::Current, "read at the position");
    write(env, fd, b"!", Offset::Current, "write at the position");
    read(env, fd, Offset::Current, "read at the position after it");
    read(env, fd, Offset::At(0), "read from the start");
    close(env, fd, "close");
}

/// A rename from one hard link of a file to another does nothing; a `/`
/// after the target is still refused first.
pub fn files_rename_between_links_of_one_file(env: &mut Env) {
    let dir = Dir::new(env);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let fd = open(env, a.clone(), READ_WRITE.create(true), "create a").expect("a file");
    write(env, fd, b"data", Offset::At(0), "write a");
    close(env, fd, "close a");
    let linked = env.op(|ring, ctx| ring.hard_link(&a, &b, ctx));
    note(env, "hard link a to b", linked);
    let moved = env.op(|ring, ctx| ring.rename(&a, &b, ctx));
    note(env, "rename a to b", moved);
    stat(env, a.clone(), "stat a");
    stat(env, b.clone(), "stat b");
    let moved = env.op(|ring, ctx| ring.rename(&a, slashed(&b), ctx));
    note(env, "rename a to b with a slash", moved);
    let moved = env.op(|ring, ctx| ring.rename(&a, &a, ctx));
    note(env, "rename a to itself", moved);
    stat(env, a.clone(), "stat a again");
    let gone = env.op(|ring, ctx| ring.unlink(&a, ctx));
    note(env, "unlink a", gone);
    let gone = env.op(|ring, ctx| ring.unlink(&b, ctx));
    note(env, "unlink b", gone);
}

/// `link` looks the old path up whole before the new one's parent;
/// `rename` looks both parents up before either name, and checks a `/`
/// at the end of either after both.
pub fn files_link_and_rename_check_the_paths_in_order(env: &mut Env) {
    let dir = Dir::new(env);
    let (file, missing, new) = (dir.join("file"), dir.join("missing"), dir.join("new"));
    let fd = open(env, file.clone(), READ_WRITE.create(true), "create").expect("a file");
    close(env, fd, "close");
    let below_file = file.join("x");
    let below_missing = missing.join("x");
    let linked = env.op(|ring, ctx| ring.hard_link(&missing, &below_file, ctx));
    note(env, "link a missing file below a file", linked);
    let linked = env.op(|ring, ctx| ring.hard_link(slashed(&file), &below_missing, ctx));
    note(env, "link a file with a slash below a missing one", linked);
    let linked = env.op(|ring, ctx| ring.hard_link(&file, slashed(&new), ctx));
    note(env, "link to a new name with a slash", linked);
    let linked = env.op(|ring, ctx| ring.hard_link(&file, slashed(&file), ctx));
    note(env, "link to an existing name with a slash", linked);
    let moved = env.op(|ring, ctx| ring.rename(&missing, &below_file, ctx));
    note(env, "rename a missing file below a file", moved);
    let moved = env.op(|ring, ctx| ring.rename(slashed(&file), &below_missing, ctx));
    note(env, "rename a file with a slash below a missing one", moved);
    let moved = env.op(|ring, ctx| ring.rename(&file, slashed(&new), ctx));
    note(env, "rename to a new name with a slash", moved);
    let moved = env.op(|ring, ctx| ring.rename(&missing, "/", ctx));
    note(env, "rename a missing file onto the root", moved);
    stat(env, file.clone(), "stat the file");
    stat(env, new, "stat the new name");
    let gone = env.op(|ring, ctx| ring.unlink(&file, ctx));
    note(env, "unlink", gone);
}
