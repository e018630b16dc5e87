//! The serving loop: wait for the kernel, drain every published entry,
//! hand each command to a handler, complete it, notify once per batch.
//!
//! With `workers == 0` commands run on the ring thread, one after the
//! other. With workers, the ring thread only moves entries: it hands
//! commands to a pool of threads and completes them as they finish, in any
//! order (the kernel's out-of-order completion), so one slow command does
//! not hold up the others.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
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
pub fn serve<H: CommandHandler + Sync + ?Sized>(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    handler: &H,
    stop: BorrowedFd<'_>,
) -> Result<(), ServeError> {
    serve_with(uio, ring, handler, stop, ServeOptions::default())
}

/// Serve `ring` of `uio` until `stop` becomes readable.
pub fn serve_with<H: CommandHandler + Sync + ?Sized>(
    uio: &(impl Doorbell + ?Sized),
    ring: &mut Ring,
    handler: &H,
    stop: BorrowedFd<'_>,
    options: ServeOptions,
) -> Result<(), ServeError> {
    if options.workers == 0 {
        return serve_inline(uio, ring, handler, stop);
    }
    let (work_tx, work_rx) = mpsc::channel::<Command>();
    let work_rx = std::sync::Mutex::new(work_rx);
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(Command, Reply)>();
        let (mut wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        for n in 0..options.workers {
            let (work_rx, done_tx, mut wake_tx) = (&work_rx, done_tx.clone(), wake_tx.try_clone()?);
            std::thread::Builder::new()
                .name(format!("tcmu-worker-{n}"))
                .spawn_scoped(scope, move || {
                    loop {
                        // The lock is held only to take one command.
                        let next = work_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(mut cmd)) = next else { return };
                        let (cdb, data) = cmd.cdb_and_data();
                        let reply = handler.handle(cdb, data);
                        if done_tx.send((cmd, reply)).is_err() {
                            return;
                        }
                        let _ = wake_tx.write(&[1]);
                    }
                })?;
        }
        drop(done_tx);
        let result = ring_loop(
            uio,
            ring,
            stop,
            &work_tx,
            &done_rx,
            &mut wake_rx,
            options.drain_timeout,
        );
        // Closing the queue ends the workers; the scope joins them.
        drop(work_tx);
        result
    })
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
    work: &mpsc::Sender<Command>,
    done: &mpsc::Receiver<(Command, Reply)>,
    wake: &mut UnixStream,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let mut outstanding = 0usize;
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none() {
            while let Some(entry) = ring.next_entry()? {
                match entry {
                    RingEntry::Command(cmd) => {
                        outstanding += 1;
                        if work.send(cmd).is_err() {
                            return Err(io::Error::other("all worker threads are gone").into());
                        }
                    }
                    RingEntry::TaskManagement(tmr) => {
                        log::info!(
                            "task management {} for commands {:?}",
                            tmr.kind,
                            tmr.cmd_ids
                        );
                    }
                }
            }
        }
        while let Ok((cmd, reply)) = done.try_recv() {
            outstanding -= 1;
            ring.complete(cmd, &reply)?;
        }
        if ring.take_notify() {
            uio.notify()?;
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
        // Once stopping, the stop descriptor stays readable: leave it out.
        let (timeout, fds) = match stopping {
            None => (None, vec![wake.as_fd(), stop]),
            Some(_) => (Some(Duration::from_millis(100)), vec![wake.as_fd()]),
        };
        match uio.wait(&fds, timeout)? {
            Wake::Other(1) => stopping = Some(Instant::now()),
            Wake::Other(_) => {
                let mut sink = [0u8; 256];
                while matches!(wake.read(&mut sink), Ok(n) if n > 0) {}
            }
            Wake::Kernel | Wake::Timeout => {}
        }
    }
}
