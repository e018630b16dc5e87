//! Why an NBD device could not be connected.

use std::io;

use super::address::NbdAddress;

/// Why an [`NbdDevice`](super::NbdDevice) could not be connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NbdError {
    /// The block size is not 512, 1024, 2048 or 4096.
    #[error("invalid block size {0}: must be 512, 1024, 2048 or 4096")]
    InvalidBlockSize(u32),
    /// No connection could be made (refused, no such socket, unreachable,
    /// timed out, name not resolved).
    #[error("cannot connect to NBD server {address}: {source}")]
    Connect {
        /// The server's address.
        address: NbdAddress,
        /// What the system said.
        source: io::Error,
    },
    /// The connection failed during the handshake (closed by the server,
    /// reset, or no answer within the connect timeout).
    #[error("{}", handshake_failure(.0))]
    Handshake(#[source] io::Error),
    /// The server's greeting is not NBD's.
    #[error("the server is not an NBD server (wrong greeting)")]
    NotNbd,
    /// The server speaks only the oldstyle handshake, which cannot name
    /// an export; this client needs newstyle.
    #[error("the NBD server does not speak the newstyle handshake (oldstyle only)")]
    Oldstyle,
    /// The server has no export of that name.
    #[error("{}", unknown_export(export, message))]
    UnknownExport {
        /// The name asked for.
        export: String,
        /// The server's explanation, possibly empty.
        message: String,
    },
    /// The server requires TLS, which this client does not do.
    #[error(
        "the NBD server requires TLS for export {export:?}, which this client does not support"
    )]
    TlsRequired {
        /// The name asked for.
        export: String,
    },
    /// The server refused the export for another reason (policy, shutting
    /// down, or a server without `NBD_OPT_GO` that hung up on
    /// `NBD_OPT_EXPORT_NAME`, as such a server does for an unknown export).
    #[error("the NBD server refused export {export:?}: {reason}")]
    Refused {
        /// The name asked for.
        export: String,
        /// Why, as far as the server told.
        reason: String,
    },
    /// The server broke the protocol.
    #[error("NBD protocol violation by the server: {0}")]
    Protocol(String),
    /// The server's block size constraints exclude the requested block
    /// size.
    #[error(
        "block size {block_size} does not fit the NBD server's constraints \
         (minimum block size {minimum}, maximum payload {maximum})"
    )]
    BlockSizeConstraints {
        /// The requested block size.
        block_size: u32,
        /// The server's minimum block size.
        minimum: u32,
        /// The server's maximum payload.
        maximum: u32,
    },
    /// The export size is not a whole, non-zero number of blocks.
    #[error("NBD export size {size} is not a non-zero multiple of the block size {block_size}")]
    BadSize {
        /// Export size in bytes.
        size: u64,
        /// The requested block size.
        block_size: u32,
    },
    /// The reader thread could not be started.
    #[error("cannot start the NBD reader thread: {0}")]
    Thread(#[source] io::Error),
}

/// The message of [`NbdError::Handshake`]: a timeout and a closed
/// connection are said in words.
fn handshake_failure(e: &io::Error) -> String {
    if is_timeout(e) {
        "NBD server did not answer the handshake in time".into()
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "NBD server closed the connection during the handshake".into()
    } else {
        format!("NBD handshake failed: {e}")
    }
}

/// The message of [`NbdError::UnknownExport`], with the server's words
/// when it gave any.
fn unknown_export(export: &str, message: &str) -> String {
    let mut text = format!("the NBD server has no export named {export:?}");
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
