//! How a write must be carried out.

/// Options of a write, passed to
/// [`write_vectored`](crate::BlockDevice::write_vectored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct WriteFlags {
    /// Force unit access: the data is durable when the call returns (FUA
    /// in the CDB, or the initiator turned the write cache off).
    pub fua: bool,
}

impl WriteFlags {
    /// An ordinary write (durable after the next flush).
    pub const NONE: WriteFlags = WriteFlags { fua: false };
    /// A write that is durable when it completes.
    pub const FUA: WriteFlags = WriteFlags { fua: true };

    /// [`FUA`](Self::FUA) when `fua`, else [`NONE`](Self::NONE).
    pub const fn fua(fua: bool) -> Self {
        WriteFlags { fua }
    }
}
