//! What every command that touches the medium shares: the LBA range and
//! transfer length checks, the mapping of backend errors to sense data,
//! and moving data between a command's buffer and the device.
//!
//! Data moves without copies where possible: the block-aligned part of
//! every data buffer segment goes straight to `BlockDevice::read` or
//! `write`; only a block split across two segments passes through a
//! one-block bounce buffer.

use std::fmt;

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::cdb::invalid_field;
use crate::data_buffer::{DataBuffer, MAX_LENT_SEGMENTS};
use crate::lun::Lun;
use crate::response::ScsiResponse;
use crate::write_flags::WriteFlags;

/// Which way data was moving when the backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Read => "read",
            Direction::Write => "write",
        })
    }
}

/// LBA OUT OF RANGE unless `blocks` blocks from `lba` lie on the device.
/// `lba == num_blocks` with no blocks is in range (nothing is accessed).
pub(crate) fn check_range<D: BlockDevice + ?Sized>(
    device: &D,
    lba: u64,
    blocks: u64,
) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= device.num_blocks() => Ok(()),
        _ => Err(Sense::illegal_request(AdditionalSense::LBA_OUT_OF_RANGE)),
    }
}

/// The response for a failed backend call at `lba`.
pub(crate) fn backend_failure(err: &BlockError, lba: u64, direction: Direction) -> ScsiResponse {
    log::warn!("backend {direction} failed at LBA {lba}: {err}");
    let sense = match err {
        BlockError::OutOfRange => Sense::illegal_request(AdditionalSense::LBA_OUT_OF_RANGE),
        BlockError::Medium | BlockError::Io(_) => Sense::new(
            SenseKey::MediumError,
            match direction {
                Direction::Read => AdditionalSense::UNRECOVERED_READ_ERROR,
                Direction::Write => AdditionalSense::WRITE_ERROR,
            },
        ),
        BlockError::Busy => return ScsiResponse::busy(),
        BlockError::Unsupported => {
            Sense::illegal_request(AdditionalSense::INVALID_COMMAND_OPERATION_CODE)
        }
        BlockError::ReadOnly => write_protected(),
        BlockError::NoSpace => Sense::new(
            SenseKey::DataProtect,
            AdditionalSense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        ),
    };
    ScsiResponse::check_condition(sense)
}

/// DATA PROTECT, WRITE PROTECTED.
pub(crate) fn write_protected() -> Sense {
    Sense::new(SenseKey::DataProtect, AdditionalSense::WRITE_PROTECTED)
}

/// The block size as a usize; `None` for a (broken) zero block size.
pub(crate) fn block_size<D: BlockDevice + ?Sized>(device: &D) -> Option<usize> {
    usize::try_from(device.block_size())
        .ok()
        .filter(|&bs| bs > 0)
}

/// Bytes in `blocks` blocks, saturating: the result is only compared
/// with buffer lengths.
pub(crate) fn byte_len(blocks: u64, block_size: usize) -> usize {
    usize::try_from(blocks)
        .ok()
        .and_then(|b| b.checked_mul(block_size))
        .unwrap_or(usize::MAX)
}

/// The checks every command moving `blocks` blocks from `lba` shares: a
/// usable block size, the MAXIMUM TRANSFER LENGTH (refused at the length
/// field, CDB byte `length_field`) and the LBA range. Returns the block
/// size.
pub(crate) fn check_transfer<D: BlockDevice>(
    lun: &Lun<D>,
    lba: u64,
    blocks: u64,
    length_field: u16,
) -> Result<usize, ScsiResponse> {
    let Some(bs) = block_size(lun.device()) else {
        return Err(ScsiResponse::internal_failure());
    };
    if blocks > lun.limits.max_transfer {
        return Err(invalid_field(length_field, 7).into());
    }
    check_range(lun.device(), lba, blocks)?;
    Ok(bs)
}

/// [`check_transfer`] for a command that writes the data-out buffer, which
/// must hold the whole transfer: writing part of it, or blocks padded with
/// garbage, would corrupt the disk (extra bytes are ignored). Returns the
/// block size and the transfer's length in bytes.
pub(crate) fn check_write_transfer<D: BlockDevice>(
    lun: &Lun<D>,
    lba: u64,
    blocks: u64,
    length_field: u16,
    data_len: usize,
) -> Result<(usize, usize), ScsiResponse> {
    let bs = check_transfer(lun, lba, blocks, length_field)?;
    let len = byte_len(blocks, bs);
    if len > data_len {
        log::debug!("write of {blocks} blocks at LBA {lba} with only {data_len} data bytes");
        return Err(invalid_field(length_field, 7).into());
    }
    Ok((bs, len))
}

/// Cut the segments to the first `len` bytes in place, dropping empty
/// ones; how many remain, or `None` unless each holds whole blocks (the
/// caller then goes block by block).
pub(crate) fn whole_block_prefix(segs: &mut [&mut [u8]], len: usize, bs: usize) -> Option<usize> {
    let mut taken = 0;
    let mut kept = 0;
    for i in 0..segs.len() {
        if taken >= len {
            break;
        }
        let seg = std::mem::take(&mut segs[i]);
        let n = seg.len().min(len - taken);
        if n % bs != 0 {
            return None;
        }
        taken += n;
        if n > 0 {
            segs[kept] = &mut seg[..n];
            kept += 1;
        }
    }
    Some(kept)
}

/// The first `len` bytes of `data` as slices in `parts` (empty segments
/// left out; at most `parts.len()` of them); how many.
pub(crate) fn write_parts<'a>(
    data: &'a dyn DataBuffer,
    len: usize,
    parts: &mut [&'a [u8]],
) -> usize {
    let mut count = 0;
    let mut taken = 0;
    for i in 0..data.segment_count() {
        if taken >= len || count == parts.len() {
            break;
        }
        let seg = data.segment(i);
        let seg = &seg[..seg.len().min(len - taken)];
        taken += seg.len();
        if !seg.is_empty() {
            parts[count] = seg;
            count += 1;
        }
    }
    count
}

/// The LBA of the block holding byte `pos` of a transfer from `start`.
fn lba_at(start: u64, pos: usize, bs: usize) -> u64 {
    start + (pos / bs) as u64
}

/// Read the first `len` bytes of the blocks from `start` into `data`
/// (`len` ≤ `data.len()`, inside the device). On failure, the error and
/// the LBA of the failed call.
pub(crate) fn read_into<D: BlockDevice + ?Sized>(
    device: &D,
    start: u64,
    bs: usize,
    data: &mut dyn DataBuffer,
    len: usize,
) -> Result<(), (BlockError, u64)> {
    // The usual case: every segment holds whole blocks (the ring's data
    // pages do), so one vectored call serves the whole command.
    if data.segment_count() > 1 {
        let mut lent: [&mut [u8]; MAX_LENT_SEGMENTS] = Default::default();
        if let Some(n) = data.segments_mut(&mut lent)
            && let Some(n) = whole_block_prefix(&mut lent[..n], len, bs)
        {
            return device
                .read_vectored(start, &mut lent[..n])
                .map_err(|e| (e, start));
        }
    }
    let mut bounce = Vec::new();
    let mut pos = 0;
    for i in 0..data.segment_count() {
        if pos >= len {
            break;
        }
        let seg = data.segment_mut(i);
        let take = seg.len().min(len - pos);
        let seg = &mut seg[..take];
        let mut off = 0;

        // The rest of a block that started in an earlier segment (already
        // read into the bounce buffer).
        let in_block = pos % bs;
        if in_block != 0 {
            let n = (bs - in_block).min(take);
            seg[..n].copy_from_slice(&bounce[in_block..in_block + n]);
            off += n;
            pos += n;
        }

        // Whole blocks: straight into the segment.
        let whole = (take - off) / bs * bs;
        if whole > 0 {
            let lba = lba_at(start, pos, bs);
            device
                .read(lba, &mut seg[off..off + whole])
                .map_err(|e| (e, lba))?;
            off += whole;
            pos += whole;
        }

        // A block that continues in the next segment (or is cut short by
        // the end of the buffer).
        let rest = take - off;
        if rest > 0 {
            let lba = lba_at(start, pos, bs);
            bounce.resize(bs, 0);
            device.read(lba, &mut bounce).map_err(|e| (e, lba))?;
            seg[off..].copy_from_slice(&bounce[..rest]);
            pos += rest;
        }
    }
    Ok(())
}

/// Write the first `len` bytes of `data` (a whole number of blocks,
/// `len` ≤ `data.len()`) to the blocks from `start`.
pub(crate) fn write_from<D: BlockDevice + ?Sized>(
    device: &D,
    start: u64,
    bs: usize,
    data: &dyn DataBuffer,
    len: usize,
    flags: WriteFlags,
) -> Result<(), (BlockError, u64)> {
    let put = |lba: u64, buf: &[u8]| {
        device
            .write_vectored(lba, &[buf], flags)
            .map_err(|e| (e, lba))
    };
    if (2..=MAX_LENT_SEGMENTS).contains(&data.segment_count()) {
        // On the stack: one vectored call allocates nothing.
        let mut parts: [&[u8]; MAX_LENT_SEGMENTS] = [&[]; MAX_LENT_SEGMENTS];
        let count = write_parts(data, len, &mut parts);
        if parts[..count].iter().all(|p| p.len() % bs == 0) {
            return device
                .write_vectored(start, &parts[..count], flags)
                .map_err(|e| (e, start));
        }
    }
    let mut bounce = Vec::new();
    let mut pos = 0;
    for i in 0..data.segment_count() {
        if pos >= len {
            break;
        }
        let seg = data.segment(i);
        let seg = &seg[..seg.len().min(len - pos)];
        let mut off = 0;

        // Complete a block begun in an earlier segment.
        let in_block = pos % bs;
        if in_block != 0 {
            let n = (bs - in_block).min(seg.len());
            bounce[in_block..in_block + n].copy_from_slice(&seg[..n]);
            off += n;
            pos += n;
            if pos % bs == 0 {
                put(lba_at(start, pos - bs, bs), &bounce)?;
            }
        }

        // Whole blocks: straight from the segment.
        let whole = (seg.len() - off) / bs * bs;
        if whole > 0 {
            put(lba_at(start, pos, bs), &seg[off..off + whole])?;
            off += whole;
            pos += whole;
        }

        // The start of a block that continues in the next segment.
        let rest = seg.len() - off;
        if rest > 0 {
            bounce.resize(bs, 0);
            bounce[..rest].copy_from_slice(&seg[off..]);
            pos += rest;
        }
    }
    // `len` is a whole number of blocks and the buffer holds all of it,
    // so the loop ended on a block boundary: nothing is left in `bounce`.
    Ok(())
}
