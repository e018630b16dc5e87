//! The NBD device: connecting, and the block device it is.

use std::fmt;
use std::io::IoSlice;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use scsi_emu::{AsyncBlockDevice, BlockError, BlockSize, DeviceCapabilities, Extent, WriteFlags};

use super::address::NbdAddress;
use super::connection::{
    Pending, Shared, State, Ticket, Writer, deadline_loop, lock, reader_loop, request_header,
};
use super::error::{NbdError, is_timeout};
use super::handshake::handshake;
use super::options::NbdOptions;
use super::protocol::*;
use super::stream::Stream;

/// A disk that is an export of an NBD server.
///
/// The connection is made by [`connect`](Self::connect) and closed (with
/// `NBD_CMD_DISC`) when the device is dropped. It is an
/// [`AsyncBlockDevice`]: the requests of every command in flight are on
/// the connection together, and the reader thread wakes each one when its
/// reply arrives, so no thread waits per request. Wrapped in
/// [`Blocking`](scsi_emu::Blocking) it is a
/// [`BlockDevice`](scsi_emu::BlockDevice) whose calls (any thread, at
/// once) wait for their replies on the calling thread. Which optional
/// commands exist depends on what the server offers:
///
/// | method | NBD | when the server lacks it |
/// | --- | --- | --- |
/// | `write_vectored` with FUA | write with `NBD_CMD_FLAG_FUA` | write, then flush |
/// | `flush` | `NBD_CMD_FLUSH` | nothing (no cache to flush) |
/// | `unmap` | `NBD_CMD_TRIM` | capability `unmap` not declared |
/// | `write_zeroes` | `NBD_CMD_WRITE_ZEROES` | writes of zero buffers |
///
/// The capability `write_cache` is declared when the server takes
/// `NBD_CMD_FLUSH`, `read_only` when it marks the export read-only; writes
/// to a read-only export fail with [`BlockError::ReadOnly`] without being
/// sent. Trimmed blocks are not promised to read as zeros
/// (`unmap_reads_zeroes` is not declared): the protocol lets a server
/// ignore a trim. With `NbdOptions::request_timeout`, a request without a
/// reply by then fails with `Io(ETIMEDOUT)` (checked a few times per
/// timeout) and its late reply is dropped.
///
/// Errors the server returns become [`BlockError`]s: `EPERM` (and
/// `EROFS`) [`ReadOnly`](BlockError::ReadOnly), `ENOSPC` (and `EDQUOT`,
/// `EFBIG`) [`NoSpace`](BlockError::NoSpace), `ENOMEM`
/// [`Busy`](BlockError::Busy), `ENOTSUP`
/// [`Unsupported`](BlockError::Unsupported), any other value `v`
/// `Io(v)` (for example `Io(5)` for `EIO`, `Io(22)` for `EINVAL`).
///
/// ```no_run
/// use block_backends::{NbdAddress, NbdDevice, NbdOptions};
/// use scsi_emu::{BlockDevice, Blocking};
///
/// // Served for example by `nbdkit --unix /run/disk.sock memory 64M`.
/// let address = NbdAddress::Unix { path: "/run/disk.sock".into() };
/// // Synchronous calls; serve it with `AsyncDevice` for asynchronous ones.
/// let disk = Blocking(NbdDevice::connect(&address, "", NbdOptions::default())?);
/// assert_eq!(disk.num_blocks(), (64 << 20) / 512);
/// disk.write(8, &[0xab; 1024])?;
/// let mut back = [0; 1024];
/// disk.read(8, &mut back)?;
/// assert_eq!(back, [0xab; 1024]);
/// disk.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NbdDevice {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    block_size: u32,
    num_blocks: u64,
    flags: u16,
    /// Largest length of one request, a multiple of the block size.
    max_request: u32,
    request_timeout: Option<Duration>,
}

impl fmt::Debug for NbdDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NbdDevice")
            .field("server", &self.shared.label)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("flags", &format_args!("{:#06x}", self.flags))
            .field("max_request", &self.max_request)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl NbdDevice {
    /// Connects to the server at `address` and opens `export` (`""` is the
    /// server's default export).
    ///
    /// Fails with a specific [`NbdError`] when the server cannot be
    /// reached, does not speak newstyle NBD, has no such export, or
    /// offers an export whose size or block size constraints do not fit
    /// `options.block_size`.
    pub fn connect(
        address: &NbdAddress,
        export: &str,
        options: NbdOptions,
    ) -> Result<NbdDevice, NbdError> {
        let block_size = options.block_size;
        BlockSize::new(block_size).map_err(|_| NbdError::InvalidBlockSize(block_size))?;
        if export.len() > 4096 {
            return Err(NbdError::Refused {
                export: export.to_owned(),
                reason: "export names are limited to 4096 bytes".into(),
            });
        }
        let mut stream = Stream::connect(address, options.connect_timeout).map_err(|source| {
            NbdError::Connect {
                address: address.clone(),
                source,
            }
        })?;
        let io = NbdError::Handshake;
        stream
            .set_read_timeout(options.connect_timeout)
            .map_err(io)?;
        stream
            .set_write_timeout(options.connect_timeout)
            .map_err(io)?;
        let info = handshake(&mut stream, export)?;

        let flags = if info.flags & TFLAG_HAS_FLAGS != 0 {
            info.flags
        } else {
            0 // flags without their marker mean nothing: no features
        };
        let mut max_payload = DEFAULT_MAX_PAYLOAD;
        if let Some((minimum, maximum)) = info.block_sizes {
            if minimum == 0 || block_size % minimum != 0 || maximum < block_size {
                return Err(NbdError::BlockSizeConstraints {
                    block_size,
                    minimum,
                    maximum,
                });
            }
            max_payload = max_payload.min(maximum);
        }
        if info.size == 0 || info.size % u64::from(block_size) != 0 {
            return Err(NbdError::BadSize {
                size: info.size,
                block_size,
            });
        }
        let max_request = max_payload / block_size * block_size;

        // Transmission: the reader blocks until a reply comes; sending is
        // bounded by the request timeout.
        stream.set_read_timeout(None).map_err(io)?;
        stream
            .set_write_timeout(options.request_timeout)
            .map_err(io)?;
        let reader_stream = stream.try_clone().map_err(io)?;
        let control = stream.try_clone().map_err(io)?;
        let label = if export.is_empty() {
            address.to_string()
        } else {
            format!("{address} export {export:?}")
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            writer: Mutex::new(Writer {
                stream,
                disconnected: false,
            }),
            control,
            label,
        });
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("nbd-reader".into())
                .spawn(move || reader_loop(shared, reader_stream))
                .map_err(NbdError::Thread)?
        };
        if let Some(timeout) = options.request_timeout {
            let shared = Arc::downgrade(&shared);
            let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            std::thread::Builder::new()
                .name("nbd-deadlines".into())
                .spawn(move || deadline_loop(shared, tick))
                .map_err(NbdError::Thread)?;
        }
        log::info!(
            "NBD connected to {}: {} bytes, flags {flags:#06x}",
            shared.label,
            info.size
        );
        Ok(NbdDevice {
            shared,
            reader: Some(reader),
            block_size,
            num_blocks: info.size / u64::from(block_size),
            flags,
            max_request,
            request_timeout: options.request_timeout,
        })
    }

    /// Size of the export in bytes.
    pub fn export_size(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }

    /// Whether the connection still takes requests: false once it broke
    /// or the server announced its shutdown, after which every request
    /// fails.
    pub fn is_connected(&self) -> bool {
        let state = lock(&self.shared.state);
        state.failed.is_none() && !state.draining
    }

    /// Requests sent and not answered yet (all commands together).
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.state)
            .pending
            .values()
            .filter(|p| p.outcome.is_none() && !p.abandoned)
            .count()
    }

    /// The largest number of bytes one NBD request carries; longer
    /// requests are split into several, sent together.
    pub fn max_request_bytes(&self) -> u32 {
        self.max_request
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Sends one request; its reply is collected with [`wait`](Self::wait).
    fn submit(
        &self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> Result<Ticket, BlockError> {
        let cookie = {
            let mut state = lock(&self.shared.state);
            if let Some(errno) = state.failed {
                return Err(BlockError::Io(errno));
            }
            if state.draining {
                return Err(BlockError::Io(Errno::ESHUTDOWN as i32));
            }
            let cookie = state.next_cookie;
            state.next_cookie = cookie.wrapping_add(1);
            // Registered before sending: the reply may beat `write` back.
            state.pending.insert(
                cookie,
                Pending {
                    read_len: if command == CMD_READ { len as usize } else { 0 },
                    outcome: None,
                    abandoned: false,
                    waker: None,
                    deadline: self.request_timeout.map(|t| Instant::now() + t),
                },
            );
            cookie
        };

        let header = request_header(command, flags, cookie, offset, len);
        let sent = {
            let mut writer = lock(&self.shared.writer);
            if writer.disconnected {
                Err(None)
            } else {
                let mut bufs = [IoSlice::new(&header), IoSlice::new(data)];
                write_all_vectored(&mut writer.stream, &mut bufs).map_err(Some)
            }
        };
        match sent {
            Ok(()) => {}
            Err(None) => {
                lock(&self.shared.state).pending.remove(&cookie);
                return Err(BlockError::Io(Errno::ESHUTDOWN as i32));
            }
            Err(Some(e)) => {
                // Part of the request may be on the wire: the stream is
                // no longer in step, so the connection is over. `wait`
                // then reports the failure.
                let (errno, why) = if is_timeout(&e) {
                    (
                        Errno::ETIMEDOUT,
                        format!("sending a request timed out: {e}"),
                    )
                } else {
                    (Errno::EPIPE, format!("sending a request failed: {e}"))
                };
                self.shared.fail(errno, &why);
            }
        }
        Ok(Ticket { cookie })
    }

    /// The reply to `ticket`; the data of a read reply. Dropped before the
    /// reply (serving stopped), the request is given up: its reply is read
    /// and dropped.
    async fn reply(&self, ticket: Ticket) -> Result<Vec<u8>, BlockError> {
        let mut waiting = Waiting {
            shared: &self.shared,
            cookie: ticket.cookie,
            done: false,
        };
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.shared.state);
            let Some(p) = state.pending.get_mut(&ticket.cookie) else {
                // Cannot happen: only this caller removes a live request.
                waiting.done = true;
                return Poll::Ready(Err(BlockError::Io(Errno::EIO as i32)));
            };
            if p.outcome.is_some() {
                waiting.done = true;
                let p = state.pending.remove(&ticket.cookie);
                return Poll::Ready(
                    p.and_then(|p| p.outcome)
                        .unwrap_or(Err(BlockError::Io(Errno::EIO as i32))),
                );
            }
            if p.abandoned || p.deadline.is_some_and(|d| d <= Instant::now()) {
                // Timed out: the reader drops the reply when it comes.
                p.abandoned = true;
                waiting.done = true;
                return Poll::Ready(Err(BlockError::Io(Errno::ETIMEDOUT as i32)));
            }
            p.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Byte offset and length of `blocks` blocks at `lba`, checked
    /// against the device.
    fn range(&self, lba: u64, bytes: usize) -> Result<(u64, u64), BlockError> {
        let bs = u64::from(self.block_size);
        let bytes = bytes as u64;
        if bytes % bs != 0 {
            return Err(BlockError::Io(Errno::EINVAL as i32));
        }
        match lba.checked_add(bytes / bs) {
            Some(end) if end <= self.num_blocks => Ok((lba * bs, bytes)),
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Runs one command over `len` bytes at `offset`, split into requests
    /// of at most `max_request` bytes that are all sent before the first
    /// reply is awaited. `data` is the data to write; `out` receives the
    /// data read.
    async fn transfer(
        &self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u64,
        data: &[u8],
        mut out: Option<&mut [u8]>,
    ) -> Result<(), BlockError> {
        let max = u64::from(self.max_request);
        let count = len.div_ceil(max) as usize;
        let mut tickets = Vec::with_capacity(count);
        let mut result = Ok(());
        let mut done = 0u64;
        while done < len {
            let n = max.min(len - done);
            let piece = if data.is_empty() {
                &[][..]
            } else {
                &data[done as usize..(done + n) as usize]
            };
            match self.submit(command, flags, offset + done, n as u32, piece) {
                Ok(ticket) => tickets.push((done as usize, n as usize, ticket)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            done += n;
        }
        // Every ticket is collected, also after an error, so that none is
        // left behind in the table.
        for (start, n, ticket) in tickets {
            match self.reply(ticket).await {
                Ok(reply) => {
                    if let Some(out) = out.as_deref_mut() {
                        out[start..start + n].copy_from_slice(&reply);
                    }
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    async fn write_with(&self, lba: u64, buf: &[u8], flags: u16) -> Result<(), BlockError> {
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let (offset, len) = self.range(lba, buf.len())?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(CMD_WRITE, flags, offset, len, buf, None)
            .await
    }

    async fn zeroing_command(&self, command: u16, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let bytes = blocks
            .checked_mul(u64::from(self.block_size))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or(BlockError::OutOfRange)?;
        let (offset, len) = self.range(lba, bytes)?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(command, 0, offset, len, &[], None).await
    }

    /// What the server's transmission flags offer: a server that takes
    /// flushes has a write cache; trimmed blocks are not promised to read
    /// as zeros.
    fn declared(&self) -> DeviceCapabilities {
        let writable = !self.has(TFLAG_READ_ONLY);
        DeviceCapabilities::new()
            .read_only(!writable)
            .write_cache(self.has(TFLAG_SEND_FLUSH))
            .unmap(self.has(TFLAG_SEND_TRIM) && writable)
            .write_zeroes(self.has(TFLAG_SEND_WRITE_ZEROES) && writable)
    }
}

/// A request whose reply is awaited; given up if dropped first.
struct Waiting<'a> {
    shared: &'a Shared,
    cookie: u64,
    /// The outcome was taken (or the request given up already).
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = lock(&self.shared.state);
        match state.pending.get_mut(&self.cookie) {
            Some(p) if p.outcome.is_some() => {
                state.pending.remove(&self.cookie);
            }
            Some(p) => {
                p.abandoned = true;
                p.waker = None;
            }
            None => {}
        }
    }
}

/// The requests of one command are sent together and their replies
/// awaited without a thread: the reader thread wakes each one.
impl AsyncBlockDevice for NbdDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (offset, len) = self.range(lba, buf.len())?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(CMD_READ, 0, offset, len, &[], Some(buf))
            .await
    }

    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.write_with(lba, buf, 0).await
    }

    /// A FUA write carries NBD's FUA flag when the server takes it, and
    /// is followed by a flush when it does not.
    async fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let native_fua = flags.fua && self.has(TFLAG_SEND_FUA);
        let command_flags = if native_fua { CMD_FLAG_FUA } else { 0 };
        let mut at = lba;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            self.write_with(at, buf, command_flags).await?;
            at += buf.len() as u64 / u64::from(self.block_size);
        }
        if flags.fua && !native_fua {
            AsyncBlockDevice::flush(self).await
        } else {
            Ok(())
        }
    }

    async fn flush(&self) -> Result<(), BlockError> {
        if !self.has(TFLAG_SEND_FLUSH) {
            return Ok(());
        }
        let ticket = self.submit(CMD_FLUSH, 0, 0, 0, &[])?;
        self.reply(ticket).await.map(drop)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.declared()
    }

    fn product_name(&self) -> &str {
        "NBD export"
    }

    async fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        let Extent { lba, blocks } = extent;
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        if !self.has(TFLAG_SEND_TRIM) {
            return Err(BlockError::Unsupported);
        }
        self.zeroing_command(CMD_TRIM, lba, blocks).await
    }

    async fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        let Extent { lba, blocks } = extent;
        if self.has(TFLAG_SEND_WRITE_ZEROES) {
            return self.zeroing_command(CMD_WRITE_ZEROES, lba, blocks).await;
        }
        // Zero buffers of up to 1 MiB, as a plain write would.
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let bs = u64::from(self.block_size);
        let per_write = ((1 << 20) / bs).min(u64::from(self.max_request) / bs);
        let zeros = vec![0u8; (per_write.min(blocks) * bs) as usize];
        let mut done = 0;
        while done < blocks {
            let n = per_write.min(blocks - done);
            self.write_with(lba + done, &zeros[..(n * bs) as usize], 0)
                .await?;
            done += n;
        }
        Ok(())
    }
}

impl Drop for NbdDevice {
    fn drop(&mut self) {
        let connected = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            state.failed.is_none()
        };
        if connected {
            self.shared.send_disconnect();
        }
        // The server has everything it needs; closing now also wakes the
        // reader thread, which then ends.
        self.shared.control.shutdown();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
