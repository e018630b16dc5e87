//! The parts of librados and librbd that the RBD backend uses: hand-written
//! declarations (from `<rados/librados.h>` and `<rbd/librbd.h>`, Ceph
//! Octopus or later for `rbd_aio_write_zeroes`) and safe wrappers around
//! them. This is the only module of the crate with unsafe code.
//!
//! Ownership: [`Cluster`] owns a `rados_t`, [`IoCtx`] a `rados_ioctx_t`
//! and its cluster, [`Image`] an `rbd_image_t` and its I/O context; each
//! closes its handle before the handles it depends on (image, then I/O
//! context, then cluster).
//!
//! Asynchronous requests: every request owns its data buffer and shares it
//! with librbd's completion callback through an `Arc`. The callback stores
//! the result, releases the completion and wakes the future waiting in
//! [`Pending::poll_outcome`]. A waiter that gives up (its deadline passed)
//! just drops its handle: the buffer stays alive until librbd completes
//! the request, so librbd never writes into freed memory.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// `rados_t`.
type RadosHandle = *mut c_void;
/// `rados_ioctx_t`.
type IoCtxHandle = *mut c_void;
/// `rbd_image_t`.
type ImageHandle = *mut c_void;
/// `rbd_completion_t`.
type CompletionHandle = *mut c_void;
/// `rbd_callback_t`.
type Callback = unsafe extern "C" fn(CompletionHandle, *mut c_void);

const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;
const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;

/// `rbd_image_info_t` (160 bytes on 64-bit Linux, as C lays it out).
#[repr(C)]
struct RbdImageInfo {
    size: u64,
    obj_size: u64,
    num_objs: u64,
    order: c_int,
    block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    parent_pool: i64,
    parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

// The size C gives it (checked against the header with a C compiler).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<RbdImageInfo>() == 160);

// The declarations below match <rados/librados.h> and <rbd/librbd.h>
// (Ceph 15 and later); handles are opaque pointers, sizes `size_t`
// (`usize`), `ssize_t` results `isize`.
#[link(name = "rados")]
unsafe extern "C" {
    fn rados_create(cluster: *mut RadosHandle, id: *const c_char) -> c_int;
    fn rados_conf_read_file(cluster: RadosHandle, path: *const c_char) -> c_int;
    fn rados_conf_set(cluster: RadosHandle, option: *const c_char, value: *const c_char) -> c_int;
    fn rados_connect(cluster: RadosHandle) -> c_int;
    fn rados_shutdown(cluster: RadosHandle);
    fn rados_ioctx_create(
        cluster: RadosHandle,
        pool_name: *const c_char,
        ioctx: *mut IoCtxHandle,
    ) -> c_int;
    fn rados_ioctx_destroy(io: IoCtxHandle);
}

#[link(name = "rbd")]
unsafe extern "C" {
    fn rbd_open(
        io: IoCtxHandle,
        name: *const c_char,
        image: *mut ImageHandle,
        snap_name: *const c_char,
    ) -> c_int;
    fn rbd_close(image: ImageHandle) -> c_int;
    fn rbd_stat(image: ImageHandle, info: *mut RbdImageInfo, infosize: usize) -> c_int;
    fn rbd_get_size(image: ImageHandle, size: *mut u64) -> c_int;
    fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: Callback,
        c: *mut CompletionHandle,
    ) -> c_int;
    fn rbd_aio_get_return_value(c: CompletionHandle) -> isize;
    fn rbd_aio_release(c: CompletionHandle);
    fn rbd_aio_read(
        image: ImageHandle,
        off: u64,
        len: usize,
        buf: *mut c_char,
        c: CompletionHandle,
    ) -> c_int;
    fn rbd_aio_write(
        image: ImageHandle,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: CompletionHandle,
    ) -> c_int;
    fn rbd_aio_flush(image: ImageHandle, c: CompletionHandle) -> c_int;
    fn rbd_aio_write_zeroes(
        image: ImageHandle,
        off: u64,
        len: usize,
        c: CompletionHandle,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    fn rbd_get_features(image: ImageHandle, features: *mut u64) -> c_int;
    fn rbd_is_exclusive_lock_owner(image: ImageHandle, is_owner: *mut c_int) -> c_int;
    fn rbd_lock_acquire(image: ImageHandle, lock_mode: LockMode) -> c_int;
    fn rbd_lock_release(image: ImageHandle) -> c_int;
    fn rbd_lock_get_owners(
        image: ImageHandle,
        lock_mode: *mut LockMode,
        lock_owners: *mut *mut c_char,
        max_lock_owners: *mut usize,
    ) -> c_int;
    fn rbd_lock_get_owners_cleanup(lock_owners: *mut *mut c_char, lock_owner_count: usize);
    fn rbd_lock_break(image: ImageHandle, lock_mode: LockMode, lock_owner: *const c_char) -> c_int;
}

/// `rbd_lock_mode_t`: a C enum without negative values, int-sized.
type LockMode = c_uint;
const RBD_LOCK_MODE_EXCLUSIVE: LockMode = 0;

/// `RBD_FEATURE_EXCLUSIVE_LOCK` of `<rbd/features.h>`.
pub(super) const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;

/// Who holds an image's lock, from `rbd_lock_get_owners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LockOwners {
    /// Whether the lock is held in exclusive mode (not shared).
    pub(super) exclusive: bool,
    /// The owners' client addresses, as `rbd_lock_break` takes them.
    pub(super) owners: Vec<CString>,
}

/// A negative return value as a positive errno; `Ok` otherwise.
fn check(r: c_int) -> Result<(), i32> {
    if r < 0 { Err(-r) } else { Ok(()) }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cluster handle (`rados_t`), connected or not; shut down on drop.
pub(super) struct Cluster {
    handle: RadosHandle,
}

// SAFETY: a rados_t is not tied to the thread that created it and may be
// shut down from any thread.
unsafe impl Send for Cluster {}
// SAFETY: the configuration calls take `&mut self`, so they never run
// concurrently; no `&self` method calls into librados (after `connect`
// only librbd uses the handle, through the image, and is thread-safe).
unsafe impl Sync for Cluster {}

impl Cluster {
    /// `rados_create`: a handle for client `id` (`None`: client.admin).
    pub(super) fn create(id: Option<&CStr>) -> Result<Cluster, i32> {
        let mut handle: RadosHandle = ptr::null_mut();
        let id = id.map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: `handle` is a valid out-pointer; `id` is NULL or a
        // NUL-terminated string that outlives the call.
        check(unsafe { rados_create(&mut handle, id) })?;
        Ok(Cluster { handle })
    }

    /// `rados_conf_read_file`; `None` searches the default places
    /// (`$CEPH_CONF`, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf).
    pub(super) fn read_conf(&mut self, path: Option<&CStr>) -> Result<(), i32> {
        let path = path.map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: the handle is valid and not yet connected; `path` is
        // NULL or a NUL-terminated string that outlives the call.
        check(unsafe { rados_conf_read_file(self.handle, path) })
    }

    /// `rados_conf_set`.
    pub(super) fn set(&mut self, option: &CStr, value: &CStr) -> Result<(), i32> {
        // SAFETY: the handle is valid and not yet connected; both strings
        // are NUL-terminated and outlive the call.
        check(unsafe { rados_conf_set(self.handle, option.as_ptr(), value.as_ptr()) })
    }

    /// `rados_connect`: blocks until connected or `client_mount_timeout`.
    pub(super) fn connect(&mut self) -> Result<(), i32> {
        // SAFETY: the handle is valid and configured.
        check(unsafe { rados_connect(self.handle) })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and no I/O context of it is left
        // (an `IoCtx` owns its cluster and destroys itself first).
        unsafe { rados_shutdown(self.handle) };
    }
}

/// An I/O context of one pool (`rados_ioctx_t`), with its cluster.
pub(super) struct IoCtx {
    handle: IoCtxHandle,
    // Dropped after `handle` is destroyed.
    _cluster: Cluster,
}

// SAFETY: I/O contexts may be used from any thread; after creation only
// librbd uses this one, through the image, which is thread-safe.
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl IoCtx {
    /// `rados_ioctx_create` for `pool` of a connected cluster.
    pub(super) fn create(cluster: Cluster, pool: &CStr) -> Result<IoCtx, i32> {
        let mut handle: IoCtxHandle = ptr::null_mut();
        // SAFETY: the cluster handle is valid and connected; `pool` is
        // NUL-terminated; `handle` is a valid out-pointer.
        check(unsafe { rados_ioctx_create(cluster.handle, pool.as_ptr(), &mut handle) })?;
        Ok(IoCtx {
            handle,
            _cluster: cluster,
        })
    }
}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: the handle is valid; an image opened in it is closed
        // before (an `Image` owns its I/O context).
        unsafe { rados_ioctx_destroy(self.handle) };
    }
}

/// Geometry from `rbd_stat`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ImageInfo {
    /// Image size in bytes.
    pub(super) size: u64,
    /// Size of the RADOS objects the image is striped over.
    pub(super) object_size: u64,
}

/// An open RBD image (`rbd_image_t`), with its I/O context.
pub(super) struct Image {
    handle: ImageHandle,
    // Dropped after the image is closed.
    _ioctx: IoCtx,
}

// SAFETY: librbd image handles are thread-safe: the asynchronous I/O
// calls, rbd_get_size and rbd_stat may be made from several threads at
// once (librbd serialises internally), and the handle is not tied to the
// thread that opened it.
unsafe impl Send for Image {}
// SAFETY: as above; `&self` methods only make those thread-safe calls
// (the exclusive lock calls too: librbd serialises them on the image's
// own locks).
unsafe impl Sync for Image {}

impl Image {
    /// `rbd_open` of the image's head (no snapshot), read-write.
    pub(super) fn open(ioctx: IoCtx, name: &CStr) -> Result<Image, i32> {
        let mut handle: ImageHandle = ptr::null_mut();
        // SAFETY: the I/O context is valid; `name` is NUL-terminated; a
        // NULL snapshot name opens the head; `handle` is a valid
        // out-pointer.
        check(unsafe { rbd_open(ioctx.handle, name.as_ptr(), &mut handle, ptr::null()) })?;
        Ok(Image {
            handle,
            _ioctx: ioctx,
        })
    }

    /// `rbd_stat`.
    pub(super) fn stat(&self) -> Result<ImageInfo, i32> {
        let mut info = RbdImageInfo {
            size: 0,
            obj_size: 0,
            num_objs: 0,
            order: 0,
            block_name_prefix: [0; RBD_MAX_BLOCK_NAME_SIZE],
            parent_pool: 0,
            parent_name: [0; RBD_MAX_IMAGE_NAME_SIZE],
        };
        // SAFETY: the image is open; `info` is a valid, writable
        // rbd_image_info_t of the size passed.
        check(unsafe { rbd_stat(self.handle, &mut info, size_of::<RbdImageInfo>()) })?;
        Ok(ImageInfo {
            size: info.size,
            object_size: info.obj_size,
        })
    }

    /// `rbd_get_size`: the current size, also after another client
    /// resized the image (librbd refreshes its header on notification).
    pub(super) fn size(&self) -> Result<u64, i32> {
        let mut size = 0u64;
        // SAFETY: the image is open; `size` is a valid out-pointer.
        check(unsafe { rbd_get_size(self.handle, &mut size) })?;
        Ok(size)
    }

    /// Starts reading `len` bytes at `offset` into a buffer of the
    /// request's own.
    pub(super) fn aio_read(&self, offset: u64, len: usize) -> Result<Pending, i32> {
        let image = self.handle;
        submit(vec![0; len], |buf, len, c| {
            // SAFETY: the image is open; `buf` points to `len` writable
            // bytes that the request keeps alive until `c` completes; `c`
            // is a fresh completion.
            unsafe { rbd_aio_read(image, offset, len, buf.cast(), c) }
        })
    }

    /// Starts writing `data` at `offset`; the request owns `data`.
    pub(super) fn aio_write(&self, offset: u64, data: Vec<u8>) -> Result<Pending, i32> {
        let image = self.handle;
        submit(data, |buf, len, c| {
            // SAFETY: as for the read; librbd only reads the buffer.
            unsafe { rbd_aio_write(image, offset, len, buf.cast_const().cast(), c) }
        })
    }

    /// Starts a flush of librbd's cache (and of the writes before it).
    pub(super) fn aio_flush(&self) -> Result<Pending, i32> {
        let image = self.handle;
        submit(Vec::new(), |_, _, c| {
            // SAFETY: the image is open; `c` is a fresh completion.
            unsafe { rbd_aio_flush(image, c) }
        })
    }

    /// Starts zeroing `len` bytes at `offset`. librbd does this as a
    /// discard that frees whole objects and zeroes partial ones, whatever
    /// `rbd_skip_partial_discard` and `rbd_discard_granularity_bytes` say.
    pub(super) fn aio_write_zeroes(&self, offset: u64, len: usize) -> Result<Pending, i32> {
        let image = self.handle;
        submit(Vec::new(), |_, _, c| {
            // SAFETY: the image is open; `c` is a fresh completion; no
            // flags (0 is the only zero_flags value besides thick
            // provisioning).
            unsafe { rbd_aio_write_zeroes(image, offset, len, c, 0, 0) }
        })
    }
}

impl Image {
    /// `rbd_get_features`: the image's feature bits (`RBD_FEATURE_*`).
    pub(super) fn features(&self) -> Result<u64, i32> {
        let mut features = 0u64;
        // SAFETY: the image is open; `features` is a valid out-pointer.
        check(unsafe { rbd_get_features(self.handle, &mut features) })?;
        Ok(features)
    }

    /// `rbd_is_exclusive_lock_owner`: whether this client holds the
    /// image's exclusive lock.
    pub(super) fn is_lock_owner(&self) -> Result<bool, i32> {
        let mut owner: c_int = 0;
        // SAFETY: the image is open; `owner` is a valid out-pointer.
        check(unsafe { rbd_is_exclusive_lock_owner(self.handle, &mut owner) })?;
        Ok(owner != 0)
    }

    /// `rbd_lock_acquire` in exclusive mode; blocks until librbd has the
    /// lock or gives up.
    pub(super) fn lock_acquire(&self) -> Result<(), i32> {
        // SAFETY: the image is open; the mode is a valid rbd_lock_mode_t.
        check(unsafe { rbd_lock_acquire(self.handle, RBD_LOCK_MODE_EXCLUSIVE) })
    }

    /// `rbd_lock_release`.
    pub(super) fn lock_release(&self) -> Result<(), i32> {
        // SAFETY: the image is open.
        check(unsafe { rbd_lock_release(self.handle) })
    }

    /// `rbd_lock_get_owners`; nobody (no owners) when librbd says
    /// `ENOENT`.
    pub(super) fn lock_owners(&self) -> Result<LockOwners, i32> {
        let mut room = 4usize;
        loop {
            let mut slots: Vec<*mut c_char> = vec![ptr::null_mut(); room];
            let mut count = room;
            let mut mode: LockMode = RBD_LOCK_MODE_EXCLUSIVE;
            // SAFETY: the image is open; `slots` has `count` writable
            // entries; `mode` and `count` are valid out-pointers.
            let r = unsafe {
                rbd_lock_get_owners(self.handle, &mut mode, slots.as_mut_ptr(), &mut count)
            };
            if r == -(nix::libc::ENOENT) {
                return Ok(LockOwners {
                    exclusive: true,
                    owners: Vec::new(),
                });
            }
            if r == -(nix::libc::ERANGE) && count > room {
                // Too small an array: librbd said how many there are.
                room = count;
                continue;
            }
            check(r)?;
            let count = count.min(room);
            let owners = slots[..count]
                .iter()
                .filter(|p| !p.is_null())
                // SAFETY: librbd filled the first `count` entries with
                // NUL-terminated strings of its own, valid until cleanup.
                .map(|&p| unsafe { CStr::from_ptr(p) }.to_owned())
                .collect();
            // SAFETY: the first `count` entries are librbd's strings,
            // freed exactly once here and not used afterwards (copied).
            unsafe { rbd_lock_get_owners_cleanup(slots.as_mut_ptr(), count) };
            return Ok(LockOwners {
                exclusive: mode == RBD_LOCK_MODE_EXCLUSIVE,
                owners,
            });
        }
    }

    /// `rbd_lock_break` of `owner`'s exclusive lock. librbd blocklists the
    /// owner's client first when `rbd_blocklist_on_break_lock` is set.
    /// `EBUSY` when someone else holds the lock by now.
    pub(super) fn lock_break(&self, owner: &CStr) -> Result<(), i32> {
        // SAFETY: the image is open; `owner` is NUL-terminated and outlives
        // the call; the mode is a valid rbd_lock_mode_t.
        check(unsafe { rbd_lock_break(self.handle, RBD_LOCK_MODE_EXCLUSIVE, owner.as_ptr()) })
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and not used again. rbd_close waits
        // for requests still in flight (their callbacks run) and flushes
        // the cache; its error cannot be acted upon here.
        let r = unsafe { rbd_close(self.handle) };
        if r < 0 {
            log::warn!("closing the RBD image failed: errno {}", -r);
        }
    }
}

/// What a request and its completion callback share.
struct Request {
    state: Mutex<RequestState>,
}

struct RequestState {
    /// librbd's return value, once completed.
    result: Option<isize>,
    /// The request's data: read into, or written from, by librbd.
    buf: Vec<u8>,
    /// The future waiting for the result.
    waker: Option<Waker>,
}

/// A request librbd accepted; [`poll_outcome`](Self::poll_outcome) for
/// its result.
pub(super) struct Pending {
    request: Arc<Request>,
}

impl Pending {
    /// librbd's return value (negative: an errno) and the request's buffer
    /// (the data read, for a read) once the request completed; until then
    /// the context's waker is woken by the completion.
    pub(super) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<(isize, Vec<u8>)> {
        let mut state = lock(&self.request.state);
        if let Some(result) = state.result {
            return Poll::Ready((result, std::mem::take(&mut state.buf)));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// A handle that wakes the waiter without keeping the request alive.
    pub(super) fn watch(&self) -> Watch {
        Watch(Arc::downgrade(&self.request))
    }
}

/// A weak handle on a request, for waking its waiter at a deadline.
pub(super) struct Watch(Weak<Request>);

impl Watch {
    /// A handle on no request.
    pub(super) fn gone() -> Watch {
        Watch(Weak::new())
    }

    /// Whether the request is still waited for and not completed.
    pub(super) fn pending(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|r| lock(&r.state).result.is_none())
    }

    /// Wake the waiter (it then looks at its deadline).
    pub(super) fn nudge(&self) {
        let waker = self.0.upgrade().and_then(|r| lock(&r.state).waker.take());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Called by librbd (on one of its threads) when a request completes.
unsafe extern "C" fn on_complete(c: CompletionHandle, arg: *mut c_void) {
    // SAFETY: `c` is the completion being completed; reading its return
    // value and dropping this reference to it (the only one this crate
    // holds) is what librbd's callback contract allows; `c` is not used
    // afterwards.
    let result = unsafe {
        let result = rbd_aio_get_return_value(c);
        rbd_aio_release(c);
        result
    };
    // SAFETY: `arg` is the reference `submit` leaked with Arc::into_raw
    // for this completion, and librbd calls back exactly once per
    // completion, so it is taken back exactly once.
    let request = unsafe { Arc::from_raw(arg.cast_const().cast::<Request>()) };
    let waker = {
        let mut state = lock(&request.state);
        state.result = Some(result);
        state.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Creates a request owning `buf` and a completion that reports to it,
/// then starts the operation with `start(buffer pointer, length,
/// completion)`, which returns librbd's submission result.
fn submit(
    buf: Vec<u8>,
    start: impl FnOnce(*mut u8, usize, CompletionHandle) -> c_int,
) -> Result<Pending, i32> {
    let request = Arc::new(Request {
        state: Mutex::new(RequestState {
            result: None,
            buf,
            waker: None,
        }),
    });
    // The buffer's heap block does not move while it sits in the request;
    // nothing touches it until the callback has stored the result.
    let (data, len) = {
        let mut state = lock(&request.state);
        (state.buf.as_mut_ptr(), state.buf.len())
    };
    let arg = Arc::into_raw(Arc::clone(&request))
        .cast_mut()
        .cast::<c_void>();
    let mut c: CompletionHandle = ptr::null_mut();
    // SAFETY: `arg` stays valid until the callback takes it back;
    // `on_complete` matches rbd_callback_t; `c` is a valid out-pointer.
    let r = unsafe { rbd_aio_create_completion(arg, on_complete, &mut c) };
    if r < 0 {
        // SAFETY: no completion exists, so no callback will take `arg`
        // back; this is the only other owner of that reference.
        drop(unsafe { Arc::from_raw(arg.cast_const().cast::<Request>()) });
        return Err(-r);
    }
    let r = start(data, len, c);
    if r < 0 {
        // librbd reports errors through the completion; should a
        // submission fail anyway, whether the callback still runs is not
        // known, so its reference and the completion are left to it
        // (a small leak instead of a double free).
        return Err(-r);
    }
    Ok(Pending { request })
}
