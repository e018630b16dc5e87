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
//! fails with [`BlockError::Io`] (`ECONNRESET`, or `EPIPE` when sending
//! failed) and one line is logged at error level. There is no
//! reconnection: a new [`NbdDevice`] must be connected. With
//! [`NbdOptions::request_timeout`] a request that gets no reply in time
//! fails with `ETIMEDOUT` while the connection stays up; its late reply
//! is read and dropped.
//!
//! The process must not die of `SIGPIPE` when the server closes the
//! connection; the Rust runtime ignores that signal in every program
//! built with a `main`, which is what this relies on.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use scsi_emu::{BlockDevice, BlockError};

/// The port the IANA reserved for NBD.
pub const NBD_DEFAULT_PORT: u16 = 10809;

// Magic numbers of the handshake and the transmission phase.
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
const IHAVEOPT: u64 = 0x4948_4156_454f_5054; // "IHAVEOPT"
const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags, which share their bits.
const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;

// Options and option replies.
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
const REP_ERR_UNSUP: u32 = REP_ERR + 1;
const REP_ERR_POLICY: u32 = REP_ERR + 2;
const REP_ERR_INVALID: u32 = REP_ERR + 3;
const REP_ERR_PLATFORM: u32 = REP_ERR + 4;
const REP_ERR_TLS_REQD: u32 = REP_ERR + 5;
const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;
const REP_ERR_SHUTDOWN: u32 = REP_ERR + 7;
const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR + 8;
const REP_ERR_TOO_BIG: u32 = REP_ERR + 9;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
const TFLAG_HAS_FLAGS: u16 = 1 << 0;
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_SEND_FUA: u16 = 1 << 3;
const TFLAG_SEND_TRIM: u16 = 1 << 5;
const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;

// Commands and command flags.
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1 << 0;

// Error values of replies that are not passed on as plain errnos.
const NBD_EPERM: u32 = 1;
const NBD_ENOMEM: u32 = 12;
const NBD_ENOSPC: u32 = 28;
const NBD_ENOTSUP: u32 = 95;
const NBD_ESHUTDOWN: u32 = 108;
// Not in the protocol's list, but errnos that servers pass through.
const EFBIG: u32 = 27;
const EROFS: u32 = 30;
const EDQUOT: u32 = 122;

/// The payload the protocol lets a client send or ask for in one request
/// without negotiation; also the cap when a server allows more, so that a
/// reply never needs a larger buffer.
const DEFAULT_MAX_PAYLOAD: u32 = 1 << 25;

/// Longest option reply accepted during the handshake (strings are at
/// most 4096 bytes; anything far larger is not an NBD server).
const MAX_OPTION_REPLY: u32 = 1 << 16;

/// Length of a request header on the wire.
const REQUEST_HEADER_LEN: usize = 28;

/// Where an NBD server listens.
///
/// Parses from `unix:PATH`, an absolute path (a Unix socket), `HOST:PORT`,
/// `[IPV6]:PORT`, or a bare host (port 10809):
///
/// ```
/// use block_backends::NbdAddress;
///
/// let tcp: NbdAddress = "localhost:10809".parse()?;
/// assert_eq!(tcp, NbdAddress::Tcp { host: "localhost".into(), port: 10809 });
/// let unix: NbdAddress = "unix:/run/nbd.sock".parse()?;
/// assert_eq!(unix, NbdAddress::Unix { path: "/run/nbd.sock".into() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NbdAddress {
    /// A TCP server; `host` is a name or an IP address.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A server on a Unix domain socket.
    Unix {
        /// Path of the socket.
        path: PathBuf,
    },
}

impl fmt::Display for NbdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NbdAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            NbdAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            NbdAddress::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a string is not an [`NbdAddress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdAddressParseError(String);

impl fmt::Display for NbdAddressParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid NBD address {:?}: expected unix:PATH, HOST:PORT or HOST",
            self.0
        )
    }
}

impl std::error::Error for NbdAddressParseError {}

impl FromStr for NbdAddress {
    type Err = NbdAddressParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NbdAddressParseError(s.to_owned());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(NbdAddress::Unix { path: path.into() });
        }
        if s.starts_with('/') {
            return Ok(NbdAddress::Unix { path: s.into() });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // [v6] or [v6]:port
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if s.matches(':').count() > 1 {
            (s, None) // a bare IPv6 address
        } else {
            match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad())?,
            None => NBD_DEFAULT_PORT,
        };
        Ok(NbdAddress::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// How to connect an [`NbdDevice`].
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

/// Why an [`NbdDevice`] could not be connected.
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

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The connection, over either kind of socket.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(address: &NbdAddress, timeout: Option<Duration>) -> io::Result<Stream> {
        match address {
            NbdAddress::Unix { path } => UnixStream::connect(path).map(Stream::Unix),
            NbdAddress::Tcp { host, port } => {
                let mut last = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    let attempt = match timeout {
                        Some(t) => TcpStream::connect_timeout(&addr, t),
                        None => TcpStream::connect(addr),
                    };
                    match attempt {
                        Ok(stream) => {
                            // Requests are small and latency-bound.
                            stream.set_nodelay(true)?;
                            return Ok(Stream::Tcp(stream));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address")
                }))
            }
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    /// Ends the connection in both directions, which also wakes a thread
    /// blocked reading it. Errors (already closed) do not matter.
    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes all of `bufs`, gathering them into as few system calls as the
/// kernel allows (a request header and its data usually go in one).
fn write_all_vectored(stream: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0); // drop leading empty slices
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

/// What the handshake learnt about the export.
#[derive(Debug, Clone, Copy)]
struct ExportInfo {
    size: u64,
    flags: u16,
    /// Minimum block size and maximum payload, when the server told.
    block_sizes: Option<(u32, u32)>,
}

/// Sends one option request.
fn send_option(stream: &mut Stream, option: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    stream.write_all(&msg)
}

/// Runs the newstyle handshake up to the transmission phase.
fn handshake(stream: &mut Stream, export: &str) -> Result<ExportInfo, NbdError> {
    let io = NbdError::Handshake;
    if read_u64(stream).map_err(io)? != NBDMAGIC {
        return Err(NbdError::NotNbd);
    }
    match read_u64(stream).map_err(io)? {
        IHAVEOPT => {}
        OLDSTYLE_MAGIC => return Err(NbdError::Oldstyle),
        _ => return Err(NbdError::NotNbd),
    }
    let server_flags = read_u16(stream).map_err(io)?;
    // Echo only the flags this client knows and the server offers.
    let client_flags = server_flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    stream
        .write_all(&u32::from(client_flags).to_be_bytes())
        .map_err(io)?;
    let no_zeroes = client_flags & FLAG_NO_ZEROES != 0;

    // Without fixed newstyle, NBD_OPT_EXPORT_NAME is the only option a
    // server is sure to understand (others may make it hang up).
    if client_flags & FLAG_FIXED_NEWSTYLE != 0 {
        if let Some(info) = option_go(stream, export)? {
            return Ok(info);
        }
    }
    option_export_name(stream, export, no_zeroes)
}

/// `NBD_OPT_GO`; `None` when the server does not know the option.
fn option_go(stream: &mut Stream, export: &str) -> Result<Option<ExportInfo>, NbdError> {
    let io = NbdError::Handshake;
    let mut data = Vec::with_capacity(export.len() + 8);
    data.extend_from_slice(&(export.len() as u32).to_be_bytes());
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&1u16.to_be_bytes()); // one information request
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(stream, OPT_GO, &data).map_err(io)?;

    let mut export_info: Option<(u64, u16)> = None;
    let mut block_sizes = None;
    loop {
        if read_u64(stream).map_err(io)? != OPTION_REPLY_MAGIC {
            return Err(NbdError::Protocol("bad option reply magic".into()));
        }
        let option = read_u32(stream).map_err(io)?;
        let reply = read_u32(stream).map_err(io)?;
        let len = read_u32(stream).map_err(io)?;
        if option != OPT_GO {
            return Err(NbdError::Protocol(format!(
                "reply to option {option} while NBD_OPT_GO was asked"
            )));
        }
        if len > MAX_OPTION_REPLY {
            return Err(NbdError::Protocol(format!("option reply of {len} bytes")));
        }
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).map_err(io)?;

        match reply {
            REP_INFO => {
                let Some(kind) = payload.get(..2) else {
                    return Err(NbdError::Protocol("NBD_REP_INFO without a type".into()));
                };
                let body = &payload[2..];
                match u16::from_be_bytes([kind[0], kind[1]]) {
                    INFO_EXPORT => {
                        let body: [u8; 10] = body.try_into().map_err(|_| {
                            NbdError::Protocol("NBD_INFO_EXPORT of the wrong length".into())
                        })?;
                        let [s0, s1, s2, s3, s4, s5, s6, s7, f0, f1] = body;
                        let size = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
                        export_info = Some((size, u16::from_be_bytes([f0, f1])));
                    }
                    INFO_BLOCK_SIZE => {
                        let body: [u8; 12] = body.try_into().map_err(|_| {
                            NbdError::Protocol("NBD_INFO_BLOCK_SIZE of the wrong length".into())
                        })?;
                        let word = |i: usize| {
                            u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]])
                        };
                        block_sizes = Some((word(0), word(8)));
                    }
                    _ => {} // information this client did not ask for
                }
            }
            REP_ACK => {
                let Some((size, flags)) = export_info else {
                    return Err(NbdError::Protocol(
                        "NBD_OPT_GO succeeded without NBD_INFO_EXPORT".into(),
                    ));
                };
                return Ok(Some(ExportInfo {
                    size,
                    flags,
                    block_sizes,
                }));
            }
            REP_ERR_UNSUP => return Ok(None),
            reply if reply & REP_ERR != 0 => {
                // Say goodbye politely; the answer does not matter.
                let _ = send_option(stream, OPT_ABORT, &[]);
                let message = String::from_utf8_lossy(&payload).into_owned();
                let export = export.to_owned();
                return Err(match reply {
                    REP_ERR_UNKNOWN => NbdError::UnknownExport { export, message },
                    REP_ERR_TLS_REQD => NbdError::TlsRequired { export },
                    _ => NbdError::Refused {
                        export,
                        reason: describe_option_error(reply, &message),
                    },
                });
            }
            other => {
                return Err(NbdError::Protocol(format!(
                    "unexpected reply type {other} to NBD_OPT_GO"
                )));
            }
        }
    }
}

fn describe_option_error(reply: u32, message: &str) -> String {
    let what = match reply {
        REP_ERR_POLICY => "forbidden by server policy".to_owned(),
        REP_ERR_INVALID => "request judged invalid".to_owned(),
        REP_ERR_PLATFORM => "not supported on the server's platform".to_owned(),
        REP_ERR_SHUTDOWN => "server is shutting down".to_owned(),
        REP_ERR_BLOCK_SIZE_REQD => "server requires block size negotiation".to_owned(),
        REP_ERR_TOO_BIG => "request too big".to_owned(),
        other => format!("error {}", other & !REP_ERR),
    };
    if message.is_empty() {
        what
    } else {
        format!("{what} ({message})")
    }
}

/// `NBD_OPT_EXPORT_NAME`, which enters transmission or makes the server
/// hang up (it cannot say why).
fn option_export_name(
    stream: &mut Stream,
    export: &str,
    no_zeroes: bool,
) -> Result<ExportInfo, NbdError> {
    send_option(stream, OPT_EXPORT_NAME, export.as_bytes()).map_err(NbdError::Handshake)?;
    let mut reply = [0u8; 10 + 124];
    let len = if no_zeroes { 10 } else { reply.len() };
    match stream.read_exact(&mut reply[..len]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(NbdError::Refused {
                export: export.to_owned(),
                reason: "the server closed the connection on NBD_OPT_EXPORT_NAME \
                         (most likely there is no such export)"
                    .into(),
            });
        }
        Err(e) => return Err(NbdError::Handshake(e)),
    }
    Ok(ExportInfo {
        size: u64::from_be_bytes(reply[..8].try_into().unwrap_or_default()),
        flags: u16::from_be_bytes([reply[8], reply[9]]),
        block_sizes: None,
    })
}

/// A request that waits for its reply.
#[derive(Debug)]
struct Pending {
    /// Bytes of data that follow a successful reply (reads only).
    read_len: usize,
    /// Set by the reader thread (or a failing connection).
    outcome: Option<Result<Vec<u8>, BlockError>>,
    /// The caller gave up waiting: the reply is read and dropped.
    abandoned: bool,
    wake: Arc<Condvar>,
}

#[derive(Debug, Default)]
struct State {
    next_cookie: u64,
    pending: HashMap<u64, Pending>,
    /// The connection is gone; the errno every request fails with.
    failed: Option<i32>,
    /// The server announced its shutdown: no new requests.
    draining: bool,
    /// The device is being dropped: a closing connection is no news.
    closing: bool,
}

#[derive(Debug)]
struct Writer {
    stream: Stream,
    /// `NBD_CMD_DISC` went out: nothing may follow it.
    disconnected: bool,
}

/// What the callers and the reader thread share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    writer: Mutex<Writer>,
    /// A handle on the socket to shut it down without any lock.
    control: Stream,
    /// `address export` for log lines.
    label: String,
}

/// Locks a mutex; the data behind it is consistent at every unlock, so a
/// panic elsewhere (there should be none) is no reason to stop.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Marks the connection broken, fails every waiting request with
    /// `errno` and logs why, once. The socket is shut down, so the reader
    /// thread ends.
    fn fail(&self, errno: Errno, why: &str) {
        {
            let mut state = lock(&self.state);
            if state.failed.is_some() {
                return;
            }
            state.failed = Some(errno as i32);
            let waiting = state.pending.values().filter(|p| !p.abandoned).count();
            if state.draining && !state.closing {
                log::info!(
                    "NBD connection to {} closed after the server's shutdown",
                    self.label
                );
            } else if !state.closing {
                log::error!(
                    "NBD connection to {} lost: {why}; {waiting} request(s) in flight \
                     and all later ones fail with {errno}",
                    self.label
                );
            }
            state.pending.retain(|_, p| !p.abandoned);
            for p in state.pending.values_mut() {
                p.outcome = Some(Err(BlockError::Io(errno as i32)));
                p.wake.notify_one();
            }
        }
        self.control.shutdown();
    }

    /// Sends `NBD_CMD_DISC` unless the connection is already over.
    fn send_disconnect(&self) {
        let mut writer = lock(&self.writer);
        if writer.disconnected {
            return;
        }
        writer.disconnected = true;
        let header = request_header(CMD_DISC, 0, u64::MAX, 0, 0);
        let _ = writer.stream.write_all(&header);
    }
}

fn request_header(
    command: u16,
    flags: u16,
    cookie: u64,
    offset: u64,
    len: u32,
) -> [u8; REQUEST_HEADER_LEN] {
    let mut h = [0; REQUEST_HEADER_LEN];
    h[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    h[4..6].copy_from_slice(&flags.to_be_bytes());
    h[6..8].copy_from_slice(&command.to_be_bytes());
    h[8..16].copy_from_slice(&cookie.to_be_bytes());
    h[16..24].copy_from_slice(&offset.to_be_bytes());
    h[24..28].copy_from_slice(&len.to_be_bytes());
    h
}

/// The block error for an NBD reply's error value.
fn reply_error(value: u32) -> BlockError {
    match value {
        NBD_EPERM | EROFS => BlockError::ReadOnly,
        NBD_ENOSPC | EDQUOT | EFBIG => BlockError::NoSpace,
        NBD_ENOMEM => BlockError::Busy, // transient on the server's side
        NBD_ENOTSUP => BlockError::Unsupported,
        other => BlockError::Io(i32::try_from(other).unwrap_or(Errno::EIO as i32)),
    }
}

/// The reader thread: reads replies until the connection ends.
fn reader_loop(shared: Arc<Shared>, mut stream: Stream) {
    let (errno, why) = loop {
        let mut header = [0u8; 16];
        if let Err(e) = stream.read_exact(&mut header) {
            break describe_receive_error(&e);
        }
        let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let error = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let cookie = u64::from_be_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ]);
        if magic != SIMPLE_REPLY_MAGIC {
            let why = if magic == STRUCTURED_REPLY_MAGIC {
                "server sent a structured reply, which was not negotiated".to_owned()
            } else {
                format!("server sent garbage (reply magic {magic:#010x})")
            };
            break (Errno::ECONNRESET, why);
        }

        let read_len = {
            let state = lock(&shared.state);
            match state.pending.get(&cookie) {
                Some(p) if p.outcome.is_none() => p.read_len,
                _ => {
                    break (
                        Errno::ECONNRESET,
                        format!("server replied to unknown request {cookie:#x}"),
                    );
                }
            }
        };
        // Data follows a successful read reply only.
        let mut data = Vec::new();
        if error == 0 && read_len > 0 {
            data.reserve_exact(read_len);
            match (&mut stream).take(read_len as u64).read_to_end(&mut data) {
                Ok(n) if n == read_len => {}
                Ok(_) => break (Errno::ECONNRESET, "server closed the connection".to_owned()),
                Err(e) => break describe_receive_error(&e),
            }
        }

        let mut state = lock(&shared.state);
        if error == NBD_ESHUTDOWN && !state.draining {
            // The protocol asks for a soft disconnect now; requests in
            // flight still get their replies.
            state.draining = true;
            log::warn!(
                "NBD server {} is shutting down; no new requests are sent",
                shared.label
            );
            let shared = Arc::clone(&shared);
            // Not on this thread: a sender may hold the writer while it
            // waits for the server, which waits for this thread to read.
            let _ = std::thread::Builder::new()
                .name("nbd-disconnect".into())
                .spawn(move || shared.send_disconnect());
        }
        let Some(p) = state.pending.get_mut(&cookie) else {
            continue; // failed meanwhile; nobody waits
        };
        if p.abandoned {
            state.pending.remove(&cookie);
        } else {
            p.outcome = Some(if error == 0 {
                Ok(data)
            } else {
                Err(reply_error(error))
            });
            p.wake.notify_one();
        }
    };
    shared.fail(errno, &why);
}

fn describe_receive_error(e: &io::Error) -> (Errno, String) {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        (Errno::ECONNRESET, "server closed the connection".to_owned())
    } else {
        (Errno::ECONNRESET, format!("receiving failed: {e}"))
    }
}

/// A request on its way; [`NbdDevice::wait`] collects its outcome.
struct Ticket {
    cookie: u64,
    wake: Arc<Condvar>,
    deadline: Option<Instant>,
}

/// A disk that is an export of an NBD server.
///
/// The connection is made by [`connect`](Self::connect) and closed (with
/// `NBD_CMD_DISC`) when the device is dropped. All methods may be called
/// from several threads at once; their requests are in flight together.
/// Which optional commands exist depends on what the server offers:
///
/// | method | NBD | when the server lacks it |
/// | --- | --- | --- |
/// | `write_fua` | write with `NBD_CMD_FLAG_FUA` | write, then flush |
/// | `flush` | `NBD_CMD_FLUSH` | nothing (no cache to flush) |
/// | `unmap` | `NBD_CMD_TRIM` | `can_unmap()` is false |
/// | `write_zeroes` | `NBD_CMD_WRITE_ZEROES` | writes of zero buffers |
///
/// `write_cache()` is true when the server takes `NBD_CMD_FLUSH`,
/// `read_only()` when it marks the export read-only; writes to a read-only
/// export fail with [`BlockError::ReadOnly`] without being sent. Trimmed
/// blocks are not promised to read as zeros (`unmap_reads_zeroes()` is
/// false): the protocol lets a server ignore a trim.
///
/// Errors the server returns become [`BlockError`]s: `EPERM` (and
/// `EROFS`) [`ReadOnly`](BlockError::ReadOnly), `ENOSPC` (and `EDQUOT`,
/// `EFBIG`) [`NoSpace`](BlockError::NoSpace), `ENOMEM`
/// [`Busy`](BlockError::Busy), `ENOTSUP`
/// [`Unsupported`](BlockError::Unsupported), any other value `v`
/// `Io(v)` (for example `Io(5)` for `EIO`, `Io(22)` for `EINVAL`).
///
/// ```no_run
/// use block_backends::{NbdAddress, NbdDevice, NbdOptions};
/// use scsi_emu::BlockDevice;
///
/// // Served for example by `nbdkit --unix /run/disk.sock memory 64M`.
/// let address = NbdAddress::Unix { path: "/run/disk.sock".into() };
/// let disk = NbdDevice::connect(&address, "", NbdOptions::default())?;
/// assert_eq!(disk.num_blocks(), (64 << 20) / 512);
/// disk.write(8, &[0xab; 1024])?;
/// let mut back = [0; 1024];
/// disk.read(8, &mut back)?;
/// assert_eq!(back, [0xab; 1024]);
/// disk.flush()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NbdDevice {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    block_size: u32,
    num_blocks: u64,
    flags: u16,
    /// Largest length of one request, a multiple of the block size.
    max_request: u32,
    request_timeout: Option<Duration>,
}

impl fmt::Debug for NbdDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NbdDevice")
            .field("server", &self.shared.label)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("flags", &format_args!("{:#06x}", self.flags))
            .field("max_request", &self.max_request)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl NbdDevice {
    /// Connects to the server at `address` and opens `export` (`""` is the
    /// server's default export).
    ///
    /// Fails with a specific [`NbdError`] when the server cannot be
    /// reached, does not speak newstyle NBD, has no such export, or
    /// offers an export whose size or block size constraints do not fit
    /// `options.block_size`.
    pub fn connect(
        address: &NbdAddress,
        export: &str,
        options: NbdOptions,
    ) -> Result<NbdDevice, NbdError> {
        let block_size = options.block_size;
        if !matches!(block_size, 512 | 1024 | 2048 | 4096) {
            return Err(NbdError::InvalidBlockSize(block_size));
        }
        if export.len() > 4096 {
            return Err(NbdError::Refused {
                export: export.to_owned(),
                reason: "export names are limited to 4096 bytes".into(),
            });
        }
        let mut stream = Stream::connect(address, options.connect_timeout).map_err(|source| {
            NbdError::Connect {
                address: address.clone(),
                source,
            }
        })?;
        let io = NbdError::Handshake;
        stream
            .set_read_timeout(options.connect_timeout)
            .map_err(io)?;
        stream
            .set_write_timeout(options.connect_timeout)
            .map_err(io)?;
        let info = handshake(&mut stream, export)?;

        let flags = if info.flags & TFLAG_HAS_FLAGS != 0 {
            info.flags
        } else {
            0 // flags without their marker mean nothing: no features
        };
        let mut max_payload = DEFAULT_MAX_PAYLOAD;
        if let Some((minimum, maximum)) = info.block_sizes {
            if minimum == 0 || block_size % minimum != 0 || maximum < block_size {
                return Err(NbdError::BlockSizeConstraints {
                    block_size,
                    minimum,
                    maximum,
                });
            }
            max_payload = max_payload.min(maximum);
        }
        if info.size == 0 || info.size % u64::from(block_size) != 0 {
            return Err(NbdError::BadSize {
                size: info.size,
                block_size,
            });
        }
        let max_request = max_payload / block_size * block_size;

        // Transmission: the reader blocks until a reply comes; sending is
        // bounded by the request timeout.
        stream.set_read_timeout(None).map_err(io)?;
        stream
            .set_write_timeout(options.request_timeout)
            .map_err(io)?;
        let reader_stream = stream.try_clone().map_err(io)?;
        let control = stream.try_clone().map_err(io)?;
        let label = if export.is_empty() {
            address.to_string()
        } else {
            format!("{address} export {export:?}")
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            writer: Mutex::new(Writer {
                stream,
                disconnected: false,
            }),
            control,
            label,
        });
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("nbd-reader".into())
                .spawn(move || reader_loop(shared, reader_stream))
                .map_err(NbdError::Thread)?
        };
        log::info!(
            "NBD connected to {}: {} bytes, flags {flags:#06x}",
            shared.label,
            info.size
        );
        Ok(NbdDevice {
            shared,
            reader: Some(reader),
            block_size,
            num_blocks: info.size / u64::from(block_size),
            flags,
            max_request,
            request_timeout: options.request_timeout,
        })
    }

    /// Size of the export in bytes.
    pub fn export_size(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }

    /// Whether the connection still takes requests: false once it broke
    /// or the server announced its shutdown, after which every request
    /// fails.
    pub fn is_connected(&self) -> bool {
        let state = lock(&self.shared.state);
        state.failed.is_none() && !state.draining
    }

    /// The largest number of bytes one NBD request carries; longer
    /// requests are split into several, sent together.
    pub fn max_request_bytes(&self) -> u32 {
        self.max_request
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Sends one request; its reply is collected with [`wait`](Self::wait).
    fn submit(
        &self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> Result<Ticket, BlockError> {
        let wake = Arc::new(Condvar::new());
        let cookie = {
            let mut state = lock(&self.shared.state);
            if let Some(errno) = state.failed {
                return Err(BlockError::Io(errno));
            }
            if state.draining {
                return Err(BlockError::Io(Errno::ESHUTDOWN as i32));
            }
            let cookie = state.next_cookie;
            state.next_cookie = cookie.wrapping_add(1);
            // Registered before sending: the reply may beat `write` back.
            state.pending.insert(
                cookie,
                Pending {
                    read_len: if command == CMD_READ { len as usize } else { 0 },
                    outcome: None,
                    abandoned: false,
                    wake: Arc::clone(&wake),
                },
            );
            cookie
        };

        let header = request_header(command, flags, cookie, offset, len);
        let sent = {
            let mut writer = lock(&self.shared.writer);
            if writer.disconnected {
                Err(None)
            } else {
                let mut bufs = [IoSlice::new(&header), IoSlice::new(data)];
                write_all_vectored(&mut writer.stream, &mut bufs).map_err(Some)
            }
        };
        match sent {
            Ok(()) => {}
            Err(None) => {
                lock(&self.shared.state).pending.remove(&cookie);
                return Err(BlockError::Io(Errno::ESHUTDOWN as i32));
            }
            Err(Some(e)) => {
                // Part of the request may be on the wire: the stream is
                // no longer in step, so the connection is over. `wait`
                // then reports the failure.
                let (errno, why) = if is_timeout(&e) {
                    (
                        Errno::ETIMEDOUT,
                        format!("sending a request timed out: {e}"),
                    )
                } else {
                    (Errno::EPIPE, format!("sending a request failed: {e}"))
                };
                self.shared.fail(errno, &why);
            }
        }
        Ok(Ticket {
            cookie,
            wake,
            deadline: self.request_timeout.map(|t| Instant::now() + t),
        })
    }

    /// Waits for the reply to `ticket`; the data of a read reply.
    fn wait(&self, ticket: Ticket) -> Result<Vec<u8>, BlockError> {
        let mut state = lock(&self.shared.state);
        loop {
            let Some(p) = state.pending.get_mut(&ticket.cookie) else {
                // Cannot happen: only this caller removes a live request.
                return Err(BlockError::Io(Errno::EIO as i32));
            };
            if p.outcome.is_some() {
                let p = state.pending.remove(&ticket.cookie);
                return p
                    .and_then(|p| p.outcome)
                    .unwrap_or(Err(BlockError::Io(Errno::EIO as i32)));
            }
            match ticket.deadline {
                None => {
                    state = ticket
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // The reader drops the reply when it comes.
                        p.abandoned = true;
                        return Err(BlockError::Io(Errno::ETIMEDOUT as i32));
                    }
                    state = ticket
                        .wake
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Byte offset and length of `blocks` blocks at `lba`, checked
    /// against the device.
    fn range(&self, lba: u64, bytes: usize) -> Result<(u64, u64), BlockError> {
        let bs = u64::from(self.block_size);
        let bytes = bytes as u64;
        if bytes % bs != 0 {
            return Err(BlockError::Io(Errno::EINVAL as i32));
        }
        match lba.checked_add(bytes / bs) {
            Some(end) if end <= self.num_blocks => Ok((lba * bs, bytes)),
            _ => Err(BlockError::OutOfRange),
        }
    }

    /// Runs one command over `len` bytes at `offset`, split into requests
    /// of at most `max_request` bytes that are all sent before the first
    /// reply is awaited. `data` is the data to write; `out` receives the
    /// data read.
    fn transfer(
        &self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u64,
        data: &[u8],
        mut out: Option<&mut [u8]>,
    ) -> Result<(), BlockError> {
        let max = u64::from(self.max_request);
        let count = len.div_ceil(max) as usize;
        let mut tickets = Vec::with_capacity(count);
        let mut result = Ok(());
        let mut done = 0u64;
        while done < len {
            let n = max.min(len - done);
            let piece = if data.is_empty() {
                &[][..]
            } else {
                &data[done as usize..(done + n) as usize]
            };
            match self.submit(command, flags, offset + done, n as u32, piece) {
                Ok(ticket) => tickets.push((done as usize, n as usize, ticket)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            done += n;
        }
        // Every ticket is collected, also after an error, so that none is
        // left behind in the table.
        for (start, n, ticket) in tickets {
            match self.wait(ticket) {
                Ok(reply) => {
                    if let Some(out) = out.as_deref_mut() {
                        out[start..start + n].copy_from_slice(&reply);
                    }
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        result
    }

    fn write_with(&self, lba: u64, buf: &[u8], flags: u16) -> Result<(), BlockError> {
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let (offset, len) = self.range(lba, buf.len())?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(CMD_WRITE, flags, offset, len, buf, None)
    }

    fn zeroing_command(&self, command: u16, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let bytes = blocks
            .checked_mul(u64::from(self.block_size))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or(BlockError::OutOfRange)?;
        let (offset, len) = self.range(lba, bytes)?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(command, 0, offset, len, &[], None)
    }
}

impl BlockDevice for NbdDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let (offset, len) = self.range(lba, buf.len())?;
        if len == 0 {
            return Ok(());
        }
        self.transfer(CMD_READ, 0, offset, len, &[], Some(buf))
    }

    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.write_with(lba, buf, 0)
    }

    fn write_fua(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.has(TFLAG_SEND_FUA) {
            self.write_with(lba, buf, CMD_FLAG_FUA)
        } else {
            self.write_with(lba, buf, 0)?;
            self.flush()
        }
    }

    fn flush(&self) -> Result<(), BlockError> {
        if !self.has(TFLAG_SEND_FLUSH) {
            return Ok(());
        }
        let ticket = self.submit(CMD_FLUSH, 0, 0, 0, &[])?;
        self.wait(ticket).map(drop)
    }

    fn write_cache(&self) -> bool {
        self.has(TFLAG_SEND_FLUSH)
    }

    fn read_only(&self) -> bool {
        self.has(TFLAG_READ_ONLY)
    }

    fn product_name(&self) -> &str {
        "NBD export"
    }

    fn can_unmap(&self) -> bool {
        self.has(TFLAG_SEND_TRIM) && !self.has(TFLAG_READ_ONLY)
    }

    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        if !self.has(TFLAG_SEND_TRIM) {
            return Err(BlockError::Unsupported);
        }
        self.zeroing_command(CMD_TRIM, lba, blocks)
    }

    fn can_write_zeroes(&self) -> bool {
        self.has(TFLAG_SEND_WRITE_ZEROES) && !self.has(TFLAG_READ_ONLY)
    }

    fn write_zeroes(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.has(TFLAG_SEND_WRITE_ZEROES) {
            return self.zeroing_command(CMD_WRITE_ZEROES, lba, blocks);
        }
        // Zero buffers of up to 1 MiB, as a plain write would.
        if self.has(TFLAG_READ_ONLY) {
            return Err(BlockError::ReadOnly);
        }
        let bs = u64::from(self.block_size);
        let per_write = ((1 << 20) / bs).min(u64::from(self.max_request) / bs);
        let zeros = vec![0u8; (per_write.min(blocks) * bs) as usize];
        let mut done = 0;
        while done < blocks {
            let n = per_write.min(blocks - done);
            self.write(lba + done, &zeros[..(n * bs) as usize])?;
            done += n;
        }
        Ok(())
    }
}

impl Drop for NbdDevice {
    fn drop(&mut self) {
        let connected = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            state.failed.is_none()
        };
        if connected {
            self.shared.send_disconnect();
        }
        // The server has everything it needs; closing now also wakes the
        // reader thread, which then ends.
        self.shared.control.shutdown();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let cases = [
            (
                "unix:/tmp/a.sock",
                NbdAddress::Unix {
                    path: "/tmp/a.sock".into(),
                },
            ),
            (
                "/tmp/b.sock",
                NbdAddress::Unix {
                    path: "/tmp/b.sock".into(),
                },
            ),
            (
                "example.org:1234",
                NbdAddress::Tcp {
                    host: "example.org".into(),
                    port: 1234,
                },
            ),
            (
                "example.org",
                NbdAddress::Tcp {
                    host: "example.org".into(),
                    port: 10809,
                },
            ),
            (
                "[::1]:99",
                NbdAddress::Tcp {
                    host: "::1".into(),
                    port: 99,
                },
            ),
            (
                "[::1]",
                NbdAddress::Tcp {
                    host: "::1".into(),
                    port: 10809,
                },
            ),
            (
                "fe80::1",
                NbdAddress::Tcp {
                    host: "fe80::1".into(),
                    port: 10809,
                },
            ),
        ];
        for (text, address) in cases {
            assert_eq!(text.parse::<NbdAddress>(), Ok(address.clone()), "{text}");
            // Display round-trips.
            assert_eq!(
                address.to_string().parse::<NbdAddress>(),
                Ok(address),
                "{text}"
            );
        }
        for bad in [
            "",
            "unix:",
            ":80",
            "host:",
            "host:port",
            "[::1",
            "[::1]x",
            "h:70000",
        ] {
            assert!(bad.parse::<NbdAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn request_header_layout() {
        let h = request_header(
            CMD_WRITE,
            CMD_FLAG_FUA,
            0x0102_0304_0506_0708,
            0x200,
            0x1000,
        );
        assert_eq!(&h[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&h[4..6], &[0, 1]);
        assert_eq!(&h[6..8], &[0, 1]);
        assert_eq!(&h[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&h[16..24], &[0, 0, 0, 0, 0, 0, 2, 0]);
        assert_eq!(&h[24..28], &[0, 0, 0x10, 0]);
    }

    #[test]
    fn reply_errors_map_to_block_errors() {
        assert_eq!(reply_error(1), BlockError::ReadOnly);
        assert_eq!(reply_error(30), BlockError::ReadOnly);
        assert_eq!(reply_error(28), BlockError::NoSpace);
        assert_eq!(reply_error(12), BlockError::Busy);
        assert_eq!(reply_error(95), BlockError::Unsupported);
        assert_eq!(reply_error(5), BlockError::Io(5));
        assert_eq!(reply_error(22), BlockError::Io(22));
        assert_eq!(reply_error(u32::MAX), BlockError::Io(5));
    }

    #[test]
    fn vectored_write_survives_short_writes() {
        // A writer that takes at most 3 bytes per call.
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(3);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Trickle(Vec::new());
        let (a, b) = ([1u8, 2, 3, 4, 5], [6u8, 7, 8, 9]);
        let mut bufs = [IoSlice::new(&a), IoSlice::new(&[]), IoSlice::new(&b)];
        write_all_vectored(&mut out, &mut bufs).unwrap();
        assert_eq!(out.0, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
