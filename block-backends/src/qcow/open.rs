//! Opening an image: checking what the file is, then handing it to imago.

use std::fs::{FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use imago::file::File;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatDriverBuilder, PermissiveImplicitOpenGate, StorageOpenOptions};
use scsi_emu::BlockSize;

use super::device::QcowDevice;
use super::error::QcowError;
use super::options::QcowOptions;
use super::probe::{Identified, PROBE_LEN, identify};

impl QcowDevice {
    /// Opens the existing qcow2 image at `path` (a regular file or a
    /// block device holding one) as a disk as large as its virtual size.
    /// See the [module documentation](crate::qcow) for what is refused.
    ///
    /// ```
    /// use block_backends::{QcowDevice, QcowError, QcowOptions};
    ///
    /// let missing = std::env::temp_dir().join("surely-no-such-image.qcow2");
    /// assert!(matches!(
    ///     QcowDevice::open(&missing, QcowOptions::new(512)),
    ///     Err(QcowError::NotFound(_))
    /// ));
    /// ```
    pub fn open(path: impl AsRef<Path>, options: QcowOptions) -> Result<QcowDevice, QcowError> {
        let path = path.as_ref();
        let block_size = options.block_size;
        BlockSize::new(block_size).map_err(|_| QcowError::InvalidBlockSize(block_size))?;
        let open_error = |source| QcowError::Open {
            path: path.to_path_buf(),
            source,
        };

        // Look before opening: opening a FIFO would block.
        match std::fs::metadata(path) {
            Ok(meta) => check_type(path, meta.file_type())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(QcowError::NotFound(path.to_path_buf()));
            }
            Err(e) => return Err(open_error(e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!options.read_only)
            .open(path)
            .map_err(open_error)?;
        // The path may have been replaced since it was looked at.
        check_type(path, file.metadata().map_err(open_error)?.file_type())?;

        let mut head = Vec::with_capacity(PROBE_LEN);
        (&file)
            .take(PROBE_LEN as u64)
            .read_to_end(&mut head)
            .map_err(open_error)?;
        let (version, size) = match identify(&head) {
            Identified::Qcow2 { version, size } => (version, size),
            Identified::Other(what) => {
                return Err(QcowError::NotQcow2 {
                    path: path.to_path_buf(),
                    what,
                });
            }
        };
        // Checked before imago opens the image: opening it writable may
        // already update its header.
        if size == 0 || size % u64::from(block_size) != 0 {
            return Err(QcowError::UnusableSize {
                path: path.to_path_buf(),
                size,
                block_size,
            });
        }

        let image_error = |source| QcowError::Image {
            path: path.to_path_buf(),
            source,
        };
        // The file already open (no second lookup of the path), and its
        // name, against which relative backing file names resolve.
        let storage_options = StorageOpenOptions::new()
            .filename(path)
            .write(!options.read_only);
        let storage = File::from_open_file(file, storage_options).map_err(image_error)?;
        // The backing file and external data file named in the header are
        // opened read-only and read-write respectively, as QEMU does.
        let qcow2 = Qcow2::<File>::builder(storage)
            .write(!options.read_only)
            .open(PermissiveImplicitOpenGate::default())
            .map_err(image_error)?;
        let backing_file = qcow2.implicit_backing_file().cloned();
        let image = FormatAccess::new(qcow2);

        // The header cannot have changed in between; imago's word counts.
        let size = image.size();
        if size % u64::from(block_size) != 0 {
            return Err(QcowError::UnusableSize {
                path: path.to_path_buf(),
                size,
                block_size,
            });
        }
        if let Some(backing) = &backing_file {
            log::info!("{}: backing file {backing}", path.display());
        }
        Ok(QcowDevice {
            image: RwLock::new(image),
            path: path.to_path_buf(),
            block_size,
            num_blocks: AtomicU64::new(size / u64::from(block_size)),
            read_only: options.read_only,
            version,
            backing_file,
        })
    }
}

/// Refuses anything but a regular file or a block device.
fn check_type(path: &Path, file_type: FileType) -> Result<(), QcowError> {
    let kind = if file_type.is_file() || file_type.is_block_device() {
        return Ok(());
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(QcowError::UnsupportedType {
        path: path.to_path_buf(),
        kind,
    })
}
