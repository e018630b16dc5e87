//! What went wrong in a backend call, and the one mapping from operating
//! system errors to it.

use nix::errno::Errno;

/// What went wrong in a backend call; the SCSI layer turns it into sense data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The request lies (partly) beyond the end of the device.
    #[error("request beyond the end of the device")]
    OutOfRange,
    /// The medium could not be read or written (unrecovered error).
    #[error("medium error")]
    Medium,
    /// A transient condition: the initiator should retry later.
    #[error("device busy, retry later")]
    Busy,
    /// The device is write protected.
    #[error("device is read-only")]
    ReadOnly,
    /// The backend has no space left to store the data.
    #[error("no space left on the backing store")]
    NoSpace,
    /// An operating-system error, with its errno.
    #[error("I/O error (errno {0})")]
    Io(i32),
    /// The device does not implement this operation.
    #[error("operation not supported by the device")]
    Unsupported,
}

impl BlockError {
    /// The error for an operating-system errno (positive), the same for
    /// every backend: conditions that may pass (`ETIMEDOUT`, `EAGAIN`,
    /// `EBUSY`, `ENOTCONN`, `ESHUTDOWN`) are [`Busy`](Self::Busy), so the
    /// initiator retries; `ENOSPC` and `EDQUOT` are
    /// [`NoSpace`](Self::NoSpace); `EROFS` (a file system that went
    /// read-only, often after errors of its own) is
    /// [`ReadOnly`](Self::ReadOnly); anything else is [`Io`](Self::Io).
    ///
    /// ```
    /// use scsi_emu::BlockError;
    ///
    /// assert_eq!(BlockError::from_errno(110), BlockError::Busy); // ETIMEDOUT
    /// assert_eq!(BlockError::from_errno(122), BlockError::NoSpace); // EDQUOT
    /// assert_eq!(BlockError::from_errno(5), BlockError::Io(5)); // EIO
    /// ```
    pub fn from_errno(errno: i32) -> BlockError {
        match Errno::from_raw(errno) {
            Errno::ETIMEDOUT
            | Errno::EAGAIN
            | Errno::EBUSY
            | Errno::ENOTCONN
            | Errno::ESHUTDOWN => BlockError::Busy,
            Errno::ENOSPC | Errno::EDQUOT => BlockError::NoSpace,
            Errno::EROFS => BlockError::ReadOnly,
            _ => BlockError::Io(errno),
        }
    }
}

/// Through [`BlockError::from_errno`]; an error without an errno (a short
/// read at the end of a truncated file, say) is [`BlockError::Medium`],
/// unless its kind says the store is full or read-only.
impl From<std::io::Error> for BlockError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match (e.raw_os_error(), e.kind()) {
            (Some(errno), _) => BlockError::from_errno(errno),
            (None, ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => BlockError::NoSpace,
            (None, ErrorKind::ReadOnlyFilesystem) => BlockError::ReadOnly,
            (None, ErrorKind::TimedOut | ErrorKind::WouldBlock) => BlockError::Busy,
            (None, _) => BlockError::Medium,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn io_errors_map_by_errno_or_kind() {
        let errno = |e: Errno| BlockError::from(io::Error::from_raw_os_error(e as i32));
        assert_eq!(errno(Errno::EIO), BlockError::Io(Errno::EIO as i32));
        assert_eq!(errno(Errno::ENOSPC), BlockError::NoSpace);
        assert_eq!(errno(Errno::EDQUOT), BlockError::NoSpace);
        assert_eq!(errno(Errno::EROFS), BlockError::ReadOnly);
        assert_eq!(errno(Errno::ESHUTDOWN), BlockError::Busy);
        assert_eq!(errno(Errno::EAGAIN), BlockError::Busy);
        let kind = |k: io::ErrorKind| BlockError::from(io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), BlockError::Medium);
        assert_eq!(kind(io::ErrorKind::StorageFull), BlockError::NoSpace);
        assert_eq!(
            kind(io::ErrorKind::ReadOnlyFilesystem),
            BlockError::ReadOnly
        );
        assert_eq!(kind(io::ErrorKind::TimedOut), BlockError::Busy);
    }
}
