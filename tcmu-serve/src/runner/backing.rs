//! Opening the backing store a `dev_config` names, at the backstore's
//! geometry, and checking one before the backstore exists (D-Bus
//! `CheckConfig`, which targetcli calls before it creates a backstore).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use block_backends::{QcowDevice, QcowOptions};

use crate::backend::{BackendSpec, DeviceOptions, Opened, RbdBackend};
use crate::runner::config_string::{Backing, ConfigError, parse};

/// The geometry configfs gives the backstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// `attrib/hw_block_size`.
    pub block_size: u32,
    /// `attrib/dev_size`, bytes.
    pub dev_size: u64,
}

/// Open what `backing` names for a backstore of `geometry`; the device's
/// log lines call it `label` (the backstore's name) besides its backing.
pub fn open(backing: &Backing, geometry: Geometry, label: &str) -> Result<Opened, String> {
    if geometry.dev_size == 0 || geometry.dev_size % u64::from(geometry.block_size) != 0 {
        return Err(format!(
            "dev_size {} is not a whole, non-zero number of {}-byte blocks",
            geometry.dev_size, geometry.block_size
        ));
    }
    let options = DeviceOptions {
        block_size: geometry.block_size,
        label: Some(label.to_string()),
        ..DeviceOptions::default()
    };
    match backing {
        Backing::File(path) => {
            let exists = match regular_file_size(path)? {
                Some(len) if len != geometry.dev_size => {
                    return Err(format!(
                        "{} is {len} bytes but the backstore's dev_size is {} \
                         (the file is never resized to match: set dev_size or resize the file)",
                        path.display(),
                        geometry.dev_size
                    ));
                }
                Some(_) => true,
                None => path.exists(),
            };
            let options = DeviceOptions {
                size: Some(geometry.dev_size),
                create: !exists,
                ..options
            };
            BackendSpec::File(path.clone()).open_served(&options)
        }
        Backing::Qcow(path) => open_qcow(path, geometry),
        Backing::Rbd(rbd) => {
            let opened = BackendSpec::Rbd(rbd.clone()).open_served(&options)?;
            check_rbd_size(rbd, &opened, geometry.dev_size)?;
            Ok(opened)
        }
    }
}

/// The size of the regular file at `path`; `None` when there is none (or
/// it is a block device, which may be larger than the disk).
fn regular_file_size(path: &Path) -> Result<Option<u64>, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(feature = "rbd")]
fn check_rbd_size(rbd: &RbdBackend, opened: &Opened, dev_size: u64) -> Result<(), String> {
    let image_size = match opened {
        Opened::Rbd(device) => device.image_size(),
        Opened::Sync(device) => device.num_blocks() * u64::from(device.block_size()),
        _ => return Ok(()),
    };
    if image_size != dev_size {
        return Err(format!(
            "rbd/{}/{}: the image is {image_size} bytes but the backstore's dev_size is \
             {dev_size} (resize the image first: rbd resize)",
            rbd.pool, rbd.image
        ));
    }
    Ok(())
}

#[cfg(not(feature = "rbd"))]
fn check_rbd_size(_: &RbdBackend, _: &Opened, _: u64) -> Result<(), String> {
    Ok(())
}

/// A qcow2 image, whose virtual size must be the backstore's.
fn open_qcow(path: &Path, geometry: Geometry) -> Result<Opened, String> {
    let device =
        QcowDevice::open(path, QcowOptions::new(geometry.block_size)).map_err(|e| e.to_string())?;
    if device.len_bytes() != geometry.dev_size {
        return Err(format!(
            "{} has a virtual size of {} bytes but the backstore's dev_size is {} \
             (qemu-img resize the image, or set dev_size)",
            path.display(),
            device.len_bytes(),
            geometry.dev_size
        ));
    }
    Ok(Opened::Sync(Arc::new(device)))
}

/// Check `text` (`<subtype>/<cfgstring>`, as targetcli passes it to
/// `CheckConfig`) without creating anything: it parses, a file's directory
/// exists (the file need not), a qcow2 image exists and is one, an RBD
/// image exists in its cluster.
pub fn check(text: &str) -> Result<(), String> {
    let config = parse(text).map_err(|e| match e {
        ConfigError::UnknownSubtype(_) => e.to_string(),
        ConfigError::Invalid(why) => why,
    })?;
    match config.backing {
        Backing::File(path) => check_file(&path),
        Backing::Qcow(path) => {
            let options = QcowOptions {
                read_only: true,
                ..QcowOptions::new(512)
            };
            QcowDevice::open(&path, options)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Backing::Rbd(rbd) => {
            BackendSpec::Rbd(rbd).open(&DeviceOptions {
                block_size: 512,
                read_only: true,
                ..DeviceOptions::default()
            })?;
            Ok(())
        }
    }
}

fn check_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() || meta.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(format!(
            "{} is neither a regular file nor a block device",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match path.parent() {
            Some(dir) if dir.is_dir() => Ok(()),
            _ => Err(format!(
                "{} does not exist, and neither does its directory",
                path.display()
            )),
        },
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_emu::BlockDevice;

    fn geometry(dev_size: u64) -> Geometry {
        Geometry {
            block_size: 512,
            dev_size,
        }
    }

    fn opened_blocks(opened: Opened) -> u64 {
        match opened {
            Opened::Sync(device) => device.num_blocks(),
            _ => panic!("a file opens synchronously"),
        }
    }

    #[test]
    fn a_missing_file_is_created_at_the_backstore_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.img");
        let opened = open(&Backing::File(path.clone()), geometry(1 << 20), "test").unwrap();
        assert_eq!(opened_blocks(opened), 2048);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        // Opened again at the same size: the same file, kept.
        let opened = open(&Backing::File(path.clone()), geometry(1 << 20), "test").unwrap();
        assert_eq!(opened_blocks(opened), 2048);
    }

    #[test]
    fn a_file_of_another_size_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("small.img");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let err = open(&Backing::File(path.clone()), geometry(8192), "test")
            .err()
            .expect("size mismatch");
        assert!(err.contains("4096") && err.contains("8192"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 4096]);
        let err = open(&Backing::File(path), geometry(1000), "test")
            .err()
            .unwrap();
        assert!(err.contains("not a whole"), "{err}");
    }

    #[test]
    fn check_explains_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().display();
        assert_eq!(check(&format!("file/{dir}/new.img")), Ok(()));
        std::fs::write(tmp.path().join("there.img"), b"x").unwrap();
        assert_eq!(check(&format!("file/{dir}/there.img")), Ok(()));
        for (text, why) in [
            (
                format!("file/{dir}/no/such/dir/x.img"),
                "neither does its directory",
            ),
            (
                format!("file/{dir}"),
                "neither a regular file nor a block device",
            ),
            ("file/relative.img".to_string(), "not an absolute path"),
            ("glfs/vol@host/f".to_string(), "unknown subtype \"glfs\""),
            (format!("qcow/{dir}/missing.qcow2"), "does not exist"),
            (format!("qcow/{dir}/there.img"), "not a qcow2 image"),
            ("rbd/pool".to_string(), "needs POOL/IMAGE"),
        ] {
            let err = check(&text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_qcow2_image_is_served_at_its_virtual_size_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.qcow2");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg("4M")
            .status()
            .expect("qemu-img (package qemu-utils) must be installed");
        assert!(status.success());
        assert_eq!(check(&format!("qcow/{}", path.display())), Ok(()));
        let opened = open(&Backing::Qcow(path.clone()), geometry(4 << 20), "test").unwrap();
        assert_eq!(opened_blocks(opened), 8192);
        let err = open(&Backing::Qcow(path), geometry(8 << 20), "test")
            .err()
            .unwrap();
        assert!(err.contains("4194304") && err.contains("8388608"), "{err}");
    }
}
