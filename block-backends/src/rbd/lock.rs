//! The image's exclusive lock in failover mode, and the session it is
//! held through.
//!
//! Writes pass only while this client holds the lock; otherwise they start
//! an acquisition on a thread of its own and are answered BUSY at once, so
//! that the initiator retries. Acquiring breaks the lock of the current
//! owner, which blocklists (fences) the owner's client: nothing it sends
//! afterwards lands. A client that finds itself fenced opens a new session
//! (a new client) before acquiring. Reads never take the lock.
//!
//! Without failover the gate admits every request to the one session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use nix::errno::Errno;
use scsi_emu::BlockError;

use super::ffi;
use super::session::{self, SessionParams};

/// Where an RBD device in failover mode stands with the image's exclusive
/// lock ([`RbdDevice::lock_state`](super::RbdDevice::lock_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Not held; the next write starts acquiring it (and is answered
    /// BUSY). Always so without failover.
    Unlocked,
    /// Being acquired in the background; writes are answered BUSY.
    Acquiring,
    /// Held: writes go to the cluster.
    Locked,
    /// Another client took the lock and the cluster blocklisted this one;
    /// the next request starts opening a new session (and is answered BUSY).
    Fenced,
}

/// How often acquiring looks at the owner again after the lock changed
/// hands under it.
const ATTEMPTS: usize = 4;

/// Whether a request failing with `errno` means that this client lost the
/// lock: blocklisted (`ESHUTDOWN`, which is also `EBLOCKLISTED`), or, for
/// a request that needs the lock (writes, flushes), `EROFS` (librbd in
/// manual lock mode refuses those without the lock).
pub(super) fn fenced_by(needs_lock: bool, errno: i32) -> bool {
    errno == Errno::ESHUTDOWN as i32 || (needs_lock && errno == Errno::EROFS as i32)
}

fn describe(errno: i32) -> &'static str {
    Errno::from_raw(errno).desc()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// `Unlocked`, `Acquiring` or `Locked` (never `Fenced`: see `fenced`).
    lock: LockState,
    /// The session's client was blocklisted; it must be replaced.
    fenced: bool,
    /// A background thread is reopening or acquiring.
    working: bool,
    /// The device is being dropped: start nothing more.
    closing: bool,
}

struct Shared {
    /// "pool/image", for messages.
    name: String,
    /// As the device was opened; a new session is opened in failover mode
    /// whatever `params.failover` says once `failover` is set.
    params: SessionParams,
    /// Failover mode: from the start, or since [`Gate::enter_failover`].
    failover: AtomicBool,
    /// Requests clone the `Arc`, so that a replaced session is closed when
    /// the last request using it has finished.
    session: RwLock<Arc<ffi::Image>>,
    state: Mutex<State>,
}

impl Shared {
    fn session(&self) -> Arc<ffi::Image> {
        Arc::clone(&self.session.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Admits requests to the current session, and keeps the lock in failover
/// mode. A clone is another handle on the same gate.
#[derive(Clone)]
pub(super) struct Gate {
    shared: Arc<Shared>,
}

impl Gate {
    /// A gate over `image`, opened with `params`.
    pub(super) fn new(name: String, params: SessionParams, image: ffi::Image) -> Gate {
        Gate {
            shared: Arc::new(Shared {
                name,
                failover: AtomicBool::new(params.failover),
                params,
                session: RwLock::new(Arc::new(image)),
                state: Mutex::new(State {
                    lock: LockState::Unlocked,
                    fenced: false,
                    working: false,
                    closing: false,
                }),
            }),
        }
    }

    /// Whether failover mode is on.
    pub(super) fn in_failover(&self) -> bool {
        self.shared.failover.load(Ordering::Acquire)
    }

    /// Switches to failover mode for good; false if it was on already.
    /// The session stays: librbd takes the lock by itself only until the
    /// first explicit acquisition, which the next write now starts.
    pub(super) fn enter_failover(&self) -> bool {
        !self.shared.failover.swap(true, Ordering::AcqRel)
    }

    /// The current session, for requests that need no admission.
    pub(super) fn session(&self) -> Arc<ffi::Image> {
        self.shared.session()
    }

    /// The session a request runs on, or BUSY (while the lock is being
    /// acquired for a write, or a fenced session replaced).
    pub(super) fn admit(&self, writes: bool) -> Result<Arc<ffi::Image>, BlockError> {
        if !self.in_failover() {
            return Ok(self.shared.session());
        }
        let mut state = lock(&self.shared.state);
        if writes && (state.lock != LockState::Locked || state.fenced) {
            if state.lock != LockState::Acquiring {
                log::info!(
                    "RBD image {}: a write needs the exclusive lock; acquiring it",
                    self.shared.name
                );
                state.lock = LockState::Acquiring;
            }
            self.start_work(&mut state);
            return Err(BlockError::Busy);
        }
        if state.fenced {
            self.start_work(&mut state);
            return Err(BlockError::Busy);
        }
        Ok(self.shared.session())
    }

    /// Takes note that a request on `session` failed with `errno`; true
    /// when that means the lock is lost (the request is then BUSY).
    pub(super) fn lost(&self, session: &Arc<ffi::Image>, needs_lock: bool, errno: i32) -> bool {
        if !self.in_failover() || !fenced_by(needs_lock, errno) {
            return false;
        }
        if !Arc::ptr_eq(session, &self.shared.session()) {
            // An older session's request: already replaced.
            return true;
        }
        let mut state = lock(&self.shared.state);
        if !state.fenced {
            state.fenced = true;
            if state.lock == LockState::Locked {
                state.lock = LockState::Unlocked;
            }
            log::warn!(
                "RBD image {}: lock lost: another gateway took the image ({}); \
                 this client is fenced and will reconnect",
                self.shared.name,
                describe(errno)
            );
        }
        true
    }

    /// Whether a flush has nothing to do: in failover mode without the
    /// lock. The cache is off there, so every acknowledged write is on the
    /// OSDs already, and librbd refuses a flush without the lock.
    pub(super) fn flush_is_moot(&self) -> bool {
        self.in_failover() && self.lock_state() != LockState::Locked
    }

    /// Where the lock stands.
    pub(super) fn lock_state(&self) -> LockState {
        let state = *lock(&self.shared.state);
        if state.fenced && state.lock != LockState::Acquiring {
            LockState::Fenced
        } else {
            state.lock
        }
    }

    /// Starts the background work unless it runs.
    fn start_work(&self, state: &mut State) {
        if state.working || state.closing {
            return;
        }
        state.working = true;
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("rbd-lock".into())
            .spawn(move || work(&shared));
        if let Err(e) = spawned {
            log::error!(
                "RBD image {}: cannot start a thread to acquire the lock: {e}",
                self.shared.name
            );
            state.working = false;
            if state.lock == LockState::Acquiring {
                state.lock = LockState::Unlocked;
            }
        }
    }

    /// Stops starting work and releases the lock if held (before the
    /// session closes).
    pub(super) fn close(&self) {
        let held = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            state.lock == LockState::Locked && !state.fenced
        };
        // A gateway whose lock was broken may not have noticed (nothing
        // it sent since was refused): librbd would refuse the release.
        let owner = held && self.shared.session().is_lock_owner().unwrap_or(true);
        if held && !owner {
            log::info!(
                "RBD image {}: the lock had passed to another gateway; nothing to release",
                self.shared.name
            );
        }
        if owner {
            match self.shared.session().lock_release() {
                Ok(()) => log::info!("RBD image {}: lock released", self.shared.name),
                Err(errno) => log::warn!(
                    "RBD image {}: releasing the lock failed: {}",
                    self.shared.name,
                    describe(errno)
                ),
            }
        }
    }
}

/// The background work: replace a fenced session, then acquire the lock
/// if a write asked for it. One thread at a time (`State::working`).
fn work(shared: &Shared) {
    let name = &shared.name;
    let mut refenced = false;
    loop {
        let state = *lock(&shared.state);
        if state.closing {
            lock(&shared.state).working = false;
            return;
        }
        if state.fenced {
            log::info!("RBD image {name}: opening a new session (this client is fenced)");
            // Only failover mode fences, so a new session is opened in it.
            let params = SessionParams {
                failover: true,
                ..shared.params.clone()
            };
            match session::open(&params) {
                Ok(image) => {
                    let old = std::mem::replace(
                        &mut *shared
                            .session
                            .write()
                            .unwrap_or_else(PoisonError::into_inner),
                        Arc::new(image),
                    );
                    lock(&shared.state).fenced = false;
                    log::info!("RBD image {name}: new session open");
                    // Closed here unless requests still use it.
                    drop(old);
                }
                Err(e) => {
                    log::error!("RBD image {name}: opening a new session failed: {e}");
                    let mut state = lock(&shared.state);
                    state.working = false;
                    if state.lock == LockState::Acquiring {
                        state.lock = LockState::Unlocked;
                    }
                    return;
                }
            }
        }
        if lock(&shared.state).lock != LockState::Acquiring {
            lock(&shared.state).working = false;
            return;
        }
        let result = acquire(name, &shared.session());
        let mut state = lock(&shared.state);
        match result {
            Ok(()) => {
                log::info!("RBD image {name}: exclusive lock acquired");
                state.lock = LockState::Locked;
                state.working = false;
                return;
            }
            Err(errno) if errno == Errno::ESHUTDOWN as i32 && !refenced => {
                log::warn!("RBD image {name}: this client is fenced; reconnecting");
                state.fenced = true;
                refenced = true;
            }
            Err(errno) => {
                log::error!(
                    "RBD image {name}: acquiring the exclusive lock failed: {}",
                    describe(errno)
                );
                state.fenced |= errno == Errno::ESHUTDOWN as i32;
                state.lock = LockState::Unlocked;
                state.working = false;
                return;
            }
        }
    }
}

/// Takes the exclusive lock for `image`'s client, breaking (and so
/// fencing) the current owner's.
fn acquire(name: &str, image: &ffi::Image) -> Result<(), i32> {
    if image.is_lock_owner()? {
        log::info!("RBD image {name}: this client holds the lock already");
        return Ok(());
    }
    'attempts: for _ in 0..ATTEMPTS {
        let found = image.lock_owners()?;
        if !found.exclusive {
            log::error!("RBD image {name}: the image is locked in shared mode");
            return Err(Errno::EBUSY as i32);
        }
        for owner in &found.owners {
            log::info!(
                "RBD image {name}: breaking the lock of {} (blocklisting its client)",
                owner.to_string_lossy()
            );
            match image.lock_break(owner) {
                Ok(()) => {}
                // Released meanwhile.
                Err(errno) if errno == Errno::ENOENT as i32 => {}
                Err(errno) if errno == Errno::EBUSY as i32 => {
                    log::info!("RBD image {name}: the lock changed hands; looking again");
                    continue 'attempts;
                }
                Err(errno) => return Err(errno),
            }
        }
        log::info!("RBD image {name}: acquiring the exclusive lock");
        match image.lock_acquire() {
            Ok(()) => return Ok(()),
            // Another client took it first (EROFS: librbd's word for "not
            // the owner").
            Err(errno)
                if [Errno::EBUSY, Errno::EROFS, Errno::EAGAIN]
                    .iter()
                    .any(|e| *e as i32 == errno) =>
            {
                log::info!(
                    "RBD image {name}: not acquired ({}); looking at the owner again",
                    describe(errno)
                );
            }
            Err(errno) => return Err(errno),
        }
    }
    Err(Errno::EBUSY as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocklisting_fences_every_request_and_erofs_only_writes() {
        let (shutdown, rofs) = (Errno::ESHUTDOWN as i32, Errno::EROFS as i32);
        assert_eq!(shutdown, 108, "EBLOCKLISTED is ESHUTDOWN");
        assert!(fenced_by(true, shutdown));
        assert!(fenced_by(false, shutdown));
        assert!(fenced_by(true, rofs));
        assert!(!fenced_by(false, rofs));
        for other in [Errno::ETIMEDOUT, Errno::EIO, Errno::EBUSY, Errno::ENOSPC] {
            assert!(!fenced_by(true, other as i32), "{other}");
            assert!(!fenced_by(false, other as i32), "{other}");
        }
    }
}
