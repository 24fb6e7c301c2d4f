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
//! range, which is what a partial write re-submits.

pub(crate) mod group;

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::ops::{Bound, Deref, RangeBounds};
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
// Type erasure without allocation: a value of up to five words is stored
// inline, a larger one in a box; a static table of functions knows its type.

const INLINE_WORDS: usize = 5;
type Storage = MaybeUninit<[usize; INLINE_WORDS]>;

const fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Storage>()
        && mem::align_of::<T>() <= mem::align_of::<Storage>()
}

/// Moves `value` into storage, boxing it when it does not fit.
fn store<T>(value: T) -> Storage {
    let mut storage = Storage::uninit();
    if fits_inline::<T>() {
        // SAFETY: `T` fits the storage's size and alignment (checked above).
        unsafe { storage.as_mut_ptr().cast::<T>().write(value) }
    } else {
        // SAFETY: a `Box<T>` is one pointer, which always fits.
        unsafe { storage.as_mut_ptr().cast::<Box<T>>().write(Box::new(value)) }
    }
    storage
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`.
unsafe fn stored_ref<T>(storage: &Storage) -> &T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline.
        unsafe { &*storage.as_ptr().cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline.
        unsafe { &*storage.as_ptr().cast::<Box<T>>() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`.
unsafe fn stored_mut<T>(storage: &mut Storage) -> &mut T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline.
        unsafe { &mut *storage.as_mut_ptr().cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline.
        unsafe { &mut *storage.as_mut_ptr().cast::<Box<T>>() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`; it is dead afterwards.
unsafe fn take_stored<T>(storage: &Storage) -> T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` lives inline and gives it up.
        unsafe { storage.as_ptr().cast::<T>().read() }
    } else {
        // SAFETY: the caller guarantees a `Box<T>` lives inline and gives it up.
        unsafe { *storage.as_ptr().cast::<Box<T>>().read() }
    }
}

/// # Safety
/// `storage` holds a live `T` written by `store::<T>`; it is dead afterwards.
unsafe fn drop_stored<T>(storage: &mut Storage) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { take_stored::<T>(storage) })
}

/// Address and length of a writable buffer's spare region.
type SpareFn = unsafe fn(&mut Storage) -> (*mut u8, usize);

struct BufVTable {
    type_id: fn() -> TypeId,
    ptr: unsafe fn(&Storage) -> *const u8,
    len: unsafe fn(&Storage) -> usize,
    spare: Option<SpareFn>,
    advance: unsafe fn(&mut Storage, usize),
    drop: unsafe fn(&mut Storage),
    /// Whether the stored type is `Send`: kept in the table rather than in
    /// each `Buf`, so that recording it costs no space.
    send: bool,
}

struct BufFns<T>(T);

impl<T: IoBuf> BufFns<T> {
    const READ_ONLY: BufVTable = BufVTable {
        type_id: TypeId::of::<T>,
        ptr: Self::ptr,
        len: Self::len,
        spare: None,
        advance: Self::no_advance,
        drop: drop_stored::<T>,
        send: false,
    };

    unsafe fn ptr(s: &Storage) -> *const u8 {
        // SAFETY: this table is only paired with storage holding a `T`.
        unsafe { stored_ref::<T>(s) }.stable_ptr()
    }
    unsafe fn len(s: &Storage) -> usize {
        // SAFETY: as above.
        unsafe { stored_ref::<T>(s) }.bytes_init()
    }
    unsafe fn no_advance(_: &mut Storage, _: usize) {}
}

impl<T: IoBufMut> BufFns<T> {
    const WRITABLE: BufVTable = BufVTable {
        type_id: TypeId::of::<T>,
        ptr: Self::ptr,
        len: Self::len,
        spare: Some(Self::spare),
        advance: Self::advance,
        drop: drop_stored::<T>,
        send: false,
    };

    unsafe fn spare(s: &mut Storage) -> (*mut u8, usize) {
        // SAFETY: this table is only paired with storage holding a `T`.
        let buf = unsafe { stored_mut::<T>(s) };
        (buf.spare_ptr(), buf.spare_len())
    }
    unsafe fn advance(s: &mut Storage, n: usize) {
        // SAFETY: as above; ouro passes the kernel's count, `n <= spare_len`.
        unsafe { stored_mut::<T>(s).advance(n) }
    }
}

impl<T: IoBuf + Send> BufFns<T> {
    const SEND_READ_ONLY: BufVTable = BufVTable {
        send: true,
        ..Self::READ_ONLY
    };
}

impl<T: IoBufMut + Send> BufFns<T> {
    const SEND_WRITABLE: BufVTable = BufVTable {
        send: true,
        ..Self::WRITABLE
    };
}

/// An owned, type-erased buffer: the one an operation was given, handed
/// back in its completion.
///
/// It dereferences to the buffer's initialised bytes; [`Buf::downcast`]
/// recovers the original value. Creating one does not allocate for values of
/// up to five machine words (every buffer type ouro implements the traits
/// for); a larger user type is boxed.
///
/// A `Buf` is neither `Send` nor `Sync`, whatever it wraps: the type it
/// erased may be an `Rc` (a buffer group's buffers are), whose count two
/// threads must not touch. So neither a `Buf` nor a [`Completion`] holding
/// one crosses threads:
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// std::thread::spawn(move || drop(buf));
/// ```
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// let payload = ouro::Payload::value(buf);
/// ```
///
/// ```compile_fail,E0277
/// fn on_another_thread(c: ouro::Completion) {
///     std::thread::spawn(move || drop(c));
/// }
/// ```
///
/// ```compile_fail,E0277
/// let buf = ouro::Buf::new(vec![1u8, 2, 3]);
/// std::thread::scope(|s| {
///     s.spawn(|| buf.len());
/// });
/// ```
///
/// A buffer that is `Send` goes in as a [`SendBuf`] to come back out as
/// one with [`Buf::into_send`].
///
/// [`Completion`]: crate::Completion
pub struct Buf {
    storage: Storage,
    vtable: &'static BufVTable,
    /// Bytes dropped from the front of the view by [`Buf::consume`].
    skip: usize,
    /// The erased type may be neither `Send` nor `Sync`.
    _not_send: PhantomData<*const ()>,
}

/// A [`Buf`] that may move to another thread: it is built only from a
/// buffer that is `Send`.
///
/// Operations take it wherever they take a `Buf` (it converts for free),
/// and [`Buf::into_send`] turns the `Buf` a completion hands back into a
/// `SendBuf` again, to pass it to another thread (in a
/// [`Payload::value`](crate::Payload::value), say):
///
/// ```
/// use ouro::{Buf, Payload, SendBuf};
///
/// let buf: Buf = SendBuf::new(vec![1u8, 2, 3]).into(); // as a completion gives it back
/// let send = buf.into_send().expect("built from a SendBuf");
/// let len = std::thread::spawn(move || send.len()).join().unwrap();
/// assert_eq!(len, 3);
/// let payload = Payload::value(SendBuf::new_mut(Vec::<u8>::with_capacity(16)));
/// # drop(payload);
/// ```
///
/// It is not `Sync` (the erased type need not be), and one cannot be made
/// from a buffer that is not `Send`:
///
/// ```compile_fail,E0277
/// let buf = ouro::SendBuf::new(std::rc::Rc::<[u8]>::from(&b"abc"[..]));
/// ```
pub struct SendBuf(Buf);

// SAFETY: a `SendBuf` is only made from a `T: Send` (`new`, `new_mut`, or a
// `Buf` whose table says it was made so), and `Buf` shares nothing between
// values: moving it moves (or, boxed, owns) the `T` alone. It stays `!Sync`
// through the inner `Buf`.
unsafe impl Send for SendBuf {}

impl SendBuf {
    /// Wraps a buffer that operations only read from.
    pub fn new<T: IoBuf + Send>(value: T) -> SendBuf {
        SendBuf(Buf {
            storage: store(value),
            vtable: &BufFns::<T>::SEND_READ_ONLY,
            skip: 0,
            _not_send: PhantomData,
        })
    }

    /// Wraps a buffer that operations may also write into.
    pub fn new_mut<T: IoBufMut + Send>(value: T) -> SendBuf {
        SendBuf(Buf {
            storage: store(value),
            vtable: &BufFns::<T>::SEND_WRITABLE,
            skip: 0,
            _not_send: PhantomData,
        })
    }

    /// Whether operations may write into it (it wraps an [`IoBufMut`]).
    pub fn is_writable(&self) -> bool {
        self.0.is_writable()
    }

    /// Gives back the original value if it is a `T`, else `self` unchanged
    /// (see [`Buf::downcast`]).
    pub fn downcast<T: 'static>(self) -> Result<T, SendBuf> {
        self.0.downcast().map_err(SendBuf)
    }

    /// The `Buf` it is, for the thread it is on now.
    pub fn into_buf(self) -> Buf {
        self.0
    }
}

impl From<SendBuf> for Buf {
    fn from(buf: SendBuf) -> Buf {
        buf.0
    }
}

impl Deref for SendBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SendBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuf").field("len", &self.len()).finish()
    }
}

/// What an operation that reads from a buffer (write, send) accepts: any
/// [`IoBuf`], or a [`Buf`] handed back by an earlier completion (e.g. after
/// [`Buf::consume`] to re-submit the rest of a partial write).
pub trait IntoBuf {
    /// Wraps the value, or passes a `Buf` through.
    fn into_buf(self) -> Buf;
}

impl<T: IoBuf> IntoBuf for T {
    fn into_buf(self) -> Buf {
        Buf::new(self)
    }
}

impl IntoBuf for Buf {
    fn into_buf(self) -> Buf {
        self
    }
}

impl IntoBuf for SendBuf {
    fn into_buf(self) -> Buf {
        self.0
    }
}

/// What an operation that writes into a buffer (read, recv) accepts: any
/// [`IoBufMut`], or a writable [`Buf`] handed back by an earlier
/// completion, to read more into it.
pub trait IntoBufMut {
    /// Wraps the value, or passes a `Buf` through; `Err` gives back a `Buf`
    /// that only wraps a read-only buffer.
    fn into_buf_mut(self) -> Result<Buf, Buf>;
}

impl<T: IoBufMut> IntoBufMut for T {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        Ok(Buf::new_mut(self))
    }
}

impl IntoBufMut for Buf {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        if self.is_writable() {
            Ok(self)
        } else {
            Err(self)
        }
    }
}

impl IntoBufMut for SendBuf {
    fn into_buf_mut(self) -> Result<Buf, Buf> {
        self.0.into_buf_mut()
    }
}

impl Buf {
    /// Wraps a buffer that operations only read from.
    pub fn new<T: IoBuf>(value: T) -> Buf {
        Buf {
            storage: store(value),
            vtable: &BufFns::<T>::READ_ONLY,
            skip: 0,
            _not_send: PhantomData,
        }
    }

    /// Wraps a buffer that operations may also write into.
    pub fn new_mut<T: IoBufMut>(value: T) -> Buf {
        Buf {
            storage: store(value),
            vtable: &BufFns::<T>::WRITABLE,
            skip: 0,
            _not_send: PhantomData,
        }
    }

    /// Drops `n` bytes (at most all) from the front of the view: what a
    /// partial write or send re-submits is the rest. The original value is
    /// unchanged.
    pub fn consume(&mut self, n: usize) {
        let len = self.len();
        self.skip += n.min(len);
    }

    /// Whether operations may write into it (it wraps an [`IoBufMut`]).
    pub fn is_writable(&self) -> bool {
        self.vtable.spare.is_some()
    }

    /// Gives back the original value if it is a `T`, else `self` unchanged.
    /// Bytes dropped with [`consume`](Buf::consume) are still in it.
    pub fn downcast<T: 'static>(self) -> Result<T, Buf> {
        if (self.vtable.type_id)() != TypeId::of::<T>() {
            return Err(self);
        }
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: the type ids match, so the storage holds a live `T`;
        // `this` is never dropped, so the value is moved out exactly once.
        Ok(unsafe { take_stored::<T>(&this.storage) })
    }

    /// The same buffer as a [`SendBuf`], to move to another thread, if it
    /// was made as one (else `self` unchanged): a `Buf` built with
    /// [`Buf::new`] does not know whether what it wraps is `Send`.
    pub fn into_send(self) -> Result<SendBuf, Buf> {
        if self.vtable.send {
            Ok(SendBuf(self))
        } else {
            Err(self)
        }
    }

    /// Whether the original value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        (self.vtable.type_id)() == TypeId::of::<T>()
    }

    /// The bytes in view as a `Vec<u8>`: the original one when it was a
    /// `Vec<u8>` with nothing consumed, else a copy.
    pub fn into_vec(self) -> Vec<u8> {
        if self.skip > 0 {
            return self.to_vec();
        }
        match self.downcast::<Vec<u8>>() {
            Ok(vec) => vec,
            Err(buf) => buf.to_vec(),
        }
    }

    /// Address and length of the initialised bytes in view, for the kernel
    /// to read.
    pub(crate) fn raw_parts(&self) -> (*const u8, usize) {
        // SAFETY: the table matches the stored type.
        let (ptr, len) = unsafe {
            (
                (self.vtable.ptr)(&self.storage),
                (self.vtable.len)(&self.storage),
            )
        };
        let skip = self.skip.min(len);
        (ptr.wrapping_add(skip), len - skip)
    }

    /// Address and length of the spare bytes, for the kernel to write; an
    /// empty region for a read-only buffer.
    pub(crate) fn spare_parts(&mut self) -> (*mut u8, usize) {
        match self.vtable.spare {
            // SAFETY: the table matches the stored type.
            Some(spare) => unsafe { spare(&mut self.storage) },
            None => (std::ptr::null_mut(), 0),
        }
    }

    /// Records that an operation wrote `n` bytes into the spare region.
    ///
    /// # Safety
    /// `n` bytes at `spare_parts()` were initialised, `n <= spare len`.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        // SAFETY: the table matches the stored type; `n` is forwarded.
        unsafe { (self.vtable.advance)(&mut self.storage, n) }
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let (ptr, len) = self.raw_parts();
        if len == 0 {
            return &[];
        }
        // SAFETY: `IoBuf` promises `len` initialised bytes at `ptr`, alive as
        // long as the value, which `self` owns.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: the table matches the stored type, dropped once here.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf").field("len", &self.len()).finish()
    }
}

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
/// Like [`Buf`], it is neither `Send` nor `Sync`, whatever it wraps;
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

#[cfg(test)]
mod tests {
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
