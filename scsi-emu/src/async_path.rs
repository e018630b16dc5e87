//! The commands an [`AsyncEmulator`](crate::AsyncEmulator) runs as
//! futures, without a thread: READ, WRITE and SYNCHRONIZE CACHE, each one
//! call of the asynchronous device. They are chosen when the command is
//! ordinary (in range, within the transfer limit, its data in whole-block
//! segments, its LBA range free to lock, or for a READ free of atomic
//! writes); anything else runs the synchronous family, which gives the
//! same answers and waits for the range on its thread.

use std::sync::Arc;

use crate::async_block_device::AsyncBlockDevice;
use crate::blocking::Blocking;
use crate::completion::Completion;
use crate::data_buffer::{DataBuffer, MAX_LENT_SEGMENTS};
use crate::lun::Lun;
use crate::medium::{
    Direction, backend_failure, byte_len, check_range, check_transfer, whole_block_prefix,
    write_parts,
};
use crate::range_lock::Acquired;
use crate::read_write::Transfer;
use crate::response::ScsiResponse;
use crate::synchronize_cache::SynchronizeCache;

/// A unit over an asynchronous device.
pub(crate) type AsyncLun<D> = Lun<Blocking<D>>;

/// A command that goes without a thread, with what was checked.
pub(crate) enum AsyncOp {
    /// Read `len` bytes (whole blocks) into the buffer; its range is held
    /// for reading.
    Read(Transfer, usize, Acquired),
    /// Write the first `len` bytes of the buffer; its range is locked.
    Write(Transfer, usize, Acquired),
    Flush(SynchronizeCache),
}

/// `Some(len)` when the first `len` bytes of a transfer of `t` lie in
/// whole-block segments that can be lent at once, after the transfer
/// checks passed; `None` for the synchronous path.
fn lendable<D: AsyncBlockDevice>(
    lun: &AsyncLun<D>,
    t: &Transfer,
    data: &dyn DataBuffer,
    write: bool,
) -> Option<usize> {
    let bs = check_transfer(lun, t.lba, t.blocks, t.length_field).ok()?;
    let want = byte_len(t.blocks, bs);
    // A short write buffer is refused by the synchronous path.
    if write && want > data.len() {
        return None;
    }
    let len = want.min(data.len());
    if data.segment_count() > MAX_LENT_SEGMENTS {
        return None;
    }
    let mut taken = 0;
    for i in 0..data.segment_count() {
        if taken >= len {
            break;
        }
        let n = data.segment(i).len().min(len - taken);
        if n % bs != 0 {
            return None;
        }
        taken += n;
    }
    Some(len)
}

/// The asynchronous form of an admitted command, when it has one.
pub(crate) fn plan<D: AsyncBlockDevice>(
    lun: &AsyncLun<D>,
    command: &crate::command::Command,
    data: &dyn DataBuffer,
) -> Option<AsyncOp> {
    use crate::command::Command;
    match command {
        Command::Read(t) => {
            let len = lendable(lun, t, data, false)?;
            // A WRITE ATOMIC of these blocks, running or waiting, means
            // waiting: the synchronous path waits on its own thread.
            let held = lun.locks.try_acquire_read(t.lba, t.blocks)?;
            Some(AsyncOp::Read(t.clone(), len, held))
        }
        Command::Write(t) => {
            let len = lendable(lun, t, data, true)?;
            // A locked overlapping range (COMPARE AND WRITE) means waiting:
            // the synchronous path waits on its own thread.
            let held = lun.locks.try_acquire(t.lba, t.blocks)?;
            Some(AsyncOp::Write(t.clone(), len, held))
        }
        Command::SynchronizeCache(s) => {
            check_range(lun.device(), s.lba, s.blocks).ok()?;
            Some(AsyncOp::Flush(s.clone()))
        }
        _ => None,
    }
}

/// A locked range that a future holds; unlocked when dropped.
struct HeldRange<D: AsyncBlockDevice> {
    lun: Arc<AsyncLun<D>>,
    range: Option<Acquired>,
}

impl<D: AsyncBlockDevice> Drop for HeldRange<D> {
    fn drop(&mut self) {
        if let Some(range) = self.range.take() {
            self.lun.locks.release(range);
        }
    }
}

/// Run `op` and answer `completion`.
pub(crate) async fn run<D: AsyncBlockDevice, C: Completion>(
    lun: Arc<AsyncLun<D>>,
    op: AsyncOp,
    mut completion: C,
) {
    let device = &lun.device().0;
    let response = match op {
        AsyncOp::Read(t, len, held) => {
            let _held = HeldRange {
                lun: lun.clone(),
                range: Some(held),
            };
            let (_, data) = completion.parts();
            let mut lent: [&mut [u8]; MAX_LENT_SEGMENTS] = Default::default();
            let n = data.segments_mut(&mut lent).unwrap_or(0);
            // Whole blocks: `plan` checked.
            let bs = lun.device().block_size() as usize;
            let n = whole_block_prefix(&mut lent[..n], len, bs).unwrap_or(0);
            match device.read_vectored(t.lba, &mut lent[..n]).await {
                Ok(()) => ScsiResponse::data_in(len),
                Err(err) => backend_failure(&err, t.lba, Direction::Read),
            }
        }
        AsyncOp::Write(t, len, held) => {
            let _held = HeldRange {
                lun: lun.clone(),
                range: Some(held),
            };
            let (_, data) = completion.parts();
            let mut parts: [&[u8]; MAX_LENT_SEGMENTS] = [&[]; MAX_LENT_SEGMENTS];
            let n = write_parts(&*data, len, &mut parts);
            let flags = lun.write_flags(t.fua);
            match device.write_vectored(t.lba, &parts[..n], flags).await {
                Ok(()) => ScsiResponse::good(),
                Err(err) => backend_failure(&err, t.lba, Direction::Write),
            }
        }
        AsyncOp::Flush(s) => match device.flush().await {
            Ok(()) => ScsiResponse::good(),
            Err(err) => backend_failure(&err, s.lba, Direction::Write),
        },
    };
    completion.complete(response, lun.descriptor_sense());
}
