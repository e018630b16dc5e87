//! Why an NBD device could not be connected.

use std::fmt;
use std::io;

use super::address::NbdAddress;

/// Why an [`NbdDevice`](super::NbdDevice) could not be connected.
#[derive(Debug)]
#[non_exhaustive]
pub enum NbdError {
    /// The block size is not 512, 1024, 2048 or 4096.
    InvalidBlockSize(u32),
    /// No connection could be made (refused, no such socket, unreachable,
    /// timed out, name not resolved).
    Connect {
        /// The server's address.
        address: NbdAddress,
        /// What the system said.
        source: io::Error,
    },
    /// The connection failed during the handshake (closed by the server,
    /// reset, or no answer within the connect timeout).
    Handshake(io::Error),
    /// The server's greeting is not NBD's.
    NotNbd,
    /// The server speaks only the oldstyle handshake, which cannot name
    /// an export; this client needs newstyle.
    Oldstyle,
    /// The server has no export of that name.
    UnknownExport {
        /// The name asked for.
        export: String,
        /// The server's explanation, possibly empty.
        message: String,
    },
    /// The server requires TLS, which this client does not do.
    TlsRequired {
        /// The name asked for.
        export: String,
    },
    /// The server refused the export for another reason (policy, shutting
    /// down, or a server without `NBD_OPT_GO` that hung up on
    /// `NBD_OPT_EXPORT_NAME`, as such a server does for an unknown export).
    Refused {
        /// The name asked for.
        export: String,
        /// Why, as far as the server told.
        reason: String,
    },
    /// The server broke the protocol.
    Protocol(String),
    /// The server's block size constraints exclude the requested block
    /// size.
    BlockSizeConstraints {
        /// The requested block size.
        block_size: u32,
        /// The server's minimum block size.
        minimum: u32,
        /// The server's maximum payload.
        maximum: u32,
    },
    /// The export size is not a whole, non-zero number of blocks.
    BadSize {
        /// Export size in bytes.
        size: u64,
        /// The requested block size.
        block_size: u32,
    },
    /// The reader thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for NbdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NbdError::InvalidBlockSize(size) => write!(
                f,
                "invalid block size {size}: must be 512, 1024, 2048 or 4096"
            ),
            NbdError::Connect { address, source } => {
                write!(f, "cannot connect to NBD server {address}: {source}")
            }
            NbdError::Handshake(e) if is_timeout(e) => {
                f.write_str("NBD server did not answer the handshake in time")
            }
            NbdError::Handshake(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("NBD server closed the connection during the handshake")
            }
            NbdError::Handshake(e) => write!(f, "NBD handshake failed: {e}"),
            NbdError::NotNbd => f.write_str("the server is not an NBD server (wrong greeting)"),
            NbdError::Oldstyle => {
                f.write_str("the NBD server does not speak the newstyle handshake (oldstyle only)")
            }
            NbdError::UnknownExport { export, message } => {
                write!(f, "the NBD server has no export named {export:?}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            NbdError::TlsRequired { export } => write!(
                f,
                "the NBD server requires TLS for export {export:?}, which this client does not support"
            ),
            NbdError::Refused { export, reason } => {
                write!(f, "the NBD server refused export {export:?}: {reason}")
            }
            NbdError::Protocol(what) => write!(f, "NBD protocol violation by the server: {what}"),
            NbdError::BlockSizeConstraints {
                block_size,
                minimum,
                maximum,
            } => write!(
                f,
                "block size {block_size} does not fit the NBD server's constraints \
                 (minimum block size {minimum}, maximum payload {maximum})"
            ),
            NbdError::BadSize { size, block_size } => write!(
                f,
                "NBD export size {size} is not a non-zero multiple of the block size {block_size}"
            ),
            NbdError::Thread(e) => write!(f, "cannot start the NBD reader thread: {e}"),
        }
    }
}

impl std::error::Error for NbdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NbdError::Connect { source, .. } => Some(source),
            NbdError::Handshake(e) | NbdError::Thread(e) => Some(e),
            _ => None,
        }
    }
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
