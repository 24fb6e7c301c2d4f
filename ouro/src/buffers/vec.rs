//! `BufVec`: the buffers of a vectored operation behind one type, with
//! the iovec array the kernel reads.

use super::erased::{drop_stored, store, stored_mut, stored_ref, take_stored, Storage};
use super::{IoBuf, IoBufMut};
use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self};

// ---------------------------------------------------------------------------
// Vectors of buffers, for readv/writev/sendmsg/recvmsg.

struct BufVecVTable {
    type_id: fn() -> TypeId,
    count: unsafe fn(&Storage) -> usize,
    fill_iovecs: unsafe fn(&mut Storage, &mut Vec<libc::iovec>, bool),
    advance: unsafe fn(&mut Storage, usize),
    total_init: unsafe fn(&Storage) -> usize,
    drop: unsafe fn(&mut Storage),
}

struct VecFns<T>(T);

impl<T: IoBuf> VecFns<T> {
    const READ_ONLY: BufVecVTable = BufVecVTable {
        type_id: TypeId::of::<Vec<T>>,
        count: Self::count,
        fill_iovecs: Self::fill_read_only,
        advance: Self::no_advance,
        total_init: Self::total_init,
        drop: drop_stored::<Vec<T>>,
    };

    unsafe fn count(s: &Storage) -> usize {
        // SAFETY: this table is only paired with storage holding a `Vec<T>`.
        unsafe { stored_ref::<Vec<T>>(s) }.len()
    }
    unsafe fn total_init(s: &Storage) -> usize {
        // SAFETY: as above.
        unsafe { stored_ref::<Vec<T>>(s) }
            .iter()
            .map(|b| b.bytes_init())
            .sum()
    }
    unsafe fn fill_read_only(s: &mut Storage, out: &mut Vec<libc::iovec>, _writable: bool) {
        // SAFETY: as above.
        let bufs = unsafe { stored_ref::<Vec<T>>(s) };
        out.clear();
        out.extend(bufs.iter().map(|b| libc::iovec {
            iov_base: b.stable_ptr() as *mut libc::c_void,
            iov_len: b.bytes_init(),
        }));
    }
    unsafe fn no_advance(_: &mut Storage, _: usize) {}
}

impl<T: IoBufMut> VecFns<T> {
    const WRITABLE: BufVecVTable = BufVecVTable {
        type_id: TypeId::of::<Vec<T>>,
        count: Self::count,
        fill_iovecs: Self::fill,
        advance: Self::advance,
        total_init: Self::total_init,
        drop: drop_stored::<Vec<T>>,
    };

    unsafe fn fill(s: &mut Storage, out: &mut Vec<libc::iovec>, writable: bool) {
        if !writable {
            // SAFETY: forwarded; the storage holds a `Vec<T>`.
            return unsafe { Self::fill_read_only(s, out, false) };
        }
        // SAFETY: this table is only paired with storage holding a `Vec<T>`.
        let bufs = unsafe { stored_mut::<Vec<T>>(s) };
        out.clear();
        out.extend(bufs.iter_mut().map(|b| libc::iovec {
            iov_base: b.spare_ptr().cast(),
            iov_len: b.spare_len(),
        }));
    }
    unsafe fn advance(s: &mut Storage, mut n: usize) {
        // SAFETY: as above.
        let bufs = unsafe { stored_mut::<Vec<T>>(s) };
        for buf in bufs.iter_mut() {
            let step = n.min(buf.spare_len());
            // SAFETY: the kernel filled the spare regions in order; `step`
            // bytes of this one were written.
            unsafe { buf.advance(step) };
            n -= step;
            if n == 0 {
                break;
            }
        }
    }
}

/// An owned, type-erased vector of buffers (a `Vec<T>` of one buffer type),
/// for vectored operations; handed back in their completion.
///
/// Like [`Buf`](super::Buf), it is neither `Send` nor `Sync`, whatever it wraps;
/// [`BufVec::downcast`] gives back the `Vec<T>`, which is `Send` when `T`
/// is:
///
/// ```compile_fail,E0277
/// let bufs = ouro::BufVec::new(vec![std::rc::Rc::<[u8]>::from(&b"abc"[..])]);
/// std::thread::spawn(move || drop(bufs));
/// ```
pub struct BufVec {
    storage: Storage,
    vtable: &'static BufVecVTable,
    /// The erased type may be neither `Send` nor `Sync`.
    _not_send: PhantomData<*const ()>,
}

impl BufVec {
    /// Wraps buffers that operations only read from.
    pub fn new<T: IoBuf>(bufs: Vec<T>) -> BufVec {
        BufVec {
            storage: store(bufs),
            vtable: &VecFns::<T>::READ_ONLY,
            _not_send: PhantomData,
        }
    }

    /// Wraps buffers that operations may also write into.
    pub fn new_mut<T: IoBufMut>(bufs: Vec<T>) -> BufVec {
        BufVec {
            storage: store(bufs),
            vtable: &VecFns::<T>::WRITABLE,
            _not_send: PhantomData,
        }
    }

    /// Gives back the original `Vec<T>` if that is what it holds.
    pub fn downcast<T: 'static>(self) -> Result<Vec<T>, BufVec> {
        if (self.vtable.type_id)() != TypeId::of::<Vec<T>>() {
            return Err(self);
        }
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: the type ids match, so the storage holds a live `Vec<T>`,
        // moved out exactly once because `this` is never dropped.
        Ok(unsafe { take_stored::<Vec<T>>(&this.storage) })
    }

    /// How many buffers it holds.
    pub fn len(&self) -> usize {
        // SAFETY: the table matches the stored type.
        unsafe { (self.vtable.count)(&self.storage) }
    }

    /// Whether it holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the buffers' initialised lengths.
    pub fn total_len(&self) -> usize {
        // SAFETY: the table matches the stored type.
        unsafe { (self.vtable.total_init)(&self.storage) }
    }

    /// Fills `out` with one iovec per buffer: the initialised bytes for the
    /// kernel to read, or with `writable` the spare bytes for it to write.
    pub(crate) fn fill_iovecs(&mut self, out: &mut Vec<libc::iovec>, writable: bool) {
        // SAFETY: the table matches the stored type.
        unsafe { (self.vtable.fill_iovecs)(&mut self.storage, out, writable) }
    }

    /// Records that an operation wrote `n` bytes across the spare regions.
    ///
    /// # Safety
    /// The kernel wrote `n` bytes into the iovecs `fill_iovecs(.., true)` made.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the table matches the stored type; `n` is forwarded.
        unsafe { (self.vtable.advance)(&mut self.storage, n) }
    }
}

impl Drop for BufVec {
    fn drop(&mut self) {
        // SAFETY: the table matches the stored type, dropped once here.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

impl fmt::Debug for BufVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufVec")
            .field("buffers", &self.len())
            .field("len", &self.total_len())
            .finish()
    }
}
