//! The limits the Block Limits VPD page reports and the commands enforce.

use crate::capabilities::Capabilities;

/// Largest NUMBER OF LOGICAL BLOCKS of COMPARE AND WRITE.
const MAX_COMPARE_AND_WRITE_BLOCKS: u64 = 16;
/// Bytes one WRITE SAME may cover: bounds the time one command takes, not
/// the disk size (initiators split larger requests).
const MAX_WRITE_SAME_BYTES: u64 = 1 << 30;
/// Bytes one UNMAP may cover, for the same reason. Half of WRITE SAME's:
/// with 512-byte blocks that is 2^20 blocks, the largest MAXIMUM UNMAP
/// LBA COUNT libiscsi's conformance suite accepts as sane.
const MAX_UNMAP_BYTES: u64 = 1 << 29;
/// Most UNMAP block descriptors in one parameter list.
const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// The preferred I/O alignment: page-sized (the OPTIMAL TRANSFER LENGTH
/// GRANULARITY is this many bytes, or one block when blocks are larger).
const PREFERRED_GRANULARITY_BYTES: u64 = 4096;

/// The limits the Block Limits VPD page reports and the commands enforce,
/// in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// MAXIMUM TRANSFER LENGTH.
    pub(crate) max_transfer: u64,
    /// OPTIMAL TRANSFER LENGTH (0: not reported).
    pub(crate) optimal_transfer: u64,
    /// OPTIMAL TRANSFER LENGTH GRANULARITY.
    pub(crate) transfer_granularity: u64,
    /// MAXIMUM COMPARE AND WRITE LENGTH.
    pub(crate) max_compare_and_write: u64,
    /// MAXIMUM WRITE SAME LENGTH.
    pub(crate) max_write_same: u64,
    /// MAXIMUM UNMAP LBA COUNT (0 without unmap).
    pub(crate) max_unmap: u64,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (0 without unmap).
    pub(crate) max_unmap_descriptors: u64,
    /// MAXIMUM ATOMIC TRANSFER LENGTH (0 without atomic writes): what the
    /// device promises to write all-or-nothing, within one transfer.
    pub(crate) max_atomic_transfer: u64,
}

impl Limits {
    pub(crate) fn new(block_size: u32, max_io_bytes: u32, caps: &Capabilities) -> Self {
        let bs = u64::from(block_size.max(1));
        let max_transfer = (u64::from(max_io_bytes) / bs).max(1);
        // Linux warns about an optimal size below a page; report none then.
        let optimal_transfer = if max_transfer * bs >= PREFERRED_GRANULARITY_BYTES {
            max_transfer
        } else {
            0
        };
        let in_blocks = |bytes: u64| (bytes / bs).max(1);
        Limits {
            max_transfer,
            optimal_transfer,
            transfer_granularity: (PREFERRED_GRANULARITY_BYTES / bs).max(1),
            max_compare_and_write: MAX_COMPARE_AND_WRITE_BLOCKS.min(max_transfer),
            max_write_same: in_blocks(MAX_WRITE_SAME_BYTES),
            max_unmap: if caps.unmap {
                in_blocks(MAX_UNMAP_BYTES)
            } else {
                0
            },
            max_unmap_descriptors: if caps.unmap {
                u64::from(MAX_UNMAP_DESCRIPTORS)
            } else {
                0
            },
            max_atomic_transfer: caps.atomic_write_blocks.min(max_transfer),
        }
    }
}
