//! What a logical unit can do beyond the mandatory commands.

/// What the logical unit can do beyond the mandatory commands; decided
/// once, when the emulator is built, from the device and the emulator's
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Capabilities {
    /// The device deallocates blocks (UNMAP, WRITE SAME with UNMAP).
    pub(crate) unmap: bool,
    /// Deallocated blocks read as zeros (LBPRZ).
    pub(crate) unmap_reads_zeroes: bool,
    /// The device reports which blocks are mapped (GET LBA STATUS).
    pub(crate) lba_status: bool,
    /// The device's writes of up to this many blocks are all-or-nothing
    /// (WRITE ATOMIC); 0 when it promises nothing.
    pub(crate) atomic_write_blocks: u64,
    /// The unit reports asymmetric access (REPORT TARGET PORT GROUPS):
    /// it was given a [`PortGroupSource`](crate::PortGroupSource).
    pub(crate) port_groups: bool,
}

impl Capabilities {
    /// SANITIZE BLOCK ERASE is offered: unmapping every block leaves
    /// nothing of the old data readable only when unmapped blocks read
    /// as zeros.
    pub(crate) fn block_erase(&self) -> bool {
        self.unmap && self.unmap_reads_zeroes
    }
}
