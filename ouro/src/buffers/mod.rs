//! Owned buffers that the kernel reads from or writes into.
//!
//! An operation takes its buffer by value and hands it back in its
//! [`Completion`](crate::Completion), so the memory stays alive for exactly as
//! long as the kernel may touch it. Any type implementing [`IoBuf`] (to be
//! written out) or [`IoBufMut`] (to be read into) can be used; ouro stores it
//! type-erased in a [`Buf`] or [`BufVec`] without allocating, and the
//! completion gives it back so that it can be recovered with
//! [`Buf::downcast`].
//!
//! Implemented for `Vec<u8>`, `Box<[u8]>`, `Rc<[u8]>`, `Arc<[u8]>`, `String`,
//! `&'static [u8]`, `&'static str`, and with the `bytes` feature
//! `bytes::Bytes` and `bytes::BytesMut`. [`Slice`] narrows any of them to a
//! range, which is what a partial write re-submits; [`Limit`] caps how much
//! a read may write into a writable one.

mod erased;
pub(crate) mod group;
mod limit;
mod vec;

pub use erased::{Buf, IntoBuf, IntoBufMut, SendBuf};
pub use limit::Limit;
pub use vec::BufVec;

use std::ops::{Bound, RangeBounds};
use std::rc::Rc;
use std::sync::Arc;

/// A buffer an operation may read from (the source of a write or send).
///
/// # Safety
/// `stable_ptr` must point to `bytes_init` initialised bytes that stay valid,
/// at the same address, while the value is moved around and until it is
/// dropped, and that nobody mutates while ouro holds the value.
pub unsafe trait IoBuf: 'static {
    /// Address of the first byte.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes, from `stable_ptr`, are initialised.
    fn bytes_init(&self) -> usize;

    /// Narrows the buffer to `range` of its initialised bytes, keeping
    /// ownership of the whole. Bounds past the end are clamped to the end.
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let len = self.bytes_init();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => len,
        };
        let end = end.min(len);
        Slice {
            inner: self,
            begin: begin.min(end),
            end,
        }
    }
}

/// A buffer an operation may write into (the destination of a read or recv).
///
/// The operation writes into the buffer's *spare* region, starting at
/// `spare_ptr`, and then calls `advance` with the number of bytes it wrote:
/// a `Vec<u8>` is appended to (its spare capacity is filled and its length
/// grows), a `Box<[u8]>` is overwritten from its start.
///
/// # Safety
/// `spare_ptr` must point to `spare_len` writable bytes that stay valid, at
/// the same address, while the value is moved around, and `advance(n)` for
/// `n <= spare_len` must make those bytes part of the buffer's contents.
pub unsafe trait IoBufMut: IoBuf {
    /// Address of the first byte an operation may write.
    fn spare_ptr(&mut self) -> *mut u8;
    /// How many bytes, from `spare_ptr`, an operation may write.
    fn spare_len(&self) -> usize;
    /// Records that the first `n` spare bytes were written.
    ///
    /// # Safety
    /// `n <= spare_len()` and those bytes were initialised.
    unsafe fn advance(&mut self, n: usize);

    /// Lets operations write at most `limit` bytes into the buffer, however
    /// much spare room it has: a read or receive of at most `limit` bytes
    /// into a larger buffer, without sizing it to fit. The buffer comes
    /// back with [`Limit::into_inner`].
    fn limit(self, limit: usize) -> Limit<Self>
    where
        Self: Sized,
    {
        Limit::new(self, limit)
    }
}

// SAFETY: a Vec's heap block does not move when the Vec does; reads into it
// append to the spare capacity, and `set_len` covers only bytes written.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: see the `IoBuf` impl; the spare capacity lies past `len`.
unsafe impl IoBufMut for Vec<u8> {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.spare_capacity_mut().as_mut_ptr().cast()
    }
    fn spare_len(&self) -> usize {
        self.capacity() - self.len()
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the caller wrote `n <= spare_len` bytes past `len`.
        unsafe { self.set_len(self.len() + n) }
    }
}

// SAFETY: a boxed slice's heap block does not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: the whole boxed slice is initialised and writable.
unsafe impl IoBufMut for Box<[u8]> {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn spare_len(&self) -> usize {
        self.len()
    }
    unsafe fn advance(&mut self, _n: usize) {}
}

/// `IoBuf` for types that deref to their bytes, which never move.
macro_rules! io_buf_by_deref {
    ($($(#[$meta:meta])* $ty:ty: $why:literal;)+) => {$(
        $(#[$meta])*
        // SAFETY: the reason given with each type, kept as the impl's doc.
        #[doc = concat!("Stable because ", $why, ".")]
        unsafe impl IoBuf for $ty {
            fn stable_ptr(&self) -> *const u8 {
                self.as_ptr()
            }
            fn bytes_init(&self) -> usize {
                self.len()
            }
        }
    )+};
}

io_buf_by_deref! {
    String: "its heap block does not move with it, and ouro never writes it";
    Rc<[u8]>: "shared slices are immutable and their block outlives every clone";
    Arc<[u8]>: "as for Rc<[u8]>";
    &'static [u8]: "static data never moves and is never freed";
    &'static str: "as for &'static [u8]";
    #[cfg(feature = "bytes")]
    bytes::Bytes: "an immutable view of a heap (or static) block that outlives it";
    #[cfg(feature = "bytes")]
    bytes::BytesMut: "it owns its heap block, which does not move with it";
}

#[cfg(feature = "bytes")]
// SAFETY: reads fill the spare capacity past `len`, as for `Vec<u8>`.
unsafe impl IoBufMut for bytes::BytesMut {
    fn spare_ptr(&mut self) -> *mut u8 {
        self.spare_capacity_mut().as_mut_ptr().cast()
    }
    fn spare_len(&self) -> usize {
        self.capacity() - self.len()
    }
    unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the caller wrote `n <= spare_len` bytes past `len`.
        unsafe { self.set_len(self.len() + n) }
    }
}

/// A range of an owned buffer, made by [`IoBuf::slice`].
#[derive(Debug)]
pub struct Slice<T> {
    inner: T,
    begin: usize,
    end: usize,
}

impl<T> Slice<T> {
    /// The whole buffer.
    pub fn into_inner(self) -> T {
        self.inner
    }
    /// The whole buffer, borrowed.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
    /// Offset of the range's first byte in the whole buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }
    /// Offset just past the range's last byte in the whole buffer.
    pub fn end(&self) -> usize {
        self.end
    }
}

// SAFETY: the range lies inside the inner buffer's initialised bytes, whose
// address the inner `IoBuf` keeps stable.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        self.inner.stable_ptr().wrapping_add(self.begin)
    }
    fn bytes_init(&self) -> usize {
        self.end - self.begin
    }
}

// ---------------------------------------------------------------------------
#[cfg(test)]
mod tests {
    use std::mem;

    use super::erased::fits_inline;
    use super::*;

    #[test]
    fn vec_roundtrips_without_boxing() {
        assert!(fits_inline::<Vec<u8>>());
        assert!(fits_inline::<Slice<Vec<u8>>>());
        assert!(fits_inline::<Rc<[u8]>>());
        let buf = Buf::new(vec![1u8, 2, 3]);
        assert_eq!(&*buf, &[1, 2, 3]);
        assert!(buf.is::<Vec<u8>>());
        assert_eq!(buf.downcast::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn wrong_downcast_gives_the_buffer_back() {
        let buf = Buf::new(Rc::<[u8]>::from(&b"abc"[..]));
        let buf = buf.downcast::<Vec<u8>>().unwrap_err();
        assert_eq!(&*buf, b"abc");
        assert_eq!(buf.into_vec(), b"abc".to_vec());
    }

    #[test]
    fn send_bufs_cross_threads_and_come_back_from_buf() {
        let buf: Buf = SendBuf::new_mut(Vec::<u8>::with_capacity(4)).into();
        assert!(buf.is_writable());
        let mut buf = buf.into_send().unwrap();
        buf = std::thread::spawn(move || buf).join().unwrap();
        let mut buf = buf.into_buf_mut().unwrap();
        let (ptr, len) = buf.spare_parts();
        assert_eq!(len, 4);
        // SAFETY: the region is 4 writable bytes; 1 is written.
        unsafe {
            ptr.write(9);
            buf.advance(1);
        }
        buf.consume(0);
        let send = buf.into_send().unwrap();
        assert_eq!(&*send, &[9]);
        assert_eq!(send.downcast::<Vec<u8>>().unwrap(), vec![9]);
        let payload = crate::Payload::value(SendBuf::new(&b"abc"[..]));
        let back = std::thread::spawn(move || payload).join().unwrap();
        let buf = back.into_value::<SendBuf>().unwrap();
        assert!(!buf.is_writable());
        assert_eq!(Buf::from(buf).into_vec(), b"abc".to_vec());
    }

    #[test]
    fn bufs_made_with_new_do_not_claim_to_be_send() {
        assert!(Buf::new(vec![1u8]).into_send().is_err());
        assert!(Buf::new_mut(vec![1u8]).into_send().is_err());
        let rc = Buf::new(Rc::<[u8]>::from(&b"abc"[..]));
        assert_eq!(&*rc.into_send().unwrap_err(), b"abc");
        assert_eq!(mem::size_of::<Buf>(), mem::size_of::<SendBuf>());
        assert_eq!(mem::size_of::<Buf>(), 7 * mem::size_of::<usize>());
    }

    #[test]
    fn slice_clamps_and_narrows() {
        let s = vec![0u8, 1, 2, 3, 4].slice(2..);
        assert_eq!(s.bytes_init(), 3);
        let buf = Buf::new(s);
        assert_eq!(&*buf, &[2, 3, 4]);
        let s = vec![0u8; 4].slice(3..10);
        assert_eq!((s.begin(), s.end()), (3, 4));
        let s = vec![0u8; 4].slice(9..);
        assert_eq!(s.bytes_init(), 0);
    }

    #[test]
    fn consume_narrows_the_view_only() {
        let mut buf = Buf::new(vec![1u8, 2, 3, 4]);
        buf.consume(1);
        assert_eq!(&*buf, &[2, 3, 4]);
        buf.consume(10);
        assert!(buf.is_empty());
        assert_eq!(buf.downcast::<Vec<u8>>().unwrap(), vec![1, 2, 3, 4]);
        assert!(Buf::new_mut(Vec::<u8>::new()).is_writable());
        assert!(Buf::new(&b"x"[..]).into_buf_mut().is_err());
    }

    #[test]
    fn vec_reads_append_to_spare_capacity() {
        let mut v = Vec::with_capacity(8);
        v.push(7u8);
        let mut buf = Buf::new_mut(v);
        let (ptr, len) = buf.spare_parts();
        assert_eq!(len, 7);
        // SAFETY: the region is 7 writable bytes; 2 are written.
        unsafe {
            ptr.write(8);
            ptr.add(1).write(9);
            buf.advance(2);
        }
        assert_eq!(&*buf, &[7, 8, 9]);
    }

    #[test]
    fn large_user_types_are_boxed_and_dropped_once() {
        struct Big {
            data: Vec<u8>,
            _pad: [u64; 8],
            drops: Rc<std::cell::Cell<u32>>,
        }
        impl Drop for Big {
            fn drop(&mut self) {
                self.drops.set(self.drops.get() + 1);
            }
        }
        // SAFETY: delegates to the Vec, whose block does not move.
        unsafe impl IoBuf for Big {
            fn stable_ptr(&self) -> *const u8 {
                self.data.as_ptr()
            }
            fn bytes_init(&self) -> usize {
                self.data.len()
            }
        }
        let drops = Rc::new(std::cell::Cell::new(0));
        let big = Big {
            data: vec![5; 3],
            _pad: [0; 8],
            drops: drops.clone(),
        };
        assert!(!fits_inline::<Big>());
        let buf = Buf::new(big);
        assert_eq!(&*buf, &[5, 5, 5]);
        drop(buf);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn bufvec_fills_iovecs_and_distributes_reads() {
        let mut bv = BufVec::new_mut(vec![Vec::with_capacity(2), Vec::with_capacity(3)]);
        let mut iov = Vec::new();
        bv.fill_iovecs(&mut iov, true);
        assert_eq!(iov.len(), 2);
        // SAFETY: 2 + 2 bytes written into the two spare regions.
        unsafe {
            std::ptr::copy_nonoverlapping(b"ab".as_ptr(), iov[0].iov_base.cast(), 2);
            std::ptr::copy_nonoverlapping(b"cd".as_ptr(), iov[1].iov_base.cast(), 2);
            bv.advance(4);
        }
        assert_eq!(bv.total_len(), 4);
        let v = bv.downcast::<Vec<u8>>().unwrap();
        assert_eq!(v, vec![b"ab".to_vec(), b"cd".to_vec()]);
    }
}
