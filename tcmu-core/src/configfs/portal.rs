//! iSCSI portals: `A.B.C.D[:PORT]` or `[IPV6][:PORT]`, and their directory
//! names in configfs.

use std::net::SocketAddr;

/// The iSCSI port initiators connect to unless told otherwise.
pub const ISCSI_DEFAULT_PORT: u16 = 3260;

/// Parse a portal: `A.B.C.D[:PORT]` or `[IPV6][:PORT]` (default port 3260).
pub fn parse_portal(text: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid portal {text:?}: {why} (want A.B.C.D:PORT or [IPv6]:PORT)"
        ))
    };
    let addr = if let Ok(addr) = text.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
        SocketAddr::new(ip.into(), ISCSI_DEFAULT_PORT)
    } else if let Some(ip) = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
    {
        SocketAddr::new(ip.into(), ISCSI_DEFAULT_PORT)
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return bad("put an IPv6 address in brackets");
    } else {
        return bad("not an IP address and port");
    };
    match check_portal(&addr) {
        Ok(()) => Ok(addr),
        Err(why) => bad(&why),
    }
}

pub(super) fn check_portal(addr: &SocketAddr) -> Result<(), String> {
    if addr.port() == 0 {
        return Err("port 0".into());
    }
    if let SocketAddr::V6(v6) = addr
        && v6.scope_id() != 0
    {
        return Err("a scope id is not supported".into());
    }
    Ok(())
}

/// The name of a portal's directory under `np/`: `A.B.C.D:PORT` or
/// `[IPV6]:PORT`.
pub(crate) fn portal_dir_name(addr: &SocketAddr) -> String {
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_are_parsed() {
        let p = |s: &str| parse_portal(s).map(|a| portal_dir_name(&a));
        assert_eq!(p("127.0.0.1:3260").unwrap(), "127.0.0.1:3260");
        assert_eq!(p("10.0.0.7").unwrap(), "10.0.0.7:3260");
        assert_eq!(p("0.0.0.0:3261").unwrap(), "0.0.0.0:3261");
        assert_eq!(p("[::1]:3260").unwrap(), "[::1]:3260");
        assert_eq!(p("[fd00::5]").unwrap(), "[fd00::5]:3260");
        for (bad, why) in [
            ("", "not an IP"),
            ("localhost:3260", "not an IP"),
            ("127.0.0.1:", "not an IP"),
            ("127.0.0.1:99999", "not an IP"),
            ("127.0.0.1:0", "port 0"),
            ("256.0.0.1:3260", "not an IP"),
            ("::1", "brackets"),
            ("[::1", "not an IP"),
            ("[fe80::1%2]:3260", "scope id"),
        ] {
            let err = parse_portal(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("[IPv6]:PORT") && !err.contains('\n'), "{err}");
        }
    }
}
