//! The file device served through io_uring: reads, writes and flushes
//! are submitted to the device's ring and complete when the kernel
//! answers, holding no thread meanwhile.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::libc;
use scsi_emu::{
    AsyncBlockDevice, BlockDevice, BlockError, DeviceCapabilities, Extent, ExtentStatus, WriteFlags,
};

use super::super::aligned::AlignedBuf;
use super::super::device::{FileDevice, MAX_BUFFER};
use super::super::error::FileDeviceError;
use super::super::options::FileOptions;
use super::cursor::Cursor;
use super::pool::BufferPool;
use super::ring::{Op, Ring};

/// Index of the file among the ring's files: the plain descriptor.
const PLAIN: u32 = 0;
/// The `O_DSYNC` descriptor, for FUA writes (when the device has one).
const DSYNC: u32 = 1;

/// A [`FileDevice`] whose reads, writes and flushes go through an
/// io_uring: an [`AsyncBlockDevice`] whose requests wait for the kernel,
/// not on threads.
///
/// The same file, options and durability as the [`FileDevice`] it wraps:
/// FUA writes go through its `O_DSYNC` descriptor (or are followed by an
/// `fdatasync` when it has none), `flush` is an `fdatasync`. Unmapping,
/// zeroing, block status and resizing run the [`FileDevice`]'s own code
/// inline (they are rare and mostly `fallocate`), so the capabilities are
/// identical.
///
/// Data passes through buffers the ring owns: the kernel reads into (or
/// writes from) a page-aligned buffer, copied to (or from) the caller's;
/// those buffers are reused from request to request (up to 8 MiB of
/// them are kept free).
/// A future dropped before its request completes therefore leaves no
/// memory of the caller's in the kernel's hands, and O_DIRECT never needs
/// the caller's buffers aligned. Unlike the thread pool, buffered writes
/// to a regular file are not serialized here: the kernel orders them.
///
/// ```
/// use block_backends::{FileOptions, UringFileDevice};
/// use scsi_emu::AsyncBlockDevice;
///
/// let path = std::env::temp_dir().join(format!("doc-uring-{}.img", std::process::id()));
/// let options = FileOptions { size: Some(1 << 20), create: true, ..FileOptions::new(512) };
/// let disk = UringFileDevice::open(&path, options)?;
/// let mut block = [0u8; 512];
/// // Any executor will do; this one polls until the future is ready.
/// fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
///     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
///     let mut future = std::pin::pin!(future);
///     loop {
///         if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
///             return value;
///         }
///     }
/// }
/// block_on(disk.write(7, &[0x5a; 512]))?;
/// block_on(disk.read(7, &mut block))?;
/// assert_eq!(block, [0x5a; 512]);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UringFileDevice {
    // Declared first, so dropped first: waits for every request in flight.
    ring: Ring,
    file: FileDevice,
    has_dsync: bool,
    /// Bounce buffers between requests.
    buffers: BufferPool,
    /// `fdatasync`s asked of the kernel: flushes, and FUA writes without
    /// an `O_DSYNC` descriptor.
    data_syncs: AtomicU64,
}

impl std::fmt::Debug for UringFileDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringFileDevice")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl UringFileDevice {
    /// Opens the file as [`FileDevice::open`] does, and sets up its ring.
    pub fn open(
        path: impl AsRef<Path>,
        options: FileOptions,
    ) -> Result<UringFileDevice, FileDeviceError> {
        UringFileDevice::new(FileDevice::open(path, options)?)
    }

    /// Serves an opened file device through a ring of its own.
    pub fn new(file: FileDevice) -> Result<UringFileDevice, FileDeviceError> {
        let ring_error = |source| FileDeviceError::IoUring {
            path: file.path.clone(),
            source,
        };
        let mut fds: Vec<OwnedFd> = vec![file.file.try_clone().map_err(ring_error)?.into()];
        if let Some(dsync) = &file.dsync {
            fds.push(dsync.try_clone().map_err(ring_error)?.into());
        }
        let has_dsync = fds.len() > 1;
        let ring = Ring::new(fds, "file-uring").map_err(ring_error)?;
        Ok(UringFileDevice {
            ring,
            file,
            has_dsync,
            buffers: BufferPool::default(),
            data_syncs: AtomicU64::new(0),
        })
    }

    /// The synchronous device underneath (its path, kind, size).
    pub fn file(&self) -> &FileDevice {
        &self.file
    }

    /// Read `len` bytes at `offset` into the start of `bounce`, asking
    /// again for the rest of short reads. Gives the buffer back.
    async fn read_exact(
        &self,
        mut bounce: AlignedBuf,
        len: usize,
        offset: u64,
    ) -> Result<AlignedBuf, BlockError> {
        let mut done = 0;
        while done < len {
            let op = Op::Read {
                file: PLAIN,
                offset: offset + done as u64,
                range: done..len,
            };
            let answer = self.ring.submit(op, Some(bounce)).await;
            bounce = answer.buffer.expect("a read gives its buffer back");
            match answer.result {
                0 => {
                    log::warn!(
                        "{}: read at byte {} past the end of the file: was it truncated?",
                        self.file.path.display(),
                        offset + done as u64
                    );
                    return Err(BlockError::Medium);
                }
                n if n > 0 => done += n as usize,
                n if n == -libc::EINTR => {}
                n => return Err(BlockError::from_errno(-n)),
            }
        }
        Ok(bounce)
    }

    /// Write the first `len` bytes of `bounce` at `offset` through `file`,
    /// asking again for the rest of short writes. Gives the buffer back.
    async fn write_exact(
        &self,
        file: u32,
        mut bounce: AlignedBuf,
        len: usize,
        offset: u64,
    ) -> Result<AlignedBuf, BlockError> {
        let mut done = 0;
        while done < len {
            let op = Op::Write {
                file,
                offset: offset + done as u64,
                range: done..len,
            };
            let answer = self.ring.submit(op, Some(bounce)).await;
            bounce = answer.buffer.expect("a write gives its buffer back");
            match answer.result {
                // As write_all_at's WriteZero: nothing errno could name.
                0 => return Err(BlockError::Medium),
                n if n > 0 => done += n as usize,
                n if n == -libc::EINTR => {}
                n => return Err(BlockError::from_errno(-n)),
            }
        }
        Ok(bounce)
    }

    /// How many `fdatasync`s were asked of the kernel.
    pub fn data_syncs(&self) -> u64 {
        self.data_syncs.load(Ordering::Relaxed)
    }

    async fn data_sync(&self) -> Result<(), BlockError> {
        self.data_syncs.fetch_add(1, Ordering::Relaxed);
        loop {
            let answer = self.ring.submit(Op::DataSync { file: PLAIN }, None).await;
            match answer.result {
                n if n >= 0 => return Ok(()),
                n if n == -libc::EINTR => {}
                n => return Err(BlockError::from_errno(-n)),
            }
        }
    }
}

impl AsyncBlockDevice for UringFileDevice {
    fn block_size(&self) -> u32 {
        BlockDevice::block_size(&self.file)
    }

    fn num_blocks(&self) -> u64 {
        BlockDevice::num_blocks(&self.file)
    }

    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.read_vectored(lba, &mut [buf]).await
    }

    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.write_vectored(lba, &[buf], WriteFlags::NONE).await
    }

    /// One read per MiB, whatever the number of buffers, scattered into
    /// them from the bounce buffer.
    async fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let offset = self.file.offset(lba, total)?;
        if total == 0 {
            return Ok(());
        }
        let mut bounce = self.buffers.take(total.min(MAX_BUFFER));
        let mut into = Cursor::default();
        let mut done = 0;
        while done < total {
            let len = (total - done).min(MAX_BUFFER);
            bounce = self.read_exact(bounce, len, offset + done as u64).await?;
            into.scatter(bufs, &bounce.as_slice()[..len]);
            done += len;
        }
        self.buffers.give(bounce);
        Ok(())
    }

    /// One write per MiB, gathered from the buffers; FUA through the
    /// `O_DSYNC` descriptor, or followed by an `fdatasync` without one.
    async fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let offset = self.file.offset(lba, total)?;
        self.file.check_writable()?;
        if total == 0 {
            return Ok(());
        }
        let file = if flags.fua && self.has_dsync {
            DSYNC
        } else {
            PLAIN
        };
        let mut bounce = self.buffers.take(total.min(MAX_BUFFER));
        let mut from = Cursor::default();
        let mut done = 0;
        while done < total {
            let len = (total - done).min(MAX_BUFFER);
            from.gather(bufs, &mut bounce.as_mut_slice()[..len]);
            bounce = self
                .write_exact(file, bounce, len, offset + done as u64)
                .await?;
            done += len;
        }
        self.buffers.give(bounce);
        if flags.fua && !self.has_dsync {
            self.data_sync().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        if self.file.read_only {
            return Ok(());
        }
        self.data_sync().await
    }

    fn capabilities(&self) -> DeviceCapabilities {
        BlockDevice::capabilities(&self.file)
    }

    fn product_name(&self) -> &str {
        BlockDevice::product_name(&self.file)
    }

    /// `fallocate`, inline: see [`FileDevice`]'s.
    async fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
        BlockDevice::unmap(&self.file, extent)
    }

    /// `fallocate`, inline: see [`FileDevice`]'s.
    async fn write_zeroes(&self, extent: Extent) -> Result<(), BlockError> {
        BlockDevice::write_zeroes(&self.file, extent)
    }

    /// `lseek`, inline: see [`FileDevice`]'s.
    async fn lba_status(&self, lba: u64) -> Result<ExtentStatus, BlockError> {
        BlockDevice::lba_status(&self.file, lba)
    }

    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        BlockDevice::resize(&self.file, num_blocks)
    }
}
