//! The transmission phase: requests in flight, the writer, and the reader
//! thread that completes each request when its reply arrives.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use scsi_emu::BlockError;

use super::protocol::*;
use super::stream::Stream;

/// A request that waits for its reply.
#[derive(Debug)]
pub(super) struct Pending {
    /// Bytes of data that follow a successful reply (reads only).
    pub(super) read_len: usize,
    /// Set by the reader thread (or a failing connection).
    pub(super) outcome: Option<Result<Vec<u8>, BlockError>>,
    /// The caller gave up waiting (or its deadline passed): the reply is
    /// read and dropped.
    pub(super) abandoned: bool,
    /// Whom to wake when the outcome is set (the future waiting for it).
    pub(super) waker: Option<Waker>,
    /// When the request times out (`NbdOptions::request_timeout`).
    pub(super) deadline: Option<Instant>,
}

impl Pending {
    /// Set the outcome; the waker to wake once the lock is released.
    fn settle(&mut self, outcome: Result<Vec<u8>, BlockError>) -> Option<Waker> {
        self.outcome = Some(outcome);
        self.waker.take()
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) next_cookie: u64,
    pub(super) pending: HashMap<u64, Pending>,
    /// The connection is gone; the errno every request fails with.
    pub(super) failed: Option<i32>,
    /// The server announced its shutdown: no new requests.
    pub(super) draining: bool,
    /// The device is being dropped: a closing connection is no news.
    pub(super) closing: bool,
}

#[derive(Debug)]
pub(super) struct Writer {
    pub(super) stream: Stream,
    /// `NBD_CMD_DISC` went out: nothing may follow it.
    pub(super) disconnected: bool,
}

/// What the callers and the reader thread share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) writer: Mutex<Writer>,
    /// A handle on the socket to shut it down without any lock.
    pub(super) control: Stream,
    /// `address export` for log lines.
    pub(super) label: String,
}

/// Locks a mutex; the data behind it is consistent at every unlock, so a
/// panic elsewhere (there should be none) is no reason to stop.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Marks the connection broken, fails every waiting request with
    /// `errno` and logs why, once. The socket is shut down, so the reader
    /// thread ends.
    pub(super) fn fail(&self, errno: Errno, why: &str) {
        {
            let mut state = lock(&self.state);
            if state.failed.is_some() {
                return;
            }
            state.failed = Some(errno as i32);
            let waiting = state.pending.values().filter(|p| !p.abandoned).count();
            if state.draining && !state.closing {
                log::info!(
                    "NBD connection to {} closed after the server's shutdown",
                    self.label
                );
            } else if !state.closing {
                log::error!(
                    "NBD connection to {} lost: {why}; {waiting} request(s) in flight \
                     and all later ones fail with {errno}",
                    self.label
                );
            }
            state.pending.retain(|_, p| !p.abandoned);
            let wakers: Vec<Waker> = state
                .pending
                .values_mut()
                .filter_map(|p| p.settle(Err(BlockError::Io(errno as i32))))
                .collect();
            drop(state);
            wakers.into_iter().for_each(Waker::wake);
        }
        self.control.shutdown();
    }

    /// Sends `NBD_CMD_DISC` unless the connection is already over.
    pub(super) fn send_disconnect(&self) {
        let mut writer = lock(&self.writer);
        if writer.disconnected {
            return;
        }
        writer.disconnected = true;
        let header = request_header(CMD_DISC, 0, u64::MAX, 0, 0);
        let _ = writer.stream.write_all(&header);
    }
}

pub(super) fn request_header(
    command: u16,
    flags: u16,
    cookie: u64,
    offset: u64,
    len: u32,
) -> [u8; REQUEST_HEADER_LEN] {
    let mut h = [0; REQUEST_HEADER_LEN];
    h[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    h[4..6].copy_from_slice(&flags.to_be_bytes());
    h[6..8].copy_from_slice(&command.to_be_bytes());
    h[8..16].copy_from_slice(&cookie.to_be_bytes());
    h[16..24].copy_from_slice(&offset.to_be_bytes());
    h[24..28].copy_from_slice(&len.to_be_bytes());
    h
}

/// The block error for an NBD reply's error value.
pub(super) fn reply_error(value: u32) -> BlockError {
    match value {
        NBD_EPERM | EROFS => BlockError::ReadOnly,
        NBD_ENOSPC | EDQUOT | EFBIG => BlockError::NoSpace,
        NBD_ENOMEM => BlockError::Busy, // transient on the server's side
        NBD_ENOTSUP => BlockError::Unsupported,
        other => BlockError::Io(i32::try_from(other).unwrap_or(Errno::EIO as i32)),
    }
}

/// How much the reader thread reads from the socket at once: replies that
/// arrived together (a 16-byte header, and a read's data) come in with
/// one system call instead of two each. Larger reads bypass the buffer.
const READ_BUFFER: usize = 64 * 1024;

/// The reader thread: reads replies until the connection ends.
pub(super) fn reader_loop(shared: Arc<Shared>, stream: Stream) {
    let mut stream = BufReader::with_capacity(READ_BUFFER, stream);
    let (errno, why) = loop {
        let mut header = [0u8; 16];
        if let Err(e) = stream.read_exact(&mut header) {
            break describe_receive_error(&e);
        }
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let error = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let cookie = u64::from_be_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ]);
        if magic != SIMPLE_REPLY_MAGIC {
            let why = if magic == STRUCTURED_REPLY_MAGIC {
                "server sent a structured reply, which was not negotiated".to_owned()
            } else {
                format!("server sent garbage (reply magic {magic:#010x})")
            };
            break (Errno::ECONNRESET, why);
        }

        let read_len = {
            let state = lock(&shared.state);
            match state.pending.get(&cookie) {
                Some(p) if p.outcome.is_none() => p.read_len,
                _ => {
                    break (
                        Errno::ECONNRESET,
                        format!("server replied to unknown request {cookie:#x}"),
                    );
                }
            }
        };
        // Data follows a successful read reply only.
        let mut data = Vec::new();
        if error == 0 && read_len > 0 {
            data.reserve_exact(read_len);
            match (&mut stream).take(read_len as u64).read_to_end(&mut data) {
                Ok(n) if n == read_len => {}
                Ok(_) => break (Errno::ECONNRESET, "server closed the connection".to_owned()),
                Err(e) => break describe_receive_error(&e),
            }
        }

        let mut state = lock(&shared.state);
        if error == NBD_ESHUTDOWN && !state.draining {
            // The protocol asks for a soft disconnect now; requests in
            // flight still get their replies.
            state.draining = true;
            log::warn!(
                "NBD server {} is shutting down; no new requests are sent",
                shared.label
            );
            let shared = Arc::clone(&shared);
            // Not on this thread: a sender may hold the writer while it
            // waits for the server, which waits for this thread to read.
            let _ = std::thread::Builder::new()
                .name("nbd-disconnect".into())
                .spawn(move || shared.send_disconnect());
        }
        let Some(p) = state.pending.get_mut(&cookie) else {
            continue; // failed meanwhile; nobody waits
        };
        if p.abandoned {
            state.pending.remove(&cookie);
        } else {
            let waker = p.settle(if error == 0 {
                Ok(data)
            } else {
                Err(reply_error(error))
            });
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    };
    shared.fail(errno, &why);
}

/// Times requests out (`NbdOptions::request_timeout`): every `tick`, a
/// request past its deadline is given up (its reply, if it ever comes, is
/// dropped) and its waiter woken to fail with `ETIMEDOUT`. Ends with the
/// device.
pub(super) fn deadline_loop(shared: Weak<Shared>, tick: Duration) {
    loop {
        std::thread::sleep(tick);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut state = lock(&shared.state);
        if state.closing {
            return;
        }
        let wakers: Vec<Waker> = state
            .pending
            .values_mut()
            .filter(|p| p.outcome.is_none() && !p.abandoned)
            .filter(|p| p.deadline.is_some_and(|d| d <= now))
            .filter_map(|p| {
                p.abandoned = true;
                p.waker.take()
            })
            .collect();
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }
}

pub(super) fn describe_receive_error(e: &io::Error) -> (Errno, String) {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        (Errno::ECONNRESET, "server closed the connection".to_owned())
    } else {
        (Errno::ECONNRESET, format!("receiving failed: {e}"))
    }
}

/// A request on its way; `NbdDevice::reply` collects its outcome.
pub(super) struct Ticket {
    pub(super) cookie: u64,
}
