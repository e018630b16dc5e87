//! Where an NBD server listens: TCP or a Unix socket.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::protocol::NBD_DEFAULT_PORT;

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid NBD address {0:?}: expected unix:PATH, HOST:PORT or HOST")]
pub struct NbdAddressParseError(String);

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
