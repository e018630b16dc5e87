//! The asynchronous counterpart of [`BlockDevice`](crate::BlockDevice):
//! for backends whose requests wait on a network or another process, so
//! that a command in flight holds no thread.

use std::future::Future;

use crate::block_error::BlockError;
use crate::device_capabilities::DeviceCapabilities;
use crate::extent::{Extent, ExtentStatus};
use crate::write_flags::WriteFlags;

/// A block device whose requests complete later: the methods return
/// futures, and [`AsyncEmulator`](crate::AsyncEmulator) keeps as many of
/// them in flight as the initiator sends commands, polling them on a few
/// threads of its own.
///
/// The methods mean exactly what [`BlockDevice`](crate::BlockDevice)'s
/// do, with the same types ([`DeviceCapabilities`], [`WriteFlags`],
/// [`Extent`], [`ExtentStatus`], [`BlockError`]); implement them with
/// `async fn`:
///
/// ```
/// use scsi_emu::{AsyncBlockDevice, BlockError};
/// use std::sync::Mutex;
///
/// struct Remote(Mutex<Vec<u8>>);
///
/// impl AsyncBlockDevice for Remote {
///     fn block_size(&self) -> u32 { 512 }
///     fn num_blocks(&self) -> u64 { 128 }
///     async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
///         // ... await the network here ...
///         let at = lba as usize * 512;
///         buf.copy_from_slice(&self.0.lock().unwrap()[at..at + buf.len()]);
///         Ok(())
///     }
///     async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
///         let at = lba as usize * 512;
///         self.0.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
///         Ok(())
///     }
/// }
/// ```
///
/// **Futures and runtimes.** The futures must be `Send` (they move
/// between the emulator's threads) and are polled with ordinary
/// [`Waker`](std::task::Waker)s, so anything that wakes its waker works:
/// a completion callback of a C library (librbd's aio), a channel, a
/// socket read by a thread of the device, `smol`/`async-io` futures (which
/// bring their own reactor). Futures of a runtime that must be polled
/// inside that runtime (tokio's I/O types and timers) do not work directly:
/// spawn the work on the device's own runtime and await the join handle
/// (`handle.spawn(async move { ... }).await`), which any waker can wait on.
///
/// A future that is dropped before it finishes (only when serving stops)
/// must leave the buffers it was given alone from then on: a device that
/// hands a buffer to another thread or library copies it first, or waits.
pub trait AsyncBlockDevice: Send + Sync + 'static {
    /// Size of one logical block in bytes (512, 1024, 2048 or 4096).
    fn block_size(&self) -> u32;

    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;

    /// Fill `buf` with the blocks starting at `lba`.
    fn read(&self, lba: u64, buf: &mut [u8])
    -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Store `buf` at the blocks starting at `lba`.
    fn write(&self, lba: u64, buf: &[u8]) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// See [`BlockDevice::capabilities`](crate::BlockDevice::capabilities).
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new()
    }

    /// See [`BlockDevice::product_name`](crate::BlockDevice::product_name).
    fn product_name(&self) -> &str {
        "block device"
    }

    /// See [`BlockDevice::flush`](crate::BlockDevice::flush).
    fn flush(&self) -> impl Future<Output = Result<(), BlockError>> + Send {
        async { Ok(()) }
    }

    /// See [`BlockDevice::read_vectored`](crate::BlockDevice::read_vectored);
    /// the default reads each buffer in turn.
    fn read_vectored(
        &self,
        lba: u64,
        bufs: &mut [&mut [u8]],
    ) -> impl Future<Output = Result<(), BlockError>> + Send {
        async move {
            let bs = u64::from(self.block_size().max(1));
            let mut at = lba;
            for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
                self.read(at, buf).await?;
                at += buf.len() as u64 / bs;
            }
            Ok(())
        }
    }

    /// See [`BlockDevice::write_vectored`](crate::BlockDevice::write_vectored);
    /// the default writes each buffer in turn, then flushes for FUA.
    fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> impl Future<Output = Result<(), BlockError>> + Send {
        async move {
            let bs = u64::from(self.block_size().max(1));
            let mut at = lba;
            for buf in bufs.iter().filter(|b| !b.is_empty()) {
                self.write(at, buf).await?;
                at += buf.len() as u64 / bs;
            }
            if flags.fua {
                self.flush().await
            } else {
                Ok(())
            }
        }
    }

    /// See [`BlockDevice::unmap`](crate::BlockDevice::unmap).
    fn unmap(&self, extent: Extent) -> impl Future<Output = Result<(), BlockError>> + Send {
        let _ = extent;
        async { Err(BlockError::Unsupported) }
    }

    /// See [`BlockDevice::write_zeroes`](crate::BlockDevice::write_zeroes);
    /// the default writes zero buffers of up to 1 MiB.
    fn write_zeroes(&self, extent: Extent) -> impl Future<Output = Result<(), BlockError>> + Send {
        async move {
            let bs = u64::from(self.block_size());
            if bs == 0 {
                return Err(BlockError::Unsupported);
            }
            let per_call = ((1 << 20) / bs).max(1);
            let zeros = vec![0u8; (per_call.min(extent.blocks) * bs) as usize];
            let mut done = 0;
            while done < extent.blocks {
                let n = per_call.min(extent.blocks - done);
                self.write(extent.lba + done, &zeros[..(n * bs) as usize])
                    .await?;
                done += n;
            }
            Ok(())
        }
    }

    /// See [`BlockDevice::lba_status`](crate::BlockDevice::lba_status).
    fn lba_status(
        &self,
        lba: u64,
    ) -> impl Future<Output = Result<ExtentStatus, BlockError>> + Send {
        let _ = lba;
        async { Err(BlockError::Unsupported) }
    }

    /// See [`BlockDevice::compare_and_write`](crate::BlockDevice::compare_and_write).
    fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> impl Future<Output = Result<Option<usize>, BlockError>> + Send {
        let _ = (lba, compare, write);
        async { Err(BlockError::Unsupported) }
    }

    /// See [`BlockDevice::resize`](crate::BlockDevice::resize); a control
    /// operation, not a command, so it is synchronous.
    fn resize(&self, num_blocks: u64) -> Result<(), BlockError> {
        let _ = num_blocks;
        Err(BlockError::Unsupported)
    }
}
