//! The UIO device of a TCMU backstore: find it by name, map its shared
//! area, wait for the kernel's notifications and send ours.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::MmapOptions;

use crate::mem::SharedMap;
use crate::poll::{MAX_FDS, wait_readable};

/// Where the kernel lists UIO devices.
pub const SYS_CLASS_UIO: &str = "/sys/class/uio";

/// Errors while opening a UIO device.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// No UIO device of that name appeared in time.
    #[error("no UIO device named {name:?} appeared within {waited:?}")]
    NotFound {
        /// The UIO name looked for.
        name: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// Opening, reading or mapping a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error of the system call.
        source: io::Error,
    },
    /// The map size in sysfs is not a number.
    #[error("{path}: cannot parse map size {text:?}")]
    BadSize {
        /// The sysfs file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UioError + '_ {
    move |source| UioError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `uioN` directory (under `class_dir`) whose `name` is `name`.
pub fn find_by_name(class_dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(class_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let dir = entry?.path();
        if let Ok(n) = std::fs::read_to_string(dir.join("name"))
            && n.trim_end_matches('\n') == name
        {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// Parse a sysfs number such as `0x40800000` or `4096`.
pub(crate) fn parse_sysfs_number(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The kernel published entries (the event was consumed).
    Kernel,
    /// The other descriptor with this index became readable.
    Other(usize),
    /// The timeout passed.
    Timeout,
}

/// How many descriptors besides the device [`UioDevice::wait`] watches.
pub const MAX_OTHERS: usize = MAX_FDS - 1;

/// An open, mapped TCMU UIO device.
pub struct UioDevice {
    file: File,
    map: Arc<SharedMap>,
    path: PathBuf,
}

impl UioDevice {
    /// Wait up to `timeout` for the UIO device named `name` to appear,
    /// open its `/dev` node and map exactly `maps/map0/size` bytes.
    pub fn open(name: &str, timeout: Duration) -> Result<UioDevice, UioError> {
        Self::open_in(Path::new(SYS_CLASS_UIO), Path::new("/dev"), name, timeout)
    }

    /// [`open`](Self::open) with other sysfs and /dev roots.
    pub fn open_in(
        class_dir: &Path,
        dev_dir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<UioDevice, UioError> {
        let start = Instant::now();
        let (sys_dir, dev_path) = loop {
            let found = find_by_name(class_dir, name).map_err(io_err(class_dir))?;
            if let Some(dir) = found {
                let node = dev_dir.join(dir.file_name().unwrap_or_default());
                if node.exists() {
                    break (dir, node);
                }
            }
            if start.elapsed() >= timeout {
                return Err(UioError::NotFound {
                    name: name.to_string(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let size_path = sys_dir.join("maps/map0/size");
        let text = std::fs::read_to_string(&size_path).map_err(io_err(&size_path))?;
        let size = parse_sysfs_number(&text).ok_or_else(|| UioError::BadSize {
            path: size_path.clone(),
            text: text.clone(),
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev_path)
            .map_err(io_err(&dev_path))?;
        let raw = MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(io_err(&dev_path))?;
        Ok(UioDevice {
            file,
            map: Arc::new(SharedMap::from_mmap(raw)),
            path: dev_path,
        })
    }

    /// The mapped shared area.
    pub fn map(&self) -> Arc<SharedMap> {
        self.map.clone()
    }

    /// The `/dev/uioN` path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Block until the kernel signals new entries, one of `others` (at most
    /// [`MAX_OTHERS`]) becomes
    /// readable, or `timeout` passes (`None`: no timeout). A kernel event is
    /// consumed (its 4-byte counter read) before returning, so no wakeup is
    /// lost: entries published after that read raise a new event.
    pub fn wait(&self, others: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Wake> {
        if others.len() > MAX_OTHERS {
            return Err(io::Error::other(format!(
                "at most {MAX_OTHERS} other descriptors can be waited for"
            )));
        }
        Ok(match wait_readable(self.file.as_fd(), others, timeout)? {
            Some(0) => {
                let mut count = [0u8; 4];
                (&self.file).read_exact(&mut count)?;
                Wake::Kernel
            }
            Some(i) => Wake::Other(i - 1),
            None => Wake::Timeout,
        })
    }

    /// Tell the kernel that `cmd_tail` moved (one write per batch).
    pub fn notify(&self) -> io::Result<()> {
        (&self.file).write_all(&0u32.to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_numbers() {
        assert_eq!(parse_sysfs_number("0x40800000\n"), Some(0x4080_0000));
        assert_eq!(parse_sysfs_number("4096"), Some(4096));
        assert_eq!(parse_sysfs_number("0xzz"), None);
        assert_eq!(parse_sysfs_number(""), None);
    }

    #[test]
    fn finds_a_device_by_name_and_times_out_otherwise() {
        let tmp_root = tempfile::tempdir().unwrap();
        let root = tmp_root.path().to_path_buf();
        let class = root.join("class");
        std::fs::create_dir_all(class.join("uio0")).unwrap();
        std::fs::create_dir_all(class.join("uio1")).unwrap();
        std::fs::write(class.join("uio0/name"), "other\n").unwrap();
        std::fs::write(class.join("uio1/name"), "tcm-user/0/disk/tcmu-rs/mem\n").unwrap();
        let found = find_by_name(&class, "tcm-user/0/disk/tcmu-rs/mem").unwrap();
        assert_eq!(found, Some(class.join("uio1")));
        assert_eq!(find_by_name(&class, "tcm-user/0/none").unwrap(), None);
        assert_eq!(find_by_name(&root.join("absent"), "x").unwrap(), None);
        let err = UioDevice::open_in(
            &class,
            &root.join("dev"),
            "tcm-user/0/none",
            Duration::from_millis(50),
        );
        assert!(matches!(err, Err(UioError::NotFound { .. })));
    }
}
