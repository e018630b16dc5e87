//! How to connect to an NBD server.

use std::time::Duration;

/// How to connect an [`NbdDevice`](super::NbdDevice).
///
/// ```
/// use std::time::Duration;
/// use block_backends::NbdOptions;
///
/// let options = NbdOptions {
///     block_size: 4096,
///     request_timeout: Some(Duration::from_secs(30)),
///     ..NbdOptions::default()
/// };
/// assert_eq!(options.connect_timeout, Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdOptions {
    /// Logical block size of the disk: 512, 1024, 2048 or 4096. The
    /// export size must be a multiple of it. Default 512.
    pub block_size: u32,
    /// Bound on establishing the TCP connection and on each read or write
    /// of the handshake; `None` waits as long as the system does. A Unix
    /// socket connects at once or fails. Name resolution is not bounded.
    /// Default 10 seconds.
    pub connect_timeout: Option<Duration>,
    /// A request without a reply after this long fails with `ETIMEDOUT`
    /// (the connection stays up); sending a request that blocks this long
    /// breaks the connection, as the request is then cut off on the wire.
    /// `None` (the default) waits for ever.
    pub request_timeout: Option<Duration>,
}

impl Default for NbdOptions {
    fn default() -> Self {
        NbdOptions {
            block_size: 512,
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: None,
        }
    }
}
