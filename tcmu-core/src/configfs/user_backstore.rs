//! TCMU backstores as configfs shows them, whoever created them: found by
//! scanning the `user_N` HBAs or from a UIO device's name, with the
//! attributes a handler serving them needs.

use std::io;
use std::path::{Path, PathBuf};

use super::alua::{self, AluaGroup};
use super::attribute::{io_err, write_attr};
use super::error::ConfigfsError;

/// An existing TCMU (`user_N/<name>`) backstore. Only a view: nothing is
/// created or removed through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBackstore {
    dir: PathBuf,
    hba: u32,
    name: String,
}

impl UserBackstore {
    /// The backstore `name` of HBA `user_<hba>` under `root` (normally
    /// [`TARGET_ROOT`](super::TARGET_ROOT)); it need not exist.
    pub fn new(root: &Path, hba: u32, name: &str) -> UserBackstore {
        UserBackstore {
            dir: root.join("core").join(format!("user_{hba}")).join(name),
            hba,
            name: name.to_string(),
        }
    }

    /// The backstore whose configfs directory is `dir`
    /// (`.../core/user_<hba>/<name>`); HBA and name come from the path.
    pub(super) fn at(dir: &Path) -> UserBackstore {
        let name = file_name(dir).unwrap_or_default().to_string();
        let hba = dir
            .parent()
            .and_then(file_name)
            .and_then(|n| n.strip_prefix("user_"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        UserBackstore {
            dir: dir.to_path_buf(),
            hba,
            name,
        }
    }

    /// The backstore behind a UIO device named
    /// `tcm-user/<hba>/<name>/<dev_config>`; `None` for another name.
    pub fn from_uio_name(root: &Path, uio_name: &str) -> Option<UserBackstore> {
        let mut parts = uio_name.splitn(4, '/');
        if parts.next()? != "tcm-user" {
            return None;
        }
        let hba = parts.next()?.parse().ok()?;
        let name = parts.next().filter(|n| !matches!(*n, "" | "." | ".."))?;
        Some(UserBackstore::new(root, hba, name))
    }

    /// Every backstore of every `user_N` HBA under `root`, enabled or not,
    /// in HBA then name order. No HBA at all is an empty list.
    pub fn scan(root: &Path) -> Result<Vec<UserBackstore>, ConfigfsError> {
        let core = root.join("core");
        let mut found = Vec::new();
        for hba_dir in read_dir_sorted(&core)? {
            let Some(hba) = file_name(&hba_dir)
                .and_then(|n| n.strip_prefix("user_"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            for dir in read_dir_sorted(&hba_dir)? {
                // Backstores are directories with an `enable` attribute;
                // an HBA also holds the files `hba_info` and `hba_mode`.
                if let Some(name) = file_name(&dir).filter(|_| dir.join("enable").exists()) {
                    found.push(UserBackstore::new(root, hba, name));
                }
            }
        }
        Ok(found)
    }

    /// The configfs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index N of the `user_N` HBA.
    pub fn hba(&self) -> u32 {
        self.hba
    }

    /// The backstore name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is enabled (its UIO device exists).
    pub fn enabled(&self) -> Result<bool, ConfigfsError> {
        Ok(self.read("enable")? == "1")
    }

    /// `attrib/<name>`, trimmed.
    pub fn attrib(&self, name: &str) -> Result<String, ConfigfsError> {
        self.read(&format!("attrib/{name}"))
    }

    /// `attrib/<name>` as a number.
    pub fn attrib_number(&self, name: &str) -> Result<i64, ConfigfsError> {
        let text = self.attrib(name)?;
        text.parse().map_err(|_| ConfigfsError::Io {
            path: self.dir.join("attrib").join(name),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a number: {text:?}"),
            ),
        })
    }

    /// `dev_config`: `<subtype>/<handler config>` as written into
    /// `control` (empty before one was written).
    pub fn dev_config(&self) -> Result<String, ConfigfsError> {
        self.attrib("dev_config")
    }

    /// The name the kernel gives its UIO device.
    pub fn uio_name(&self) -> Result<String, ConfigfsError> {
        Ok(format!(
            "tcm-user/{}/{}/{}",
            self.hba,
            self.name,
            self.dev_config()?
        ))
    }

    /// Whether the kernel waits for a handler's netlink answer to this
    /// backstore's events: its effective `nl_reply_supported` is positive
    /// (the kernel fixes it when the backstore is enabled, from the module
    /// flag SET_FEATURES sets, unless it was made negative before).
    pub fn awaits_netlink_replies(&self) -> Result<bool, ConfigfsError> {
        Ok(self.attrib_number("nl_reply_supported")? > 0)
    }

    /// The unit serial number in `wwn/vpd_unit_serial` (empty until one is
    /// written; rtslib writes it right after enabling).
    pub fn unit_serial(&self) -> Result<String, ConfigfsError> {
        let path = self.dir.join("wwn/vpd_unit_serial");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        // The attribute reads "T10 VPD Unit Serial Number: <serial>".
        let serial = text.rsplit(": ").next().unwrap_or("").trim();
        Ok(serial.to_string())
    }

    /// The backstore's ALUA target port groups (`alua/<group>/`), sorted
    /// by id, without the kernel's `default_tg_pt_gp` and without groups
    /// whose id was never set; each with its member LUNs.
    pub fn alua_groups(&self) -> Result<Vec<AluaGroup>, ConfigfsError> {
        // Member ports live in the fabrics' trees beside `core/`:
        // the directory is `<root>/core/user_<hba>/<name>`.
        let root = self
            .dir
            .ancestors()
            .nth(3)
            .ok_or_else(|| ConfigfsError::Io {
                path: self.dir.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a backstore directory below a configfs target root",
                ),
            })?;
        alua::read_groups(&self.dir, root)
    }

    /// Block new commands (the kernel answers them BUSY) and reset the
    /// ring: commands a dead handler left in flight fail with BUSY, so
    /// initiators retry them; old entries are never replayed.
    pub fn block_and_reset(&self) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("action/block_dev"), "1")?;
        write_attr(&self.dir.join("action/reset_ring"), "1")
    }

    /// Let new commands reach the ring again.
    pub fn unblock(&self) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("action/block_dev"), "0")
    }

    /// Write `attrib/<name>`.
    pub fn set_attrib(&self, name: &str, value: &str) -> Result<(), ConfigfsError> {
        write_attr(&self.dir.join("attrib").join(name), value)
    }

    fn read(&self, relative: &str) -> Result<String, ConfigfsError> {
        let path = self.dir.join(relative);
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(io_err(&path))
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

/// The subdirectories of `dir`, sorted; none when `dir` does not exist.
fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, ConfigfsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backstore as configfs shows it, in a plain directory.
    fn fake(root: &Path, hba: u32, name: &str, dev_config: &str, enabled: bool) {
        let dir = root.join(format!("core/user_{hba}/{name}"));
        std::fs::create_dir_all(dir.join("attrib")).unwrap();
        std::fs::create_dir_all(dir.join("wwn")).unwrap();
        std::fs::write(dir.join("enable"), if enabled { "1\n" } else { "0\n" }).unwrap();
        std::fs::write(dir.join("attrib/dev_config"), format!("{dev_config}\n")).unwrap();
        std::fs::write(dir.join("attrib/nl_reply_supported"), "1\n").unwrap();
        std::fs::write(
            dir.join("wwn/vpd_unit_serial"),
            "T10 VPD Unit Serial Number: abc-123\n",
        )
        .unwrap();
    }

    #[test]
    fn a_scan_finds_every_backstore_of_every_user_hba() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert!(UserBackstore::scan(root).unwrap().is_empty(), "no core dir");
        fake(root, 2, "b", "file//srv/b.img", true);
        fake(root, 0, "a", "tcmu-rs/mem", true);
        fake(root, 0, "c", "", false);
        std::fs::write(root.join("core/user_0/hba_info"), "x").unwrap();
        std::fs::create_dir_all(root.join("core/fileio_0/f/attrib")).unwrap();
        std::fs::create_dir_all(root.join("core/user_0/no-enable")).unwrap();
        let found = UserBackstore::scan(root).unwrap();
        let names: Vec<_> = found.iter().map(|b| (b.hba(), b.name())).collect();
        assert_eq!(names, [(0, "a"), (0, "c"), (2, "b")]);
        let b = &found[2];
        assert!(b.enabled().unwrap());
        assert!(!found[1].enabled().unwrap());
        assert_eq!(b.dev_config().unwrap(), "file//srv/b.img");
        assert_eq!(b.uio_name().unwrap(), "tcm-user/2/b/file//srv/b.img");
        assert!(b.awaits_netlink_replies().unwrap());
        assert_eq!(b.unit_serial().unwrap(), "abc-123");
    }

    #[test]
    fn a_uio_name_names_its_backstore() {
        let root = Path::new("/cfg");
        let b = UserBackstore::from_uio_name(root, "tcm-user/3/disk0/rbd/pool/img").unwrap();
        assert_eq!((b.hba(), b.name()), (3, "disk0"));
        assert_eq!(b.dir(), Path::new("/cfg/core/user_3/disk0"));
        for bad in [
            "uio/3/disk0/x",
            "tcm-user/x/disk0/y",
            "tcm-user/3/../y",
            "tcm-user/3",
        ] {
            assert_eq!(UserBackstore::from_uio_name(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_malformed_number_names_its_attribute() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), 0, "a", "file//x", true);
        let b = UserBackstore::new(tmp.path(), 0, "a");
        std::fs::write(b.dir().join("attrib/nl_reply_supported"), "yes\n").unwrap();
        let err = b.awaits_netlink_replies().unwrap_err().to_string();
        assert!(
            err.contains("nl_reply_supported") && err.contains("yes"),
            "{err}"
        );
        let err = b.attrib("missing").unwrap_err().to_string();
        assert!(err.contains("attrib/missing"), "{err}");
    }
}
