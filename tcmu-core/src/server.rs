//! The serving loop: wait for the kernel, drain every published entry,
//! hand each command to a handler, complete it, notify the kernel.
//!
//! With `workers == 0` commands run on the serving thread, one after the
//! other, with one notification per batch. With workers, a pool of threads
//! takes turns at reading the ring (leader/followers): the leader waits
//! for the kernel, reads every published entry, keeps the first command
//! for itself and hands the rest to the others, and gives up the lead to
//! an idle worker before it executes. So a command is read and executed
//! by one thread, with no hand-off, unless commands arrive faster than one
//! thread runs them; and the ring is read while the leader executes, so a
//! slow command holds up nothing else. Each worker completes its command
//! in the ring (under a lock) as soon as it finishes, in any order (the
//! kernel's out-of-order completion). Workers that finish together share
//! one notification. The serving thread only supervises: the stop
//! request, workers stuck in a backend call, errors.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scsi_sense_codes::ScsiStatus;

use crate::handler::{AsyncCommandHandler, CommandHandler};
use crate::layout::MB_CMD_HEAD;
use crate::pending::{Completer, PendingCommand};
use crate::poll::wait_readable;
use crate::ring::{Command, Reply, Ring, RingEntry, RingError};
use crate::spin_policy::SpinPolicy;
use crate::uio::{UioDevice, Wake};
use crate::work_queue::{Next, SharedNotify, WorkQueue};

/// The notification channel between kernel and handler: the UIO device,
/// or the simulated kernel's stand-in.
pub trait Doorbell {
    /// Block until the kernel signals new entries, one of `others` becomes
    /// readable, or `timeout` passes; the kernel's signal is consumed.
    fn wait(&self, others: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Wake>;
    /// Tell the kernel that completions are in the ring.
    fn notify(&self) -> io::Result<()>;
}

impl Doorbell for UioDevice {
    fn wait(&self, others: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Wake> {
        UioDevice::wait(self, others, timeout)
    }
    fn notify(&self) -> io::Result<()> {
        UioDevice::notify(self)
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ring became unusable.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Waiting for or sending a notification on the UIO device failed.
    #[error("UIO device: {0}")]
    Io(#[from] io::Error),
}

/// How a device is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Worker threads executing commands; 0 runs them on the serving thread.
    pub workers: usize,
    /// How long a stop waits for commands still executing.
    pub drain_timeout: Duration,
    /// How long the worker reading the ring watches for the next entry
    /// before it sleeps until the kernel wakes it (zero: never). Under
    /// load the next command often comes sooner than a wake-up costs.
    pub spin: Duration,
    /// Spin (up to `spin`) only while it pays: while spins find entries
    /// and the process's threads are not being preempted, which is what
    /// an initiator that needs every CPU does to them.
    pub spin_adaptive: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            // At least 4 even on small machines: a worker also does the
            // kernel's part of completing (copying read data out of the
            // data area during the notification), so a few more threads
            // than CPUs keep the backend busy meanwhile.
            workers: std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .clamp(4, 8),
            drain_timeout: Duration::from_secs(10),
            spin: DEFAULT_SPIN,
            spin_adaptive: false,
        }
    }
}

/// Handle every entry the ring holds now on this thread; returns how many
/// commands ran.
pub fn drain<H: CommandHandler + ?Sized>(ring: &mut Ring, handler: &H) -> Result<usize, RingError> {
    let mut handled = 0;
    while let Some(entry) = ring.next_entry()? {
        match entry {
            RingEntry::Command(mut cmd) => {
                let (cdb, data) = cmd.cdb_and_data();
                let reply = handler.handle(cdb, data);
                ring.complete(cmd, &reply)?;
                handled += 1;
            }
            RingEntry::TaskManagement(tmr) => {
                // Commands run to completion before the next entry is read,
                // so nothing named here is still queued.
                log::info!(
                    "task management {} for commands {:?}",
                    tmr.kind,
                    tmr.cmd_ids
                );
            }
        }
    }
    Ok(handled)
}

/// Serve `ring` of `uio` with default options until `stop` becomes readable.
pub fn serve<D, H>(
    uio: Arc<D>,
    ring: Ring,
    handler: Arc<H>,
    stop: BorrowedFd<'_>,
) -> Result<(), ServeError>
where
    D: Doorbell + Send + Sync + 'static,
    H: AsyncCommandHandler + ?Sized + 'static,
{
    serve_with(uio, ring, handler, stop, ServeOptions::default())
}

/// Serve `ring` of `uio` until `stop` becomes readable: then stop taking
/// new commands and wait up to `drain_timeout` for those executing. A
/// second byte on `stop` cuts the wait short.
///
/// With workers, the workers read the ring in turns and execute what they
/// read (see the module documentation); the worker that executed a
/// command completes it in the ring and notifies the kernel itself.
///
/// The handler may complete a command after `start` returns, from any
/// thread ([`AsyncCommandHandler`]): such a pending command holds no
/// worker, counts as executing for the drain on stop, and is never taken
/// for a stuck call.
///
/// Worker threads are not joined: a backend call that never returns keeps
/// its thread, not the caller. Its command is completed late (exactly
/// once) if serving still runs, or left to the kernel's `cmd_time_out`.
/// While commands wait for a worker, or no worker is free to read the
/// ring, every worker busy in one call for over a second is replaced by a
/// new one (at most 32 beyond `options.workers`), so hung calls never take
/// the whole pool.
pub fn serve_with<D, H>(
    uio: Arc<D>,
    ring: Ring,
    handler: Arc<H>,
    stop: BorrowedFd<'_>,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    D: Doorbell + Send + Sync + 'static,
    H: AsyncCommandHandler + ?Sized + 'static,
{
    if options.workers == 0 {
        return serve_inline(&*uio, ring, &*handler, stop, options.drain_timeout);
    }
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    let (interrupt_rx, interrupt_tx) = UnixStream::pair()?;
    let ctx = Arc::new(Context {
        map: ring.map().clone(),
        spin: SpinPolicy::new(options.spin, options.spin_adaptive),
        uio,
        handler,
        shared: Mutex::new(Shared {
            ring,
            outstanding: 0,
            closed: false,
            failure: None,
        }),
        work: WorkQueue::new(),
        notifier: SharedNotify::default(),
        aborted: IdSet::default(),
        completing: AtomicUsize::new(0),
        wake_supervisor: wake_tx,
        interrupt: interrupt_rx,
    });
    let epoch = Instant::now();
    let spawn = {
        let ctx = ctx.clone();
        move |n: usize, busy_since: Arc<AtomicU64>| -> io::Result<()> {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("tcmu-worker-{n}"))
                .spawn(move || work(ctx, &busy_since, epoch))
                .map(drop)
        }
    };
    let mut pool = Pool {
        spawn: Box::new(spawn),
        busy_since: Vec::new(),
        epoch,
        size: options.workers,
        limit: options.workers + EXTRA_WORKERS,
    };
    for _ in 0..options.workers {
        pool.add()?;
    }
    let result = supervise(
        &ctx,
        stop,
        &wake_rx,
        &interrupt_tx,
        pool,
        options.drain_timeout,
    );
    // Commands still executing are not completed any more: the kernel's
    // cmd_time_out deals with them (and the ring may be reattached).
    lock(&ctx.shared).closed = true;
    ctx.work.close();
    let _ = (&interrupt_tx).write(&[1]);
    result
}

/// Spin time of [`ServeOptions::default`]: none. Spinning helps one busy
/// initiator and costs an initiator that needs every CPU (see the README's
/// performance section), so it is a choice, not a default.
pub const DEFAULT_SPIN: Duration = Duration::ZERO;

/// Whether the kernel publishes a new entry within the spin time.
fn spin_for_entries<D: ?Sized, H: ?Sized>(ctx: &Context<D, H>) -> bool {
    let spin = ctx.spin.budget();
    if spin.is_zero() {
        return false;
    }
    let hit = spin_once(ctx, spin);
    ctx.spin.record(hit);
    hit
}

/// Watches `cmd_head` for up to `spin`; whether it moved.
fn spin_once<D: ?Sized, H: ?Sized>(ctx: &Context<D, H>, spin: Duration) -> bool {
    let Ok(seen) = ctx.map.load_u32_acquire(MB_CMD_HEAD) else {
        return false;
    };
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        match ctx.map.load_u32_acquire(MB_CMD_HEAD) {
            Ok(head) if head != seen => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        if start.elapsed() >= spin {
            return false;
        }
    }
}

/// What the workers share.
struct Context<D: ?Sized, H: ?Sized> {
    /// The shared area, to watch `cmd_head` while spinning.
    map: Arc<crate::mem::SharedMap>,
    spin: SpinPolicy,
    uio: Arc<D>,
    handler: Arc<H>,
    shared: Mutex<Shared>,
    work: WorkQueue<Command>,
    notifier: SharedNotify,
    /// Commands named by a task management request while queued.
    aborted: IdSet,
    /// Workers between finishing a command and completing it.
    completing: AtomicUsize,
    /// A byte here tells the supervisor that a worker stopped on an error.
    wake_supervisor: UnixStream,
    /// Readable when the leader should stop waiting for the kernel.
    interrupt: UnixStream,
}

/// A worker: take a queued command, or lead (read the ring) when nobody
/// does, start it (a synchronous handler completes it meanwhile).
fn work<D, H>(ctx: Arc<Context<D, H>>, busy_since: &AtomicU64, epoch: Instant)
where
    D: Doorbell + Send + Sync + ?Sized + 'static,
    H: AsyncCommandHandler + ?Sized + 'static,
{
    let completer: Arc<dyn Completer> = ctx.clone();
    let mut batch = Vec::new();
    loop {
        let cmd = match ctx.work.next() {
            Next::Item(cmd) => cmd,
            Next::Lead => match lead(&ctx, &mut batch) {
                Some(cmd) => cmd,
                None => continue,
            },
            Next::Closed => return,
        };
        busy_since.store(since(epoch), Ordering::Relaxed);
        let pending = PendingCommand::new(cmd, completer.clone());
        if ctx.aborted.contains(pending.id()) {
            // Aborted while queued: never executed.
            pending.complete(&Reply::status(ScsiStatus::TaskAborted));
        } else {
            ctx.handler.start(pending);
        }
        busy_since.store(IDLE, Ordering::Relaxed);
    }
}

/// As the leader: wait for the kernel and read the ring until it yields a
/// command, keep the first one for this worker and hand out the rest,
/// giving up the lead (another worker takes it, so the ring is read while
/// this one executes). `None` when reading has stopped.
fn lead<D, H>(ctx: &Context<D, H>, batch: &mut Vec<Command>) -> Option<Command>
where
    D: Doorbell + ?Sized,
    H: ?Sized,
{
    loop {
        let mut s = lock(&ctx.shared);
        if s.closed || s.failure.is_some() || !ctx.work.reading() {
            drop(s);
            // Nobody reads any more (a failed completion stops reading
            // here; the supervisor ends serving).
            ctx.work.stop_reading();
            ctx.work.resign(batch);
            return None;
        }
        let mut failure = None;
        loop {
            match s.ring.next_entry() {
                Ok(Some(RingEntry::Command(cmd))) => {
                    log::trace!("command {} {:02x?} queued", cmd.id(), cmd.cdb());
                    s.outstanding += 1;
                    batch.push(cmd);
                }
                Ok(Some(RingEntry::TaskManagement(tmr))) => {
                    // Queued commands named here are answered without
                    // running; those already executing finish normally.
                    log::info!(
                        "task management {} for commands {:?}",
                        tmr.kind,
                        tmr.cmd_ids
                    );
                    for id in &tmr.cmd_ids {
                        ctx.aborted.insert(*id);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(ServeError::from(e));
                    break;
                }
            }
        }
        // A TMR-only pass (or skipped padding) may want a notify.
        if failure.is_none() && s.ring.take_notify() {
            drop(s);
            if let Err(e) = ctx.notifier.notify(|| ctx.uio.notify()) {
                failure = Some(e.into());
            }
            s = lock(&ctx.shared);
        }
        drop(s);
        if let Some(e) = failure {
            return give_up_reading(ctx, batch, e);
        }
        if !batch.is_empty() {
            let mine = batch.remove(0);
            ctx.work.resign(batch);
            return Some(mine);
        }
        // Under load the next entry often comes within microseconds:
        // watch cmd_head for a moment before sleeping, since a wake-up
        // costs more than that.
        if spin_for_entries(ctx) {
            continue;
        }
        // Entries published after the pass raise a new kernel event; the
        // interrupt makes the checks above run again.
        if let Err(e) = ctx.uio.wait(&[ctx.interrupt.as_fd()], None) {
            return give_up_reading(ctx, batch, e.into());
        }
    }
}

/// The leader met an error: record it for the supervisor, stop all
/// reading and hand out what was read; always `None`.
fn give_up_reading<D, H>(
    ctx: &Context<D, H>,
    batch: &mut Vec<Command>,
    e: ServeError,
) -> Option<Command>
where
    D: Doorbell + ?Sized,
    H: ?Sized,
{
    lock(&ctx.shared).failure.get_or_insert(e);
    ctx.work.stop_reading();
    ctx.work.resign(batch);
    let _ = (&ctx.wake_supervisor).write(&[1]);
    None
}

/// Completions from any thread (a worker, a backend's callback): write the
/// reply, and notify the kernel once for the completions that arrive at
/// the same time: a thread leaves the notification to another that is
/// about to complete, or to one notifying already (see [`SharedNotify`]).
/// After serving ended a completion is dropped; a failure (a corrupt ring,
/// a failed notification) is left for the supervising thread.
impl<D, H> Completer for Context<D, H>
where
    D: Doorbell + Send + Sync + ?Sized,
    H: Send + Sync + ?Sized,
{
    fn complete(&self, cmd: Command, reply: &Reply) {
        self.completing.fetch_add(1, Ordering::SeqCst);
        if !complete(self, cmd, reply) {
            let _ = (&self.wake_supervisor).write(&[1]);
        }
    }
}

/// See [`Completer for Context`](Context); false when the supervisor
/// should look.
fn complete<D, H>(ctx: &Context<D, H>, cmd: Command, reply: &Reply) -> bool
where
    D: Doorbell + ?Sized,
    H: ?Sized,
{
    let mut s = lock(&ctx.shared);
    // Counted down under the lock, so the last of a group sees zero.
    let others = ctx.completing.fetch_sub(1, Ordering::SeqCst) - 1;
    if s.closed {
        return true;
    }
    if s.failure.is_some() {
        return false;
    }
    let id = cmd.id();
    log::trace!("command {id} completed with status {}", reply.status);
    ctx.aborted.remove(id);
    s.outstanding -= 1;
    if let Err(e) = s.ring.complete(cmd, reply) {
        s.failure = Some(e.into());
        return false;
    }
    if others > 0 || !s.ring.take_notify() {
        return true;
    }
    drop(s);
    match ctx.notifier.notify(|| ctx.uio.notify()) {
        Ok(()) => true,
        Err(e) => {
            lock(&ctx.shared).failure.get_or_insert(e.into());
            false
        }
    }
}

/// The ring and its bookkeeping, shared by the workers: the leader reads
/// entries, each worker completes its commands.
struct Shared {
    ring: Ring,
    /// Commands read from the ring and not completed yet (queued,
    /// executing, or pending in an asynchronous handler).
    outstanding: usize,
    /// Serving has returned: late completions are dropped.
    closed: bool,
    /// Why a worker could not complete (a corrupt ring, a failed notify).
    failure: Option<ServeError>,
}

/// The shared state is consistent between any two statements that hold the
/// lock, so a panic elsewhere leaves it usable.
fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A worker whose backend call has run this long counts as stuck: a
/// replacement is started, so that hung calls never take the whole pool.
const STUCK_AFTER: Duration = Duration::from_secs(1);
/// At most this many workers beyond the configured number (each one left
/// behind by a call that hangs for good holds a thread).
const EXTRA_WORKERS: usize = 32;
/// `busy_since` of a worker that is not executing a command.
const IDLE: u64 = 0;

/// Milliseconds since `epoch`, plus one (never [`IDLE`]).
fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64 + 1
}

/// The worker threads: how many, and since when each one is busy.
struct Pool {
    spawn: Box<dyn Fn(usize, Arc<AtomicU64>) -> io::Result<()>>,
    busy_since: Vec<Arc<AtomicU64>>,
    epoch: Instant,
    /// Workers that should be available (not stuck).
    size: usize,
    /// Most workers ever started.
    limit: usize,
}

impl Pool {
    fn add(&mut self) -> io::Result<()> {
        let busy_since = Arc::new(AtomicU64::new(IDLE));
        (self.spawn)(self.busy_since.len(), busy_since.clone())?;
        self.busy_since.push(busy_since);
        Ok(())
    }

    /// With commands queued, or no worker free to read the ring, start one
    /// for each worker stuck in a backend call beyond [`STUCK_AFTER`] (up
    /// to the limit). Commands pending in an asynchronous handler hold no
    /// worker and do not count.
    fn replace_stuck(&mut self, queued: usize) {
        let now = since(self.epoch);
        let stuck_after = STUCK_AFTER.as_millis() as u64;
        let (mut busy, mut stuck) = (0, 0);
        for worker in &self.busy_since {
            let started = worker.load(Ordering::Relaxed);
            if started != IDLE {
                busy += 1;
                if now.saturating_sub(started) >= stuck_after {
                    stuck += 1;
                }
            }
        }
        if queued == 0 && busy < self.busy_since.len() {
            // Nothing is queued, and a free worker reads the ring.
            return;
        }
        while self.busy_since.len() - stuck < self.size && self.busy_since.len() < self.limit {
            log::warn!(
                "{stuck} backend calls have run for over {} s: starting worker {}",
                STUCK_AFTER.as_secs(),
                self.busy_since.len()
            );
            if let Err(e) = self.add() {
                log::error!("cannot start a worker thread: {e}");
                return;
            }
        }
    }
}

/// A set of command ids, shared by the workers.
struct IdSet(Vec<AtomicU64>);

impl Default for IdSet {
    fn default() -> Self {
        IdSet((0..(1 << 16) / 64).map(|_| AtomicU64::new(0)).collect())
    }
}

impl IdSet {
    fn insert(&self, id: u16) {
        self.0[id as usize / 64].fetch_or(1 << (id % 64), Ordering::Relaxed);
    }
    fn remove(&self, id: u16) {
        self.0[id as usize / 64].fetch_and(!(1 << (id % 64)), Ordering::Relaxed);
    }
    fn contains(&self, id: u16) -> bool {
        self.0[id as usize / 64].load(Ordering::Relaxed) & (1 << (id % 64)) != 0
    }
}

/// Without workers: commands start on the serving thread, one after the
/// other. Completions (made inside `start` by a synchronous handler, or
/// later from any thread) are collected and written into the ring here,
/// with one notification per batch. A stop waits up to `drain_timeout`
/// for pending commands; a second byte on `stop` cuts the wait short.
fn serve_inline<H: AsyncCommandHandler + ?Sized>(
    uio: &(impl Doorbell + ?Sized),
    mut ring: Ring,
    handler: &H,
    stop: BorrowedFd<'_>,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let inbox = Arc::new(Inbox {
        done: Mutex::new(Vec::new()),
        serving_thread: std::thread::current().id(),
        wake: wake_tx,
    });
    let completer: Arc<dyn Completer> = inbox.clone();
    let mut outstanding = 0usize;
    let mut stopping: Option<Instant> = None;
    loop {
        // Entries may already be waiting (e.g. after a restart), so read
        // before the first wait.
        while stopping.is_none() {
            match ring.next_entry()? {
                Some(RingEntry::Command(cmd)) => {
                    outstanding += 1;
                    handler.start(PendingCommand::new(cmd, completer.clone()));
                }
                Some(RingEntry::TaskManagement(tmr)) => {
                    // Commands still pending finish normally.
                    log::info!(
                        "task management {} for commands {:?}",
                        tmr.kind,
                        tmr.cmd_ids
                    );
                }
                None => break,
            }
        }
        outstanding -= inbox.write_into(&mut ring)?;
        if ring.take_notify() {
            uio.notify()?;
        }
        let timeout = match stopping {
            Some(since) if outstanding == 0 || since.elapsed() >= drain_timeout => {
                if outstanding > 0 {
                    log::warn!("stopping with {outstanding} commands still pending");
                }
                return Ok(());
            }
            Some(_) => Some(Duration::from_millis(20)),
            None => None,
        };
        match uio.wait(&[stop, wake_rx.as_fd()], timeout)? {
            Wake::Other(0) => {
                // First byte: drain; any further byte: stop now.
                let mut bytes = [0u8; 16];
                let n = nix::unistd::read(stop.as_raw_fd(), &mut bytes)
                    .unwrap_or(1)
                    .max(1);
                if stopping.is_some() || n > 1 || outstanding == 0 {
                    if outstanding > 0 {
                        log::warn!("forced stop with {outstanding} commands still pending");
                    }
                    return Ok(());
                }
                stopping = Some(Instant::now());
            }
            Wake::Other(_) => {
                let mut sink = [0u8; 256];
                while matches!((&wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            }
            Wake::Kernel | Wake::Timeout => {}
        }
    }
}

/// Completions waiting for the serving thread of [`serve_inline`].
struct Inbox {
    done: Mutex<Vec<(Command, Reply)>>,
    serving_thread: std::thread::ThreadId,
    /// A byte here wakes the serving thread (for completions from others).
    wake: UnixStream,
}

impl Completer for Inbox {
    fn complete(&self, cmd: Command, reply: &Reply) {
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((cmd, reply.clone()));
        // The serving thread writes what it completed itself before it
        // waits; another thread must wake it.
        if std::thread::current().id() != self.serving_thread {
            let _ = (&self.wake).write(&[1]);
        }
    }
}

impl Inbox {
    /// Write every collected completion into the ring; how many.
    fn write_into(&self, ring: &mut Ring) -> Result<usize, RingError> {
        let mut done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = done.len();
        for (cmd, reply) in done.drain(..) {
            ring.complete(cmd, &reply)?;
        }
        Ok(n)
    }
}

/// The calling thread while workers serve: watch for the stop request,
/// for workers that stopped on an error, and for stuck workers.
fn supervise<D: ?Sized, H: ?Sized>(
    ctx: &Context<D, H>,
    stop: BorrowedFd<'_>,
    wake: &UnixStream,
    interrupt: &UnixStream,
    mut pool: Pool,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let mut stopping: Option<Instant> = None;
    loop {
        let outstanding = {
            let mut s = lock(&ctx.shared);
            if let Some(e) = s.failure.take() {
                return Err(e);
            }
            s.outstanding
        };
        match stopping {
            None => pool.replace_stuck(ctx.work.queued()),
            Some(since) => {
                if outstanding == 0 {
                    return Ok(());
                }
                if since.elapsed() >= drain_timeout {
                    log::warn!("stopping with {outstanding} commands still executing");
                    return Ok(());
                }
            }
        }
        let timeout = match stopping {
            Some(_) => Duration::from_millis(20),
            None => STUCK_AFTER / 2,
        };
        match wait_readable(stop, &[wake.as_fd()], Some(timeout))? {
            Some(0) => {
                // First byte: drain; any further byte: stop now.
                let mut bytes = [0u8; 16];
                let n = nix::unistd::read(stop.as_raw_fd(), &mut bytes)
                    .unwrap_or(1)
                    .max(1);
                if stopping.is_some() || n > 1 {
                    log::warn!("forced stop with {outstanding} commands still executing");
                    return Ok(());
                }
                stopping = Some(Instant::now());
                // No new commands: the leader stops reading the ring.
                ctx.work.stop_reading();
                (&*interrupt).write_all(&[1])?;
            }
            Some(_) => {
                let mut sink = [0u8; 256];
                while matches!((&*wake).read(&mut sink), Ok(n) if n > 0) {}
            }
            None => {}
        }
    }
}
