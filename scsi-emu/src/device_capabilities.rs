//! What a device declares it can do beyond reading and writing blocks.

/// The optional abilities of a [`BlockDevice`](crate::BlockDevice),
/// declared once by
/// [`capabilities`](crate::BlockDevice::capabilities) and read when the
/// emulator is built: they decide what the logical unit advertises
/// (thin provisioning, GET LBA STATUS, WRITE ATOMIC, the write cache,
/// write protection)
/// and which device methods the emulator calls; everything else it
/// emulates with reads and writes.
///
/// New abilities may be added, so the struct is built from
/// [`new`](Self::new) (nothing beyond reads and writes) with one setter per
/// ability:
///
/// ```
/// use scsi_emu::DeviceCapabilities;
///
/// let caps = DeviceCapabilities::new().unmap(true).unmap_reads_zeroes(true);
/// assert!(caps.unmap && caps.unmap_reads_zeroes && !caps.write_cache);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeviceCapabilities {
    /// The device refuses writes (reported as write protected).
    pub read_only: bool,
    /// The device has a volatile write cache that
    /// [`flush`](crate::BlockDevice::flush) empties (WCE in the caching
    /// mode page); without it every completed write is durable.
    pub write_cache: bool,
    /// [`unmap`](crate::BlockDevice::unmap) deallocates blocks (UNMAP,
    /// WRITE SAME with UNMAP, thin provisioning VPD pages).
    pub unmap: bool,
    /// Deallocated blocks read as zeros (LBPRZ); meaningful with `unmap`.
    pub unmap_reads_zeroes: bool,
    /// [`write_zeroes`](crate::BlockDevice::write_zeroes) is native
    /// (cheaper than writing zero buffers).
    pub write_zeroes: bool,
    /// [`lba_status`](crate::BlockDevice::lba_status) reports which
    /// blocks are mapped (GET LBA STATUS).
    pub lba_status: bool,
    /// [`compare_and_write`](crate::BlockDevice::compare_and_write) is
    /// atomic in the store itself (e.g. against other clients of a shared
    /// image). Otherwise COMPARE AND WRITE is emulated with a read, a
    /// compare and a write under a range lock, atomic against every command
    /// of this process.
    pub compare_and_write: bool,
    /// A single [`write_vectored`](crate::BlockDevice::write_vectored)
    /// call of up to this many blocks is all-or-nothing: if it fails, or
    /// the process or machine crashes while it runs, the blocks afterwards
    /// hold either all of the old data or all of the new, never a mix. 0
    /// (the default) promises nothing. A non-zero value enables WRITE
    /// ATOMIC(16), whose MAXIMUM ATOMIC TRANSFER LENGTH is this, capped by
    /// the MAXIMUM TRANSFER LENGTH; `u64::MAX` means calls of any length.
    /// Concurrent commands are kept apart by the emulator, so this is only
    /// about what the device stores.
    pub atomic_write_blocks: u64,
}

macro_rules! setters {
    ($($field:ident),*) => {$(
        #[doc = concat!("Set [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub const fn $field(mut self, on: bool) -> Self {
            self.$field = on;
            self
        }
    )*};
}

impl DeviceCapabilities {
    /// Nothing beyond reading and writing blocks: what a device that
    /// declares nothing gets.
    pub const fn new() -> Self {
        DeviceCapabilities {
            read_only: false,
            write_cache: false,
            unmap: false,
            unmap_reads_zeroes: false,
            write_zeroes: false,
            lba_status: false,
            compare_and_write: false,
            atomic_write_blocks: 0,
        }
    }

    setters!(
        read_only,
        write_cache,
        unmap,
        unmap_reads_zeroes,
        write_zeroes,
        lba_status,
        compare_and_write
    );

    /// Set [`atomic_write_blocks`](Self::atomic_write_blocks).
    #[must_use]
    pub const fn atomic_write_blocks(mut self, blocks: u64) -> Self {
        self.atomic_write_blocks = blocks;
        self
    }
}
