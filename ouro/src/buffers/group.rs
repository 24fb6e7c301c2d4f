//! Buffer groups: equal-size buffers that the kernel picks from when data
//! arrives, so that a connection waiting for data holds no buffer.
//!
//! On io_uring (5.19+) a group is a *provided buffer ring* shared with the
//! kernel: a multishot receive takes a buffer only when bytes arrive, and
//! dropping the [`Buf`](crate::Buf) it came in puts it back in the ring. On
//! other backends (and older kernels) the group is a free list the backend
//! takes from when it performs the receive; the API is the same.

#[cfg(target_os = "linux")]
use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::rc::Rc;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU16, Ordering};

use super::IoBuf;

/// A pool of `count` buffers of `size` bytes each for
/// [`Ring::recv_multishot`](crate::Ring::recv_multishot), made by
/// [`Ring::buffer_group`](crate::Ring::buffer_group). Cloning gives another
/// handle to the same group.
///
/// A group belongs to the ring that made it: group ids are per ring, so
/// another ring would take its buffers from a group of its own with the
/// same id. A receive on another ring with it fails with `InvalidInput`.
#[derive(Clone)]
pub struct BufferGroup {
    pub(crate) inner: Rc<GroupInner>,
}

impl fmt::Debug for BufferGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferGroup")
            .field("id", &self.inner.id)
            .field("count", &self.inner.count)
            .field("size", &self.inner.size)
            .field("available", &self.available())
            .finish()
    }
}

impl BufferGroup {
    /// The group's id (io_uring's buffer group id).
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// How many buffers it has.
    pub fn count(&self) -> u16 {
        self.inner.count
    }

    /// The size of each buffer.
    pub fn buffer_size(&self) -> usize {
        self.inner.size
    }

    /// How many buffers are free for the kernel or backend to fill (not
    /// held by a completion's `Buf` or by an operation in flight).
    pub fn available(&self) -> usize {
        self.inner.count as usize - self.inner.handed_out()
    }
}

pub(crate) struct GroupInner {
    /// The id of the ring that made it (its `FdTable`'s): io_uring
    /// resolves `id` in that ring only.
    ring: u32,
    pub(crate) id: u16,
    count: u16,
    size: usize,
    memory: NonNull<u8>,
    /// Buffers handed out (to completions or to operations in flight).
    out: Cell<usize>,
    mode: RefCell<Mode>,
}

enum Mode {
    /// Registered with the kernel as a provided buffer ring.
    #[cfg(target_os = "linux")]
    Kernel(KernelRing),
    /// A free list the backend takes buffers from.
    User(Vec<u16>),
    /// The ring that used the group is gone: buffers are not reused.
    Detached,
}

/// The ring of `io_uring_buf` entries shared with the kernel.
#[cfg(target_os = "linux")]
pub(crate) struct KernelRing {
    entries: NonNull<io_uring::types::BufRingEntry>,
    mask: u16,
    tail: u16,
}

/// io_uring wants a provided buffer ring's entries page aligned.
#[cfg(target_os = "linux")]
const PAGE: usize = 4096;

impl GroupInner {
    /// A group of ring `ring`, of `count` (a power of two, at most 32768)
    /// buffers of `size` bytes, in user mode until a backend registers it.
    /// Bad sizes are `InvalidInput`; memory that cannot be had is
    /// `OutOfMemory` (never an abort: the sizes come from the caller).
    pub(crate) fn new(ring: u32, id: u16, count: u16, size: usize) -> io::Result<GroupInner> {
        let invalid = |why| io::Error::new(io::ErrorKind::InvalidInput, why);
        if count == 0 || !count.is_power_of_two() || count > 32768 {
            return Err(invalid(
                "the buffer count must be a power of two between 1 and 32768",
            ));
        }
        if size == 0 || size > u32::MAX as usize {
            return Err(invalid("the buffer size must be between 1 byte and 4 GiB"));
        }
        let bytes = (count as usize)
            .checked_mul(size)
            .filter(|&bytes| bytes <= isize::MAX as usize)
            .ok_or_else(|| invalid("the buffer group is larger than the address space"))?;
        let memory = map_zeroed(bytes)?;
        Ok(GroupInner {
            ring,
            id,
            count,
            size,
            memory,
            out: Cell::new(0),
            mode: RefCell::new(Mode::User((0..count).rev().collect())),
        })
    }

    fn bytes(&self) -> usize {
        self.count as usize * self.size
    }

    /// The id of the ring that made it.
    pub(crate) fn ring(&self) -> u32 {
        self.ring
    }

    #[cfg(target_os = "linux")]
    fn ring_layout(&self) -> Layout {
        let bytes = self.count as usize * std::mem::size_of::<io_uring::types::BufRingEntry>();
        Layout::from_size_align(bytes, PAGE).expect("at most 32768 entries")
    }

    pub(crate) fn buffer_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid < count`, so the offset stays inside the allocation.
        unsafe { self.memory.as_ptr().add(bid as usize * self.size) }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    #[cfg(target_os = "linux")]
    /// Builds the kernel's ring with every buffer in it; the caller
    /// registers it and calls `set_kernel_ring` when that worked. `None`
    /// when its memory cannot be had: the group then stays a free list.
    pub(crate) fn kernel_ring(&self) -> Option<KernelRing> {
        let layout = self.ring_layout();
        // SAFETY: the layout is non-zero (count >= 1) and page aligned, as
        // io_uring requires of a buffer ring.
        let entries = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?
            .cast::<io_uring::types::BufRingEntry>();
        let mut ring = KernelRing {
            entries,
            mask: self.count - 1,
            tail: 0,
        };
        for bid in 0..self.count {
            self.push_entry(&mut ring, bid);
        }
        Some(ring)
    }

    #[cfg(target_os = "linux")]
    /// The address of a ring's entries, for registering.
    pub(crate) fn ring_address(ring: &KernelRing) -> u64 {
        ring.entries.as_ptr() as u64
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn set_kernel_ring(&self, ring: KernelRing) {
        *self.mode.borrow_mut() = Mode::Kernel(ring);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn is_kernel_ring(&self) -> bool {
        #[cfg(target_os = "linux")]
        return matches!(*self.mode.borrow(), Mode::Kernel(_));
        #[cfg(not(target_os = "linux"))]
        false
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// How many buffers are handed out (to completions, to operations in
    /// flight, or to user code in a `Buf`).
    pub(crate) fn handed_out(&self) -> usize {
        self.out.get()
    }

    #[cfg(target_os = "linux")]
    /// Frees a ring the kernel refused.
    pub(crate) fn discard_kernel_ring(&self, ring: KernelRing) {
        // SAFETY: the ring was allocated with this layout and the kernel
        // does not know it.
        unsafe { alloc::dealloc(ring.entries.as_ptr().cast(), self.ring_layout()) }
    }

    #[cfg(target_os = "linux")]
    fn push_entry(&self, ring: &mut KernelRing, bid: u16) {
        let index = (ring.tail & ring.mask) as usize;
        // SAFETY: `index <= mask < count`; the entry at the tail is not
        // owned by the kernel (it only reads entries between head and tail,
        // and at most `count` buffers are ever in the ring). Only addr, len
        // and bid are written: entry 0's last field is the shared tail.
        unsafe {
            let entry = &mut *ring.entries.as_ptr().add(index);
            entry.set_addr(self.buffer_ptr(bid) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        ring.tail = ring.tail.wrapping_add(1);
        // SAFETY: the tail field lives in the first entry, which this ring
        // owns; the kernel reads it atomically.
        let tail = unsafe {
            AtomicU16::from_ptr(
                io_uring::types::BufRingEntry::tail(ring.entries.as_ptr()) as *mut u16
            )
        };
        tail.store(ring.tail, Ordering::Release);
    }

    /// Takes a free buffer in user mode (`None` when all are out, or in
    /// kernel mode, where the kernel picks).
    pub(crate) fn take_free(&self) -> Option<u16> {
        let Mode::User(free) = &mut *self.mode.borrow_mut() else {
            return None;
        };
        let bid = free.pop()?;
        self.out.set(self.out.get() + 1);
        Some(bid)
    }

    /// Counts a buffer the kernel picked from its ring as handed out (in
    /// user mode, `take_free` counted it already).
    pub(crate) fn note_kernel_pick(&self) {
        #[cfg(target_os = "linux")]
        if matches!(*self.mode.borrow(), Mode::Kernel(_)) {
            self.out.set(self.out.get() + 1);
        }
    }

    /// Gives buffer `bid` back to the kernel ring or the free list.
    pub(crate) fn recycle(&self, bid: u16) {
        self.out.set(self.out.get().saturating_sub(1));
        match &mut *self.mode.borrow_mut() {
            #[cfg(target_os = "linux")]
            Mode::Kernel(ring) => self.push_entry(ring, bid),
            Mode::User(free) => free.push(bid),
            Mode::Detached => {}
        }
    }

    /// The ring that used the group is going away and the kernel has let
    /// go of the buffer ring (or never had it): stop recycling.
    pub(crate) fn detach(&self) {
        let old = std::mem::replace(&mut *self.mode.borrow_mut(), Mode::Detached);
        #[cfg(target_os = "linux")]
        if let Mode::Kernel(ring) = old {
            self.discard_kernel_ring(ring);
        }
        #[cfg(not(target_os = "linux"))]
        drop(old);
    }
}

impl Drop for GroupInner {
    fn drop(&mut self) {
        self.detach();
        // SAFETY: mapped with this length in `new`; no buffer handle is
        // left (each holds an `Rc` to this group) and the kernel no longer
        // uses the memory (the ring unregisters groups before it frees them).
        // It fails only for a range that is not a mapping, which this is.
        unsafe { libc::munmap(self.memory.as_ptr().cast(), self.bytes()) };
    }
}

/// `bytes` (at least 1) of zeroed memory for a group's buffers: an
/// anonymous mapping, whose pages the kernel maps as zero pages and backs
/// with memory only once written, so that buffers no receive has used take
/// none. (`alloc_zeroed` promises no such thing: once glibc has freed a
/// mapped block at least this large, it serves the size from its heap and
/// zeroes every byte, holding the whole group in memory.)
fn map_zeroed(bytes: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a new private mapping where the kernel chooses; no memory
    // the program uses is touched.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    let out_of_memory = |why: io::Error| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("the buffer group's memory could not be mapped: {why}"),
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(out_of_memory(io::Error::last_os_error()));
    }
    NonNull::new(addr.cast()).ok_or_else(|| out_of_memory(io::Error::other("mapped at 0")))
}

/// A buffer of a group holding `len` received bytes; dropping it gives the
/// buffer back to the group.
pub(crate) struct GroupBuf {
    group: Rc<GroupInner>,
    bid: u16,
    len: u32,
}

impl GroupBuf {
    pub(crate) fn new(group: Rc<GroupInner>, bid: u16, len: usize) -> GroupBuf {
        let len = len.min(group.size) as u32;
        GroupBuf { group, bid, len }
    }
}

// SAFETY: the bytes lie in the group's allocation, which the `Rc` keeps
// alive and which never moves; while this value holds buffer `bid`, neither
// the kernel nor a backend writes it (it is in no ring and no free list).
unsafe impl IoBuf for GroupBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.group.buffer_ptr(self.bid)
    }
    fn bytes_init(&self) -> usize {
        self.len as usize
    }
}

impl Drop for GroupBuf {
    fn drop(&mut self) {
        self.group.recycle(self.bid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_be_powers_of_two() {
        assert!(GroupInner::new(0, 0, 3, 64).is_err());
        assert!(GroupInner::new(0, 0, 4, 0).is_err());
        assert!(GroupInner::new(0, 0, 4, 64).is_ok());
    }

    /// How many pages of the group's memory are in memory.
    fn resident_pages(group: &GroupInner) -> usize {
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let start = group.memory.as_ptr() as usize;
        let first = start & !(page - 1);
        let pages = (start + group.bytes() - first).div_ceil(page);
        let mut resident = vec![0u8; pages];
        // SAFETY: the range, rounded out to whole pages, lies in the
        // group's mapping; `resident` has a byte for each of its pages.
        let done = unsafe {
            libc::mincore(
                first as *mut libc::c_void,
                pages * page,
                resident.as_mut_ptr().cast(),
            )
        };
        assert_eq!(done, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&page| page & 1 == 1).count()
    }

    #[test]
    #[cfg_attr(miri, ignore = "asks the kernel which pages are in memory")]
    fn a_group_takes_memory_only_where_its_buffers_are_written() {
        const COUNT: u16 = 1024;
        const SIZE: usize = 8192;
        let bytes = COUNT as usize * SIZE;
        // Memory glibc would hand `calloc` for a block of the group's size
        // (and zero by hand): a freed larger mapped block raises its
        // mapping threshold, and a block of the size written and freed
        // lies in its heap.
        drop(std::hint::black_box(vec![1u8; 2 * bytes]));
        drop(std::hint::black_box(vec![1u8; bytes]));
        let group = GroupInner::new(0, 0, COUNT, SIZE).unwrap();
        assert_eq!(resident_pages(&group), 0);
        // SAFETY: buffer 3 lies in the group's memory and nothing else
        // uses it.
        unsafe { group.buffer_ptr(3).write_bytes(7, SIZE) };
        let resident = resident_pages(&group);
        assert!(
            resident > 0 && resident < bytes / 4096,
            "{resident} pages in memory"
        );
    }

    #[test]
    fn user_mode_buffers_come_back_on_drop() {
        let group = Rc::new(GroupInner::new(0, 1, 2, 8).unwrap());
        let a = group.take_free().unwrap();
        let b = group.take_free().unwrap();
        assert_ne!(a, b);
        assert_eq!(group.take_free(), None);
        // SAFETY: buffer `a` is out of the free list, 8 bytes long.
        unsafe { std::ptr::copy_nonoverlapping(b"hi".as_ptr(), group.buffer_ptr(a), 2) };
        let buf = crate::Buf::new(GroupBuf::new(group.clone(), a, 2));
        assert_eq!(&*buf, b"hi");
        drop(buf);
        assert_eq!(group.take_free(), Some(a));
        group.recycle(b);
        group.recycle(a);
        assert_eq!(BufferGroup { inner: group }.available(), 2);
    }
}
