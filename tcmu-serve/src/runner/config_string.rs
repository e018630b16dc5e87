//! The `dev_config` strings of `user:` backstores, as targetcli, rtslib and
//! ceph-iscsi write them: `<subtype>/<cfgstring>`.
//!
//! - `file/PATH`: a regular file or block device (`file//srv/disk.img`);
//! - `qcow/PATH`: a qcow2 image;
//! - `rbd/POOL/IMAGE[;osd_op_timeout=SECS][;conf=PATH][;id=USER]`: a Ceph
//!   RBD image.
//!
//! Options follow `;` because configfs `control` splits on `,`. The
//! generic `;tcmur_cmd_time_out=N` that tcmu-runner accepts on every
//! subtype is taken off before the subtype's own parsing.

use std::path::{Path, PathBuf};

use crate::backend::RbdBackend;

/// The subtypes this runner serves, with the help text targetcli shows.
pub const SUBTYPES: [(&str, &str); 3] = [
    (
        "file",
        "Absolute path of a regular file or block device; a missing file is created (sparse, the \
         backstore's size). Example: /srv/disk.img",
    ),
    (
        "qcow",
        "Absolute path of an existing qcow2 image (qemu-img create -f qcow2 PATH SIZE). Example: \
         /srv/disk.qcow2",
    ),
    (
        "rbd",
        "POOL/IMAGE of an existing Ceph RBD image, then options: ;osd_op_timeout=SECS \
         ;conf=PATH ;id=USER. Example: rbd/disk0;conf=/etc/ceph/ceph.conf",
    ),
];

/// What a backstore is backed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// `file/PATH`.
    File(PathBuf),
    /// `qcow/PATH`.
    Qcow(PathBuf),
    /// `rbd/POOL/IMAGE;...`.
    Rbd(RbdBackend),
}

/// A parsed `dev_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevConfig {
    /// The backing store.
    pub backing: Backing,
    /// `;tcmur_cmd_time_out=N`, if given (seconds).
    pub cmd_time_out: Option<u32>,
}

/// Why a `dev_config` cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The subtype is none of [`SUBTYPES`] (another handler's, or a typo).
    #[error("unknown subtype {0:?} (this runner serves file, qcow and rbd)")]
    UnknownSubtype(String),
    /// The subtype is known, the rest is not valid for it.
    #[error("{0}")]
    Invalid(String),
}

/// The subtype of `dev_config`: what precedes its first `/`.
pub fn subtype(dev_config: &str) -> &str {
    dev_config.split_once('/').map_or(dev_config, |(s, _)| s)
}

/// Parse `<subtype>/<cfgstring>`.
pub fn parse(dev_config: &str) -> Result<DevConfig, ConfigError> {
    let dev_config = dev_config.trim_end_matches('\n');
    let Some((subtype, rest)) = dev_config.split_once('/') else {
        return Err(ConfigError::UnknownSubtype(dev_config.to_string()));
    };
    let (rest, cmd_time_out) = take_cmd_time_out(rest)?;
    let backing = match subtype {
        "file" => Backing::File(absolute_path("file", &rest)?),
        "qcow" => Backing::Qcow(absolute_path("qcow", &rest)?),
        "rbd" => Backing::Rbd(parse_rbd(&rest)?),
        other => return Err(ConfigError::UnknownSubtype(other.to_string())),
    };
    Ok(DevConfig {
        backing,
        cmd_time_out,
    })
}

/// Take every `;tcmur_cmd_time_out=N` out of `rest`.
fn take_cmd_time_out(rest: &str) -> Result<(String, Option<u32>), ConfigError> {
    let mut kept = Vec::new();
    let mut timeout = None;
    for (i, part) in rest.split(';').enumerate() {
        match part.strip_prefix("tcmur_cmd_time_out=") {
            Some(value) if i > 0 => {
                let secs = value.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "tcmur_cmd_time_out={value}: not a number of seconds"
                    ))
                })?;
                timeout = Some(secs);
            }
            _ => kept.push(part),
        }
    }
    Ok((kept.join(";"), timeout))
}

fn absolute_path(subtype: &str, text: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(text);
    if text.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{subtype}: no path given (use {subtype}/PATH with an absolute PATH)"
        )));
    }
    if !path.is_absolute() {
        return Err(ConfigError::Invalid(format!(
            "{subtype}: {text:?} is not an absolute path"
        )));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(ConfigError::Invalid(format!(
            "{subtype}: {text:?} contains \"..\""
        )));
    }
    Ok(path.to_path_buf())
}

/// `POOL/IMAGE[;osd_op_timeout=SECS][;conf=PATH][;id=USER]`.
fn parse_rbd(text: &str) -> Result<RbdBackend, ConfigError> {
    let bad = |why: String| ConfigError::Invalid(format!("rbd/{text}: {why}"));
    let mut parts = text.split(';');
    let mut spec = RbdBackend::named(parts.next().unwrap_or_default()).map_err(bad)?;
    for option in parts {
        let Some((key, value)) = option.split_once('=') else {
            return Err(bad(format!("option {option:?} is not KEY=VALUE")));
        };
        spec.set_option(key, value, "osd_op_timeout").map_err(bad)?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_qcow_take_an_absolute_path() {
        assert_eq!(
            parse("file//srv/disk.img").unwrap(),
            DevConfig {
                backing: Backing::File("/srv/disk.img".into()),
                cmd_time_out: None
            }
        );
        assert_eq!(
            parse("qcow//srv/a.qcow2;tcmur_cmd_time_out=30\n")
                .unwrap()
                .backing,
            Backing::Qcow("/srv/a.qcow2".into())
        );
        assert_eq!(
            parse("file//srv/x;tcmur_cmd_time_out=30")
                .unwrap()
                .cmd_time_out,
            Some(30)
        );
        for (bad, why) in [
            ("file/", "no path given"),
            ("file/srv/x", "not an absolute path"),
            ("qcow//srv/../etc/x", "contains \"..\""),
            ("file//x;tcmur_cmd_time_out=soon", "not a number"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn rbd_takes_pool_image_and_options() {
        let c = parse("rbd/pool1/disk0;osd_op_timeout=30;conf=/etc/ceph/c.conf;id=gw").unwrap();
        assert_eq!(
            c.backing,
            Backing::Rbd(RbdBackend {
                pool: "pool1".into(),
                image: "disk0".into(),
                conf: Some("/etc/ceph/c.conf".into()),
                id: Some("gw".into()),
                timeout: Some(30),
            })
        );
        for (bad, why) in [
            ("rbd/disk0", "needs POOL/IMAGE"),
            ("rbd/p/", "empty"),
            ("rbd/p/i;conf=", "no value"),
            ("rbd/p/ns/i", "namespaces"),
            ("rbd/p/i@s", "snapshots"),
            ("rbd/p/i;colour=red", "unknown option \"colour\""),
            ("rbd/p/i;conf", "not KEY=VALUE"),
            ("rbd/p/i;osd_op_timeout=0", ">= 1"),
            ("rbd/p/i;id=a;id=b", "twice"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid(m) if m.contains(why)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn other_subtypes_are_unknown() {
        for (text, sub) in [
            ("glfs/vol@host/f", "glfs"),
            ("tcmu-rs/mem", "tcmu-rs"),
            ("nothing", "nothing"),
        ] {
            assert_eq!(subtype(text), sub);
            assert_eq!(
                parse(text).unwrap_err(),
                ConfigError::UnknownSubtype(sub.into())
            );
        }
    }
}
