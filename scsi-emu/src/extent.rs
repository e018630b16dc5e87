//! A run of blocks, and what a device says about one.

/// `blocks` consecutive blocks from `lba`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Extent {
    /// The first block.
    pub lba: u64,
    /// How many blocks (zero for none).
    pub blocks: u64,
}

impl Extent {
    /// `blocks` blocks from `lba`.
    pub const fn new(lba: u64, blocks: u64) -> Self {
        Extent { lba, blocks }
    }

    /// The block after the last one (`None` on overflow).
    pub const fn end(&self) -> Option<u64> {
        self.lba.checked_add(self.blocks)
    }

    /// Whether the extent has no blocks.
    pub const fn is_empty(&self) -> bool {
        self.blocks == 0
    }
}

/// Whether the blocks of an extent hold data or are deallocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provisioning {
    /// The blocks are allocated (mapped).
    Mapped,
    /// The blocks are deallocated (unmapped, or never written).
    Deallocated,
}

/// The answer to [`lba_status`](crate::BlockDevice::lba_status): the
/// extent that starts at the LBA asked about (at least one block) and its
/// provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtentStatus {
    /// The blocks that share one provisioning status.
    pub extent: Extent,
    /// Their status.
    pub provisioning: Provisioning,
}

impl ExtentStatus {
    /// `extent`, mapped.
    pub const fn mapped(extent: Extent) -> Self {
        ExtentStatus {
            extent,
            provisioning: Provisioning::Mapped,
        }
    }

    /// `extent`, deallocated.
    pub const fn deallocated(extent: Extent) -> Self {
        ExtentStatus {
            extent,
            provisioning: Provisioning::Deallocated,
        }
    }
}
