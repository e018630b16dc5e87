//! A disk served by an NBD (Network Block Device) server.
//!
//! [`NbdDevice`] is an NBD client: it connects to a server such as
//! `qemu-nbd` or `nbdkit` over TCP or a Unix socket, negotiates one export
//! with the fixed newstyle handshake and turns every block request into
//! NBD commands.
//!
//! Handshake:
//! - `NBD_OPT_GO` with the export name and a request for the server's
//!   block size constraints, which the client then obeys (the requested
//!   block size must be a multiple of the server's minimum, and requests
//!   never exceed its maximum payload). A server that answers
//!   `NBD_REP_ERR_UNSUP`, or that does not speak fixed newstyle at all,
//!   gets the older `NBD_OPT_EXPORT_NAME`.
//! - Oldstyle servers are refused.
//! - The export size must be a whole, non-zero number of blocks: a size
//!   that is not is an error ([`NbdError::BadSize`]) rather than a disk
//!   silently shortened, so that no data of the export is hidden.
//!
//! Transmission uses simple replies only. Any number of requests may be
//! in flight on the one connection: callers send their requests in turn
//! (a mutex keeps requests whole on the wire) and then wait; one reader
//! thread reads the replies and wakes each waiting caller by the request's
//! cookie. The data of a read reply is received by the reader thread and
//! copied once into the caller's buffer.
//!
//! When the connection breaks (the server goes away, or sends something
//! that is not a valid reply) every request in flight and every later one
//! fails with [`BlockError::Io`](scsi_emu::BlockError::Io) (`ECONNRESET`, or `EPIPE` when sending
//! failed) and one line is logged at error level. There is no
//! reconnection: a new [`NbdDevice`] must be connected. With
//! [`NbdOptions::request_timeout`] a request that gets no reply in time
//! fails with `ETIMEDOUT` while the connection stays up; its late reply
//! is read and dropped.
//!
//! The process must not die of `SIGPIPE` when the server closes the
//! connection; the Rust runtime ignores that signal in every program
//! built with a `main`, which is what this relies on.

mod address;
mod connection;
mod device;
mod error;
mod handshake;
mod options;
mod protocol;
mod stream;
#[cfg(test)]
mod tests;

pub use address::{NbdAddress, NbdAddressParseError};
pub use device::NbdDevice;
pub use error::NbdError;
pub use options::NbdOptions;
pub use protocol::NBD_DEFAULT_PORT;
