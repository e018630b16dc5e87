//! `--export` and the iSCSI authentication flags: how a device is made
//! visible.

use std::net::SocketAddr;

use tcmu_core::configfs;

/// The portal of `--export iscsi` without `@ADDR:PORT`: loopback only.
const DEFAULT_ISCSI_PORTAL: &str = "127.0.0.1:3260";

/// `--export` as given: `loop`, `none` or `iscsi[:IQN][@ADDR:PORT]`
/// (IQN `None`: derived from the backstore name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportSpec {
    Loop,
    None,
    Iscsi {
        iqn: Option<String>,
        portal: SocketAddr,
    },
}

pub fn parse_export(text: &str) -> Result<ExportSpec, String> {
    let usage = "use loop, none or iscsi[:IQN][@ADDR:PORT]";
    match text {
        "loop" => return Ok(ExportSpec::Loop),
        "none" => return Ok(ExportSpec::None),
        _ => {}
    }
    let Some(rest) = text
        .strip_prefix("iscsi")
        .filter(|r| r.is_empty() || r.starts_with([':', '@']))
    else {
        return Err(format!("invalid --export {text:?}: {usage}"));
    };
    // An IQN never holds '@'; an address never comes before it.
    let (iqn, portal) = match rest.split_once('@') {
        Some((iqn, portal)) => (iqn, Some(portal)),
        None => (rest, None),
    };
    let iqn = match iqn.strip_prefix(':') {
        Some(iqn) => {
            configfs::check_iqn(iqn).map_err(|e| format!("--export {text:?}: {e}"))?;
            Some(iqn.to_string())
        }
        None => None,
    };
    let portal = configfs::parse_portal(portal.unwrap_or(DEFAULT_ISCSI_PORTAL))
        .map_err(|e| format!("--export {text:?}: {e}"))?;
    Ok(ExportSpec::Iscsi { iqn, portal })
}

/// A CHAP secret from a file: its first line, without the line end.
pub fn read_chap_password(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --chap-password-file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    if !text[line.len()..].trim().is_empty() {
        return Err(format!(
            "--chap-password-file {}: want the password alone on one line",
            path.display()
        ));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            log::warn!(
                "{} is readable by other users: make it mode 0600",
                path.display()
            );
        }
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_specs_are_parsed() {
        let local: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        assert_eq!(parse_export("loop"), Ok(ExportSpec::Loop));
        assert_eq!(parse_export("none"), Ok(ExportSpec::None));
        assert_eq!(
            parse_export("iscsi"),
            Ok(ExportSpec::Iscsi {
                iqn: None,
                portal: local
            })
        );
        assert_eq!(
            parse_export("iscsi:iqn.2003-01.org.example:disk"),
            Ok(ExportSpec::Iscsi {
                iqn: Some("iqn.2003-01.org.example:disk".into()),
                portal: local
            })
        );
        assert_eq!(
            parse_export("iscsi@10.1.2.3:3261"),
            Ok(ExportSpec::Iscsi {
                iqn: None,
                portal: "10.1.2.3:3261".parse().unwrap()
            })
        );
        assert_eq!(
            parse_export("iscsi:iqn.2003-01.org.example@[::1]:860"),
            Ok(ExportSpec::Iscsi {
                iqn: Some("iqn.2003-01.org.example".into()),
                portal: "[::1]:860".parse().unwrap()
            })
        );
        for (bad, want) in [
            ("iscsi:", "invalid IQN"),
            ("iscsi:foo", "invalid IQN"),
            ("iscsi:iqn.2003-1.org.x", "invalid IQN"),
            ("iscsi:iqn.2003-01.org.x:Upper", "invalid IQN"),
            ("iscsi@", "invalid portal"),
            ("iscsi@localhost:3260", "invalid portal"),
            ("iscsi@::1:3260", "invalid portal"),
            ("iscsi@1.2.3.4:0", "port 0"),
            ("iscsi:iqn.2003-01.org.x@1.2.3.4:70000", "invalid portal"),
            ("iscsix", "invalid --export"),
            ("tcp", "invalid --export"),
            ("", "invalid --export"),
        ] {
            let err = parse_export(bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: one line, got {err}");
        }
    }
}
