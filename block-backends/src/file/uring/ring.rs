//! One io_uring shared by the threads of a device, and the reaper thread
//! that waits for its completions.
//!
//! The only unsafe code of the io_uring engine is here (the crate denies
//! it elsewhere). It is sound because the kernel is only ever pointed at
//! memory and files that outlive the request:
//! - a request's buffer is owned by its slot ([`Slots`]) from before the
//!   submission until the kernel's answer; a future dropped (or leaked)
//!   before then leaves the buffer in the slot, and only the answer frees it;
//! - the files are registered with the ring and owned by it, and the ring
//!   is closed only after every submitted request was answered (dropping a
//!   [`Ring`] waits for that);
//! - one thread at a time touches the submission queue (a mutex), and only
//!   the reaper touches the completion queue.

#![allow(unsafe_code)]

use std::future::Future;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use io_uring::types::{Fixed, FsyncFlags};
use io_uring::{IoUring, opcode, squeue};
use nix::libc;

use super::super::aligned::AlignedBuf;
use super::slots::{Answer, Slots};

/// Submission queue entries; more requests in flight than this only wait
/// for room a little (the completion queue is twice as large, and the
/// kernel keeps overflowing completions).
const RING_ENTRIES: u32 = 256;

/// `user_data` of the no-op that tells the reaper to stop.
const STOP: u64 = u64::MAX;

/// Longest transfer one submission asks for; the rest is a short
/// transfer that the caller submits again.
const MAX_TRANSFER: usize = 1 << 30;

/// What to ask of the kernel. `file` indexes the files the ring was
/// created with; `range` is the part of the buffer to transfer.
pub(super) enum Op {
    Read {
        file: u32,
        offset: u64,
        range: Range<usize>,
    },
    Write {
        file: u32,
        offset: u64,
        range: Range<usize>,
    },
    /// `fdatasync`.
    DataSync { file: u32 },
}

struct Shared {
    uring: IoUring,
    /// Held while pushing to the submission queue.
    submission: Mutex<()>,
    slots: Mutex<Slots>,
    /// Registered with the ring; closed only with it.
    _files: Vec<OwnedFd>,
}

/// An io_uring and its reaper thread.
pub(super) struct Ring {
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
}

impl Ring {
    /// A ring for I/O to `files`, with a reaper thread called `name`.
    pub(super) fn new(files: Vec<OwnedFd>, name: &str) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_cqsize(2 * RING_ENTRIES)
            .build(RING_ENTRIES)?;
        let raw: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
        // Registered files spare the kernel looking the descriptors up for
        // every request.
        uring.submitter().register_files(&raw)?;
        let shared = Arc::new(Shared {
            uring,
            submission: Mutex::new(()),
            slots: Mutex::new(Slots::default()),
            _files: files,
        });
        let reaper_shared = shared.clone();
        let reaper = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || reap(&reaper_shared))?;
        Ok(Ring {
            shared,
            reaper: Some(reaper),
        })
    }

    /// Submit `op` on `buffer` (which the ring owns until the answer);
    /// the future gives back the result (bytes or `-errno`) and the
    /// buffer.
    ///
    /// # Panics
    ///
    /// If a read or write has no buffer, its range is outside it, or
    /// `file` is not one of the ring's files.
    pub(super) fn submit(&self, op: Op, buffer: Option<AlignedBuf>) -> Pending {
        let files = self.shared._files.len() as u32;
        let file = match &op {
            Op::Read { file, range, .. } | Op::Write { file, range, .. } => {
                let len = buffer.as_ref().map_or(0, |b| b.as_slice().len());
                assert!(
                    range.start <= range.end && range.end <= len,
                    "range outside the buffer"
                );
                *file
            }
            Op::DataSync { file } => *file,
        };
        assert!(file < files, "no file {file}");
        let mut slots = lock(&self.shared.slots);
        let index = slots.insert(buffer);
        let entry = match op {
            Op::Read {
                file,
                offset,
                range,
            } => {
                let len = range.len().min(MAX_TRANSFER);
                let buf = slots.buffer_mut(index).expect("checked above");
                let ptr = buf.as_mut_slice()[range].as_mut_ptr();
                opcode::Read::new(Fixed(file), ptr, len as u32)
                    .offset(offset)
                    .build()
            }
            Op::Write {
                file,
                offset,
                range,
            } => {
                let len = range.len().min(MAX_TRANSFER);
                let buf = slots.buffer_mut(index).expect("checked above");
                let ptr = buf.as_slice()[range].as_ptr();
                opcode::Write::new(Fixed(file), ptr, len as u32)
                    .offset(offset)
                    .build()
            }
            Op::DataSync { file } => opcode::Fsync::new(Fixed(file))
                .flags(FsyncFlags::DATASYNC)
                .build(),
        };
        drop(slots);
        self.push(&entry.user_data(index as u64));
        Pending {
            shared: self.shared.clone(),
            index,
            answered: false,
        }
    }

    /// Queue `entry` and hand it to the kernel.
    fn push(&self, entry: &squeue::Entry) {
        let _one_at_a_time = lock(&self.shared.submission);
        loop {
            // SAFETY: the submission mutex is held, so no other
            // SubmissionQueue exists. The entry points into a buffer that
            // its slot owns until the kernel answers, and at a registered
            // file the ring owns (see the module documentation).
            let pushed = unsafe { self.shared.uring.submission_shared().push(entry).is_ok() };
            if pushed {
                break;
            }
            // Full: what is queued goes to the kernel first.
            submit_queued(&self.shared.uring);
        }
        submit_queued(&self.shared.uring);
    }
}

impl Drop for Ring {
    /// Waits until the kernel has answered every request submitted, so
    /// that no buffer or file is released under it.
    fn drop(&mut self) {
        self.push(&opcode::Nop::new().build().user_data(STOP));
        if let Some(reaper) = self.reaper.take()
            && reaper.join().is_err()
        {
            log::error!("the io_uring reaper thread panicked");
        }
    }
}

/// Hand the queued entries to the kernel, waiting while it is too busy
/// to take them (its completion backlog full).
fn submit_queued(uring: &IoUring) {
    loop {
        match uring.submit() {
            Ok(_) => return,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EBUSY | libc::EAGAIN) => std::thread::sleep(Duration::from_micros(50)),
                _ => {
                    // The reaper's next wait submits them again.
                    log::error!("io_uring submission failed: {e}");
                    return;
                }
            },
        }
    }
}

/// The reaper: waits for completions and hands each to its slot, until
/// told to stop and nothing is in flight any more.
fn reap(shared: &Shared) {
    let mut stopping = false;
    let mut wakers = Vec::new();
    loop {
        if stopping && lock(&shared.slots).unanswered() == 0 {
            return;
        }
        if let Err(e) = shared.uring.submit_and_wait(1) {
            match e.raw_os_error() {
                // Busy: completions are waiting to be taken, below.
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => {
                    log::error!("waiting for io_uring completions failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        {
            let mut slots = lock(&shared.slots);
            // SAFETY: only this thread takes the completion queue.
            for cqe in unsafe { shared.uring.completion_shared() } {
                if cqe.user_data() == STOP {
                    stopping = true;
                } else {
                    wakers.extend(slots.answer(cqe.user_data() as usize, cqe.result()));
                }
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
    }
}

/// The answer to one submission, once the kernel gives it.
pub(super) struct Pending {
    shared: Arc<Shared>,
    index: usize,
    answered: bool,
}

impl Future for Pending {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        // Its slot may already serve another request.
        assert!(!self.answered, "io_uring request polled after its answer");
        let answer = lock(&self.shared.slots).take(self.index, cx.waker());
        match answer {
            Some(answer) => {
                self.answered = true;
                Poll::Ready(answer)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            lock(&self.shared.slots).abandon(self.index);
        }
    }
}

/// The slots and the submission queue stay consistent across a panic
/// elsewhere (every change is made whole under the lock).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
