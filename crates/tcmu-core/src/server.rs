//! The serving loop: wait for the kernel, drain every published entry,
//! hand each command to a handler, complete it, notify once per batch.
//!
//! With `workers == 0` commands run on the ring thread, one after the
//! other. With workers, the ring thread only moves entries: it hands
//! commands to a pool of threads and completes them as they finish, in any
//! order (the kernel's out-of-order completion), so one slow command does
//! not hold up the others.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::mem::DataSegments;
use crate::ring::{Command, Reply, Ring, RingEntry, RingError};
use crate::uio::{UioDevice, Wake};

/// Executes SCSI commands; the SCSI emulator implements it.
pub trait CommandHandler {
    /// Execute `cdb` with its data buffer and say how it ended.
    fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply;
}

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
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("UIO device: {0}")]
    Io(#[from] io::Error),
}

/// How a device is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Worker threads executing commands; 0 runs them on the ring thread.
    pub workers: usize,
    /// How long a stop waits for commands still executing.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
            drain_timeout: Duration::from_secs(10),
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
pub fn serve<H: CommandHandler + Send + Sync + 'static>(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    handler: Arc<H>,
    stop: BorrowedFd<'_>,
) -> Result<(), ServeError> {
    serve_with(uio, ring, handler, stop, ServeOptions::default())
}

/// Serve `ring` of `uio` until `stop` becomes readable: then stop taking
/// new commands and wait up to `drain_timeout` for those executing. A
/// second byte on `stop` cuts the wait short.
///
/// Worker threads are not joined: a backend call that never returns keeps
/// its thread, not the caller. While commands wait for a worker, every
/// worker busy in one call for over a second is replaced by a new one (at
/// most 32 beyond `options.workers`), so hung calls never take the pool. Its command is completed late (exactly
/// once) if serving still runs, or left to the kernel's `cmd_time_out`.
pub fn serve_with<H: CommandHandler + Send + Sync + 'static>(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    handler: Arc<H>,
    stop: BorrowedFd<'_>,
    options: ServeOptions,
) -> Result<(), ServeError> {
    if options.workers == 0 {
        return serve_inline(uio, ring, &*handler, stop);
    }
    let (work_tx, work_rx) = mpsc::channel::<Command>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<(Command, Reply)>();
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    let aborted = Arc::new(IdSet::default());
    let epoch = Instant::now();
    let spawn = {
        let aborted = aborted.clone();
        move |n: usize, busy_since: Arc<AtomicU64>| -> io::Result<()> {
            let (work_rx, done_tx, mut wake_tx) =
                (work_rx.clone(), done_tx.clone(), wake_tx.try_clone()?);
            let (handler, aborted) = (handler.clone(), aborted.clone());
            std::thread::Builder::new()
                .name(format!("tcmu-worker-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take one command.
                        let next = work_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(mut cmd)) = next else { return };
                        busy_since.store(since(epoch), Ordering::Relaxed);
                        let reply = if aborted.contains(cmd.id()) {
                            // Aborted while queued: never executed.
                            Reply::status(TASK_ABORTED)
                        } else {
                            let (cdb, data) = cmd.cdb_and_data();
                            handler.handle(cdb, data)
                        };
                        busy_since.store(IDLE, Ordering::Relaxed);
                        if done_tx.send((cmd, reply)).is_err() {
                            return;
                        }
                        let _ = wake_tx.write(&[1]);
                    }
                })
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
    let queues = Queues {
        work: work_tx,
        done: done_rx,
        wake: wake_rx,
        aborted,
        pool,
    };
    // Dropping the queues on return ends the idle workers.
    ring_loop(uio, ring, stop, queues, options.drain_timeout)
}

/// SCSI status TASK ABORTED.
const TASK_ABORTED: u8 = 0x40;

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

    /// With commands waiting for a worker, start one for each worker stuck
    /// in a backend call beyond [`STUCK_AFTER`] (up to the limit).
    fn replace_stuck(&mut self, outstanding: usize) {
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
        if outstanding <= busy {
            return; // nothing is waiting
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

/// A set of command ids, shared by the ring thread and the workers.
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

/// The ring thread's ends of the worker queues.
struct Queues {
    work: mpsc::Sender<Command>,
    done: mpsc::Receiver<(Command, Reply)>,
    wake: UnixStream,
    aborted: Arc<IdSet>,
    pool: Pool,
}

fn serve_inline<H: CommandHandler + ?Sized>(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    handler: &H,
    stop: BorrowedFd<'_>,
) -> Result<(), ServeError> {
    loop {
        // Entries may already be waiting (e.g. after a restart), so drain
        // before the first wait.
        drain(ring, handler)?;
        if ring.take_notify() {
            uio.notify()?;
        }
        if let Wake::Other(_) = uio.wait(&[stop], None)? {
            return Ok(());
        }
    }
}

/// The ring thread with workers: dispatch entries, complete finished
/// commands, notify once per batch.
fn ring_loop(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    stop: BorrowedFd<'_>,
    mut q: Queues,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let mut outstanding = 0usize;
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none() {
            while let Some(entry) = ring.next_entry()? {
                match entry {
                    RingEntry::Command(cmd) => {
                        log::trace!("command {} {:02x?} queued", cmd.id(), cmd.cdb());
                        outstanding += 1;
                        if q.work.send(cmd).is_err() {
                            return Err(io::Error::other("all worker threads are gone").into());
                        }
                    }
                    RingEntry::TaskManagement(tmr) => {
                        // Queued commands named here are answered without
                        // running; those already executing finish normally.
                        log::info!(
                            "task management {} for commands {:?}",
                            tmr.kind,
                            tmr.cmd_ids
                        );
                        for id in &tmr.cmd_ids {
                            q.aborted.insert(*id);
                        }
                    }
                }
            }
        }
        while let Ok((cmd, reply)) = q.done.try_recv() {
            log::trace!(
                "command {} completed with status {:#04x}",
                cmd.id(),
                reply.status
            );
            outstanding -= 1;
            q.aborted.remove(cmd.id());
            ring.complete(cmd, &reply)?;
        }
        if ring.take_notify() {
            uio.notify()?;
        }
        if outstanding > 0 && stopping.is_none() {
            q.pool.replace_stuck(outstanding);
        }
        if let Some(since) = stopping {
            if outstanding == 0 {
                return Ok(());
            }
            if since.elapsed() >= drain_timeout {
                log::warn!("stopping with {outstanding} commands still executing");
                return Ok(());
            }
        }
        // While commands are out, look at the workers now and then.
        let timeout = match (stopping, outstanding) {
            (Some(_), _) => Some(Duration::from_millis(100)),
            (None, 0) => None,
            (None, _) => Some(STUCK_AFTER / 2),
        };
        match uio.wait(&[q.wake.as_fd(), stop], timeout)? {
            Wake::Other(1) => {
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
            }
            Wake::Other(_) => {
                let mut sink = [0u8; 256];
                while matches!(q.wake.read(&mut sink), Ok(n) if n > 0) {}
            }
            Wake::Kernel | Wake::Timeout => {}
        }
    }
}
