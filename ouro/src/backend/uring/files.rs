//! Ring fds on io_uring: the fixed file table, its slots, and each ring
//! fd's record (its slot, its process fd, or both).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::IoUring;

use super::prep::Target;
use super::{Immediate, RawCompletion, Uring};
use crate::fd::{Fd, Named};

/// `IORING_REGISTER_FILE_ALLOC_RANGE` (Linux 6.0), which the io-uring crate
/// does not wrap.
const REGISTER_FILE_ALLOC_RANGE: libc::c_long = 25;

/// The kernel's `struct io_uring_file_index_range`.
#[repr(C)]
struct FileIndexRange {
    off: u32,
    len: u32,
    resv: u64,
}

/// Makes the kernel allocate fixed-table slots (`IORING_FILE_INDEX_ALLOC`)
/// only in `from..size`.
fn restrict_allocations(ring: &IoUring, from: u32, size: u32) -> io::Result<()> {
    let range = FileIndexRange {
        off: from,
        len: size - from,
        resv: 0,
    };
    // SAFETY: the kernel reads one `io_uring_file_index_range` (the layout
    // of `FileIndexRange`) from the pointer, which is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            REGISTER_FILE_ALLOC_RANGE,
            &range as *const FileIndexRange,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Uring {
    pub(crate) fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        let slot = if may_use_table {
            self.files.ensure_table(&self.ring);
            self.files.register(&self.ring, fd.as_raw_fd())
        } else {
            None
        };
        self.files.set(file, File::new(slot, Some(fd)));
        if let Some(slot) = slot {
            self.files.table_mut().occupy(slot, file);
        }
    }

    /// The fixed-table slot of ring fd `file`, if it has one.
    pub(crate) fn fixed_slot(&self, file: u32) -> Option<u32> {
        self.files
            .get(file)
            .map(|record| record.slot)
            .filter(|&slot| slot != NO_SLOT)
    }

    /// Whether other rings can move files into this ring's fixed table
    /// (MSG_RING doorbells work, and the table is registered and split).
    pub(crate) fn accepts_fixed(&mut self) -> bool {
        self.doorbells && self.files.ensure_table(&self.ring) && self.files.split_table(&self.ring)
    }

    /// Empties `slot`, filled by a parcel whose message was withdrawn,
    /// unless a ring fd holds it already (the file was then replaced).
    pub(crate) fn close_orphan(&mut self, slot: u32) {
        let Table::Registered(slots) = &self.files.table else {
            return;
        };
        if slots
            .owners
            .get(slot as usize)
            .is_some_and(|&o| o != NO_SLOT)
        {
            return;
        }
        if let Err(e) = self.ring.submitter().register_files_update(slot, &[-1]) {
            tracing::warn!(error = %e, slot, "closing a withdrawn parcel's file failed");
        }
    }

    pub(crate) fn adopt_fixed(&mut self, file: u32, slot: u32) {
        self.files.set(file, File::new(Some(slot), None));
        self.files.table_mut().occupy(slot, file);
    }

    pub(crate) fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        match self.files.get(file) {
            Some(File { fd: Some(fd), .. }) => Ok(fd.as_fd()),
            Some(File { slot, .. }) if *slot != NO_SLOT => Err(no_process_fd()),
            _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    /// Gives ring fd `file` back: its process fd, or for a direct
    /// descriptor a new one installed from the table; its slot is emptied.
    pub(crate) fn take_file(
        &mut self,
        file: u32,
        stash: &mut Vec<RawCompletion>,
    ) -> io::Result<OwnedFd> {
        let (slot, has_fd) = match self.files.get(file) {
            Some(record) => (record.slot, record.fd.is_some()),
            None => (NO_SLOT, false),
        };
        let fd = match (has_fd, slot) {
            (true, _) => self.files.take(file).fd,
            (false, NO_SLOT) => None,
            (false, slot) => {
                let fd = self.install(slot, stash)?;
                self.files.take(file);
                Some(fd)
            }
        };
        let fd = fd.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        if slot != NO_SLOT {
            self.files.unregister(&self.ring, slot, file);
        }
        Ok(fd)
    }

    /// Ring fd `file`'s close finished: its slot is free again (the kernel
    /// emptied it); whatever a close that never ran left is closed now.
    pub(crate) fn forget_file(&mut self, file: u32) {
        let record = self.files.take(file);
        if record.closing != NO_SLOT {
            self.files.table_mut().vacate(record.closing, file);
        }
        if record.slot != NO_SLOT {
            self.files.unregister(&self.ring, record.slot, file);
        }
    }

    /// Closes every ring fd: their process fds, and the fixed table at
    /// once (nothing is in flight), rather than when the kernel tears the
    /// ring down later.
    pub(crate) fn close_files(&mut self) {
        self.files.records.clear();
        if matches!(self.files.table, Table::Registered(_)) {
            if let Err(e) = self.ring.submitter().unregister_files() {
                tracing::warn!(error = %e, "unregistering the fixed file table failed");
            }
        }
    }

    /// Leaves every ring fd open: operations in flight may name them.
    pub(crate) fn leak_files(&mut self) {
        for record in self.files.records.drain(..) {
            std::mem::forget(record);
        }
    }
}

/// Marks "no slot of the fixed table".
const NO_SLOT: u32 = u32::MAX;

/// A ring fd as this backend keeps it.
struct File {
    /// Its slot in the fixed file table, or `NO_SLOT`.
    slot: u32,
    /// Its process fd: given with `register_fd`, or accepted as a plain fd.
    /// A direct descriptor has none.
    fd: Option<OwnedFd>,
    /// The slot a close was sent for, freed when the close has finished.
    closing: u32,
}

impl File {
    const EMPTY: File = File {
        slot: NO_SLOT,
        fd: None,
        closing: NO_SLOT,
    };

    fn new(slot: Option<u32>, fd: Option<OwnedFd>) -> File {
        File {
            slot: slot.unwrap_or(NO_SLOT),
            fd,
            closing: NO_SLOT,
        }
    }
}

/// The fixed file table: set up on first use, or refused by the kernel.
enum Table {
    /// Not needed yet; this many slots when it is (0: never; `None`: as
    /// many as the fd limit then allows, which the kernel checks the size
    /// against).
    Unused(Option<u32>),
    Registered(Slots),
    Refused,
}

/// Which ring fd holds each slot of the fixed table, as far as this side
/// knows: slots the kernel filled for a direct accept are known once its
/// completion is reaped, and a closed slot stays taken until its close has
/// finished.
struct Slots {
    owners: Vec<u32>,
    size: u32,
    /// ouro's own registrations take slots below this; the kernel's
    /// allocations (direct accepts, files other rings move here) the rest,
    /// once the table is split (see `Files::split_table`).
    own_end: u32,
    used: u32,
    /// Used slots among those the kernel allocates from.
    kernel_used: u32,
    /// Where the search for a free slot starts.
    hint: u32,
}

impl Slots {
    fn new(size: u32) -> Slots {
        Slots {
            owners: Vec::new(),
            size,
            own_end: size,
            used: 0,
            kernel_used: 0,
            hint: 0,
        }
    }

    /// Keeps ouro's own registrations below `own_end`, the kernel's
    /// allocations above it.
    fn split(&mut self, own_end: u32) {
        self.own_end = own_end;
        let below = self.owners.iter().take(own_end as usize);
        let own_used = below.filter(|&&owner| owner != NO_SLOT).count() as u32;
        self.kernel_used = self.used - own_used;
    }

    /// The first slot the kernel allocates: the table is all its own
    /// until it is split.
    fn kernel_first(&self) -> u32 {
        if self.own_end < self.size {
            self.own_end
        } else {
            0
        }
    }

    /// Free slots among those the kernel allocates from.
    fn kernel_free(&self) -> u32 {
        self.size - self.kernel_first() - self.kernel_used
    }

    fn count_use(&mut self, slot: u32, used: bool) {
        let change = |count: &mut u32| {
            *count = if used { *count + 1 } else { *count - 1 };
        };
        change(&mut self.used);
        if slot >= self.kernel_first() {
            change(&mut self.kernel_used);
        }
    }

    fn occupy(&mut self, slot: u32, file: u32) {
        let i = slot as usize;
        if i >= self.owners.len() {
            self.owners.resize(i + 1, NO_SLOT);
        }
        if self.owners[i] == NO_SLOT {
            self.count_use(slot, true);
        }
        self.owners[i] = file;
    }

    /// Frees `slot` if `file` still holds it (a direct accept may have been
    /// given it since its close was issued).
    fn vacate(&mut self, slot: u32, file: u32) {
        if let Some(owner) = self.owners.get_mut(slot as usize) {
            if *owner == file {
                *owner = NO_SLOT;
                self.count_use(slot, false);
                self.hint = self.hint.min(slot);
            }
        }
    }

    fn free_slot(&mut self) -> Option<u32> {
        if self.used >= self.size {
            return None;
        }
        let start = self.hint.min(self.own_end);
        let slot = (start..self.own_end)
            .chain(0..start)
            .find(|&slot| self.owners.get(slot as usize).is_none_or(|&o| o == NO_SLOT))?;
        self.hint = slot + 1;
        Some(slot)
    }
}

/// The ring fds, by the slot the ring chose for each, and the fixed table.
pub(super) struct Files {
    records: Vec<File>,
    table: Table,
    /// Direct opens and sockets submitted into the table and not yet
    /// settled: each may take one slot the table does not show as used.
    claimed: u32,
    /// Direct accepts submitted into the table and not yet ended: each may
    /// take any number of slots.
    accepting: u32,
}

impl Files {
    pub(super) fn new(size: Option<u32>) -> Files {
        Files {
            records: Vec::new(),
            table: Table::Unused(size),
            claimed: 0,
            accepting: 0,
        }
    }

    fn get(&self, file: u32) -> Option<&File> {
        self.records.get(file as usize)
    }

    fn set(&mut self, file: u32, record: File) {
        let i = file as usize;
        if i >= self.records.len() {
            self.records.resize_with(i + 1, || File::EMPTY);
        }
        self.records[i] = record;
    }

    fn take(&mut self, file: u32) -> File {
        match self.records.get_mut(file as usize) {
            Some(record) => std::mem::replace(record, File::EMPTY),
            None => File::EMPTY,
        }
    }

    fn table_mut(&mut self) -> &mut Slots {
        match &mut self.table {
            Table::Registered(slots) => slots,
            // Slots are only handed out by a registered table.
            _ => unreachable!("a fixed-table slot without a table"),
        }
    }

    /// Registers the fixed table (sparse) if it is not yet; whether there
    /// is one.
    pub(super) fn ensure_table(&mut self, ring: &IoUring) -> bool {
        let Table::Unused(size) = self.table else {
            return matches!(self.table, Table::Registered(_));
        };
        let size = size.unwrap_or_else(default_table_size);
        if size == 0 {
            self.table = Table::Refused;
            return false;
        }
        match ring.submitter().register_files_sparse(size) {
            Ok(()) => {
                tracing::debug!(size, "fixed file table registered");
                self.table = Table::Registered(Slots::new(size));
                true
            }
            Err(e) => {
                // Said once per ring: its ring fds will be process fds, and
                // count against the fd limit.
                tracing::warn!(error = %e, size, "no fixed file table: ring fds use their fds");
                self.table = Table::Refused;
                false
            }
        }
    }

    /// Splits the table so that the kernel allocates slots (for direct
    /// accepts, and for files other rings move here, which may arrive at
    /// any moment) only above an eighth of it, and ouro's own
    /// registrations take the slots below: the two can then never pick the
    /// same slot. Whether the table is split.
    fn split_table(&mut self, ring: &IoUring) -> bool {
        let Table::Registered(slots) = &mut self.table else {
            return false;
        };
        if slots.own_end < slots.size {
            return true;
        }
        let own_end = slots.size / 8;
        if let Err(e) = restrict_allocations(ring, own_end, slots.size) {
            tracing::debug!(error = %e, "cannot split the fixed table: no files from other rings");
            return false;
        }
        slots.split(own_end);
        true
    }

    /// The table's used slots and size if every slot the kernel allocates
    /// from (all of them, or those above ouro's own once split) is taken.
    pub(super) fn kernel_slots_taken(&self) -> Option<(u32, u32)> {
        let Table::Registered(slots) = &self.table else {
            return None;
        };
        (slots.kernel_free() == 0).then_some((slots.used, slots.size))
    }

    /// Free slots the kernel may allocate, as far as completions tell.
    fn kernel_free(&self) -> u32 {
        match &self.table {
            Table::Registered(slots) => slots.kernel_free(),
            _ => 0,
        }
    }

    /// Whether a direct open or socket may go into the table, which then
    /// counts it. The kernel picks its slot only when it finishes, so a
    /// slot must be left for it whatever the operations in flight take:
    /// one each for the opens and sockets, any number for an accept. A
    /// plain fd is always right; `FdTableFull` would not be.
    pub(super) fn claim_slot(&mut self) -> bool {
        let room = self.accepting == 0 && self.kernel_free() > self.claimed;
        self.claimed += u32::from(room);
        room
    }

    /// Whether a direct accept may go into the table, which then counts
    /// it: a slot is free, and no direct open or socket in flight counts
    /// on one (the accept could take them all first).
    pub(super) fn claim_for_accept(&mut self) -> bool {
        let room = self.claimed == 0 && self.kernel_free() > 0;
        self.accepting += u32::from(room);
        room
    }

    /// A direct operation that went into the table has ended (`accept`: an
    /// accept): every slot it took has been reported.
    pub(super) fn release(&mut self, accept: bool) {
        let count = if accept {
            &mut self.accepting
        } else {
            &mut self.claimed
        };
        *count = count.saturating_sub(1);
    }

    /// Puts `fd` into a free slot of the table; `None` if there is no
    /// table, no room, or the kernel refused.
    fn register(&mut self, ring: &IoUring, fd: RawFd) -> Option<u32> {
        let Table::Registered(slots) = &mut self.table else {
            return None;
        };
        let slot = slots.free_slot()?;
        match ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Some(slot),
            result => {
                tracing::debug!(
                    ?result,
                    slot,
                    "registering a ring fd in the fixed table failed"
                );
                None
            }
        }
    }

    /// Empties `slot` of ring fd `file` at once (nothing may use it).
    fn unregister(&mut self, ring: &IoUring, slot: u32, file: u32) {
        if let Err(e) = ring.submitter().register_files_update(slot, &[-1]) {
            tracing::warn!(error = %e, slot, "emptying a fixed-table slot failed");
        }
        self.table_mut().vacate(slot, file);
    }

    /// How the kernel sees `fd`.
    #[inline(always)]
    pub(super) fn target(&self, fd: Fd) -> Target {
        match fd.named() {
            Named::Raw(raw) => Target::Fd(raw),
            Named::Ring(file) => match self.get(file) {
                Some(record) if record.slot != NO_SLOT => Target::Fixed(record.slot),
                Some(File { fd: Some(fd), .. }) => Target::Fd(fd.as_raw_fd()),
                _ => Target::Fd(-1),
            },
        }
    }

    /// A process fd for a system call made in place of an operation the
    /// kernel lacks.
    pub(super) fn process_fd(&self, fd: Fd) -> Result<RawFd, Immediate> {
        match fd.named() {
            Named::Raw(raw) => Ok(raw),
            Named::Ring(file) => match self.get(file) {
                Some(File { fd: Some(fd), .. }) => Ok(fd.as_raw_fd()),
                Some(File { slot, .. }) if *slot != NO_SLOT => {
                    Err(Immediate::Failed(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "io_uring cannot do this here (no form of the operation \
                         takes a fixed file, or the kernel lacks it), and a direct \
                         descriptor has no process fd for the system call",
                    )))
                }
                _ => Ok(-1),
            },
        }
    }

    /// What the close of ring fd `file` closes: its slot (its process fd,
    /// an extra reference, is closed here), or else its process fd.
    pub(super) fn begin_close(&mut self, file: u32) -> Option<Target> {
        let record = self.records.get_mut(file as usize)?;
        if record.slot != NO_SLOT {
            drop(record.fd.take());
            record.closing = std::mem::replace(&mut record.slot, NO_SLOT);
            return Some(Target::Fixed(record.closing));
        }
        let fd = record.fd.take()?;
        Some(Target::Fd(fd.into_raw_fd()))
    }
}

/// The fixed table's size unless the ring was built with another: as many
/// files as the process may have open (the kernel's limit for the table),
/// up to 65536 (about 0.5 MiB of kernel memory).
fn default_table_size() -> u32 {
    const CAP: u32 = 1 << 16;
    // SAFETY: getrlimit writes into the struct we pass.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    u32::try_from(limit.rlim_cur).unwrap_or(CAP).min(CAP)
}

/// Why a direct descriptor cannot be lent or given back.
fn no_process_fd() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this ring fd is a direct descriptor: io_uring accepted it straight into its \
         fixed file table, and the process has no fd for it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(size: u32) -> Files {
        let mut files = Files::new(Some(size));
        files.table = Table::Registered(Slots::new(size));
        files
    }

    #[test]
    fn direct_opens_in_flight_claim_the_free_slots() {
        let mut files = files(2);
        assert!(files.claim_slot() && files.claim_slot());
        assert!(!files.claim_slot(), "both free slots are claimed");
        files.table_mut().occupy(0, 7);
        files.release(false);
        assert!(!files.claim_slot(), "the released claim's slot is used");
        files.release(false);
        assert!(files.claim_slot(), "that one failed: its slot is free");
    }

    #[test]
    fn a_direct_accept_and_direct_opens_keep_out_of_each_others_way() {
        let mut files = files(8);
        assert!(files.claim_for_accept());
        assert!(!files.claim_slot(), "the accept may take every slot");
        files.release(true);
        assert!(files.claim_slot());
        assert!(!files.claim_for_accept(), "the open counts on a slot");
        files.release(false);
        assert!(files.claim_for_accept());
    }

    #[test]
    fn a_split_table_counts_only_the_kernels_slots() {
        let mut slots = Slots::new(16);
        for slot in [0, 1, 5] {
            slots.occupy(slot, slot);
        }
        slots.split(2);
        assert_eq!(slots.kernel_free(), 13);
        slots.vacate(0, 0);
        assert_eq!(slots.kernel_free(), 13, "an own slot");
        for slot in 2..16 {
            slots.occupy(slot, slot);
        }
        assert_eq!((slots.kernel_free(), slots.used), (0, 15));
    }
}
