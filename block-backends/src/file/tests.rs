//! Unit tests of the file device: real files in temporary directories.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use nix::libc;
use scsi_emu::{BlockDevice, BlockError, Extent, ExtentStatus, WriteFlags};

use crate::test_support::pattern;

use super::aligned::*;
use super::device::*;
use super::error::*;
use super::options::*;
use std::sync::Arc;

/// A path in the temporary directory, unique to this test run, removed
/// on drop.
pub(super) struct TempPath(pub(super) PathBuf, #[allow(dead_code)] tempfile::TempDir); // the directory goes on drop

impl TempPath {
    pub(super) fn new(name: &str) -> TempPath {
        let dir = tempfile::tempdir().unwrap();
        TempPath(dir.path().join(name), dir)
    }

    /// A new file holding `data`.
    fn with_data(name: &str, data: &[u8]) -> TempPath {
        let path = TempPath::new(name);
        std::fs::write(&path.0, data).unwrap();
        path
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub(super) fn create(path: &TempPath, block_size: u32, size: u64) -> FileDevice {
    let options = FileOptions {
        size: Some(size),
        create: true,
        ..FileOptions::new(block_size)
    };
    FileDevice::open(&path.0, options).unwrap()
}

fn read_vec(dev: &FileDevice, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = vec![0xee; blocks * dev.block_size() as usize];
    dev.read(lba, &mut buf).unwrap();
    buf
}

fn open_err(path: &Path, options: FileOptions) -> FileDeviceError {
    FileDevice::open(path, options).unwrap_err()
}

#[test]
fn round_trip_lands_at_the_block_offsets() {
    let path = TempPath::new("round-trip");
    let dev = create(&path, 512, 1 << 20);
    assert_eq!((dev.block_size(), dev.num_blocks()), (512, 2048));
    assert_eq!(dev.kind(), FileKind::Regular);
    assert_eq!(dev.len_bytes(), 1 << 20);
    assert_eq!(dev.path(), path.0.as_path());

    let a = pattern(3 * 512, 1);
    let b = pattern(512, 2);
    dev.write(5, &a).unwrap();
    dev.write(2047, &b).unwrap();
    assert_eq!(read_vec(&dev, 5, 3), a);
    assert_eq!(read_vec(&dev, 2047, 1), b);
    assert_eq!(read_vec(&dev, 4, 1), vec![0; 512]);

    let file = std::fs::read(&path.0).unwrap();
    assert_eq!(file.len(), 1 << 20);
    assert_eq!(file[5 * 512..8 * 512], a);
    assert_eq!(file[2047 * 512..], b);
    assert!(file[..5 * 512].iter().all(|&x| x == 0));
}

#[test]
fn vectored_io_lands_where_sequential_io_would() {
    let path = TempPath::new("vectored");
    let dev = create(&path, 512, 1 << 20);
    let data = pattern(512 * 11, 9);
    // Three buffers of 2, 8 and 1 blocks, written with one call.
    let parts: [&[u8]; 3] = [&data[..1024], &data[1024..5120], &data[5120..]];
    dev.write_vectored(40, &parts, WriteFlags::NONE).unwrap();
    assert_eq!(read_vec(&dev, 40, 11), data);
    // Read back into differently cut buffers with one call.
    let (mut a, mut b) = (vec![0u8; 512 * 5], vec![0u8; 512 * 6]);
    dev.read_vectored(40, &mut [&mut a, &mut b]).unwrap();
    assert_eq!([a, b].concat(), data);
    // FUA goes through the synchronous path and lands the same way.
    let again = pattern(512 * 3, 77);
    dev.write_vectored(1, &[&again[..512], &again[512..]], WriteFlags::FUA)
        .unwrap();
    assert_eq!(read_vec(&dev, 1, 3), again);
    // Past the end: refused before any I/O.
    let mut tail = vec![0u8; 1024];
    assert_eq!(
        dev.read_vectored(2047, &mut [&mut tail]),
        Err(BlockError::OutOfRange)
    );
}

#[test]
fn vectored_io_with_more_buffers_than_fit_on_the_stack() {
    let path = TempPath::new("vectored-many");
    let dev = create(&path, 512, 1 << 20);
    for count in [INLINE_SLICES, INLINE_SLICES + 1, 3 * INLINE_SLICES] {
        let data = pattern(512 * count, count as u8);
        let parts: Vec<&[u8]> = data.chunks(512).collect();
        dev.write_vectored(100, &parts, WriteFlags::NONE).unwrap();
        assert_eq!(read_vec(&dev, 100, count), data, "{count} buffers");
        let mut back = vec![0u8; data.len()];
        let mut pieces: Vec<&mut [u8]> = back.chunks_mut(512).collect();
        dev.read_vectored(100, &mut pieces).unwrap();
        assert_eq!(back, data, "{count} buffers read back");
    }
}

#[test]
fn buffered_writes_from_many_threads_all_land() {
    let path = TempPath::new("parallel-writes");
    let dev = Arc::new(create(&path, 512, 1 << 20));
    assert!(
        dev.write_lock.is_some(),
        "a buffered regular file serializes writes"
    );
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let dev = dev.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let lba = t * 256 + i * 4;
                    let data = pattern(2048, (t * 50 + i) as u8);
                    dev.write_vectored(lba, &[&data[..1024], &data[1024..]], WriteFlags::NONE)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4u64 {
        for i in 0..50 {
            let want = pattern(2048, (t * 50 + i) as u8);
            assert_eq!(read_vec(&dev, t * 256 + i * 4, 4), want);
        }
    }
}

#[test]
fn resize_truncates_or_extends_the_file() {
    let path = TempPath::new("resize");
    let dev = create(&path, 512, 8 * 512);
    dev.write(6, &pattern(1024, 3)).unwrap();
    dev.resize(16).unwrap();
    assert_eq!((dev.num_blocks(), dev.len_bytes()), (16, 16 * 512));
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 16 * 512);
    assert_eq!(read_vec(&dev, 6, 2), pattern(1024, 3));
    assert_eq!(read_vec(&dev, 8, 8), vec![0; 8 * 512]);
    dev.write(15, &pattern(512, 9)).unwrap();
    // Shrinking cuts the file; what was beyond the end reads as zeros
    // after growing again.
    dev.resize(7).unwrap();
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 7 * 512);
    assert_eq!(dev.read(7, &mut [0; 512]), Err(BlockError::OutOfRange));
    dev.resize(16).unwrap();
    assert_eq!(read_vec(&dev, 6, 1), pattern(512, 3));
    assert_eq!(read_vec(&dev, 7, 9), vec![0; 9 * 512]);
    assert_eq!(dev.resize(0), Err(BlockError::OutOfRange));

    let read_only = FileDevice::open(
        &path.0,
        FileOptions {
            read_only: true,
            ..FileOptions::new(512)
        },
    )
    .unwrap();
    assert_eq!(read_only.resize(32), Err(BlockError::ReadOnly));
    assert_eq!(read_only.num_blocks(), 16);
}

#[test]
fn creation_is_sparse_and_allocation_follows_writes() {
    let path = TempPath::new("sparse");
    let dev = create(&path, 4096, 64 << 20);
    let meta = std::fs::metadata(&path.0).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    let before = dev.allocated_bytes().unwrap();
    dev.write(100, &pattern(1 << 20, 3)).unwrap();
    dev.flush().unwrap();
    assert!(dev.allocated_bytes().unwrap() >= before + (1 << 20));
}

#[test]
fn existing_file_keeps_its_data_and_size() {
    let data = pattern(8192, 4);
    let path = TempPath::with_data("existing", &data);
    // No size: the file's.
    let dev = FileDevice::open(&path.0, FileOptions::new(1024)).unwrap();
    assert_eq!(dev.num_blocks(), 8);
    assert_eq!(read_vec(&dev, 0, 8), data);
    drop(dev);
    // The same size with create: opened as it is, not recreated.
    let dev = create(&path, 512, 8192);
    assert_eq!(read_vec(&dev, 0, 16), data);
}

#[test]
fn size_mismatch_names_both_sizes_and_changes_nothing() {
    let path = TempPath::with_data("mismatch", &[7; 4096]);
    for requested in [8192, 2048] {
        for create in [false, true] {
            let options = FileOptions {
                size: Some(requested),
                create,
                ..FileOptions::new(512)
            };
            let err = open_err(&path.0, options);
            assert!(
                matches!(err, FileDeviceError::SizeMismatch { actual: 4096, requested: r, .. } if r == requested),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("4096") && msg.contains(&requested.to_string()),
                "{msg}"
            );
        }
    }
    assert_eq!(std::fs::read(&path.0).unwrap(), vec![7; 4096]);
}

#[test]
fn missing_file_needs_create_and_a_size() {
    let path = TempPath::new("missing");
    let err = open_err(&path.0, FileOptions::new(512));
    assert!(matches!(err, FileDeviceError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"));
    let err = open_err(
        &path.0,
        FileOptions {
            create: true,
            ..FileOptions::new(512)
        },
    );
    assert!(
        matches!(err, FileDeviceError::CreateNeedsSize(_)),
        "{err:?}"
    );
    assert!(!path.0.exists(), "nothing created");
}

#[test]
fn creating_in_a_missing_directory_fails_cleanly() {
    let dir = TempPath::new("no-such-dir");
    let err = open_err(
        &dir.0.join("disk.img"),
        FileOptions {
            size: Some(4096),
            create: true,
            ..FileOptions::new(512)
        },
    );
    assert!(matches!(err, FileDeviceError::Create { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot create"));
}

#[test]
fn unusable_sizes_are_refused() {
    let empty = TempPath::with_data("empty", &[]);
    let err = open_err(&empty.0, FileOptions::new(512));
    assert!(
        matches!(err, FileDeviceError::UnusableSize { size: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("is empty"));

    let odd = TempPath::with_data("odd", &[1; 1536]);
    let err = open_err(&odd.0, FileOptions::new(1024));
    assert!(
        err.to_string()
            .contains("not a multiple of the block size 1024"),
        "{err}"
    );
    assert!(FileDevice::open(&odd.0, FileOptions::new(512)).is_ok());

    let fresh = TempPath::new("bad-request");
    for size in [0, 1000, u64::MAX - 511] {
        let options = FileOptions {
            size: Some(size),
            create: true,
            ..FileOptions::new(512)
        };
        let err = open_err(&fresh.0, options);
        assert!(
            matches!(err, FileDeviceError::InvalidSize { .. }),
            "{size}: {err:?}"
        );
    }
    assert!(!fresh.0.exists());

    let err = open_err(&odd.0, FileOptions::new(768));
    assert!(
        matches!(err, FileDeviceError::InvalidBlockSize(768)),
        "{err:?}"
    );
}

#[test]
fn only_regular_files_and_block_devices_are_served() {
    let dir = TempPath::new("dir");
    std::fs::create_dir(&dir.0).unwrap();
    let err = open_err(&dir.0, FileOptions::new(512));
    assert!(
        matches!(
            err,
            FileDeviceError::UnsupportedType {
                kind: "directory",
                ..
            }
        ),
        "{err:?}"
    );
    let err = open_err(Path::new("/dev/null"), FileOptions::new(512));
    assert!(err.to_string().contains("character device"), "{err}");
}

#[test]
fn read_only_refuses_every_change() {
    let data = pattern(4096, 5);
    let path = TempPath::with_data("ro", &data);
    let options = FileOptions {
        read_only: true,
        ..FileOptions::new(512)
    };
    let dev = FileDevice::open(&path.0, options).unwrap();
    assert!(dev.capabilities().read_only);
    assert!(!dev.capabilities().unmap && !dev.capabilities().write_zeroes);
    assert_eq!(dev.write(0, &[0; 512]), Err(BlockError::ReadOnly));
    assert_eq!(
        dev.write_vectored(0, &[&[0; 512]], WriteFlags::FUA),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(dev.unmap(Extent::new(0, 1)), Err(BlockError::ReadOnly));
    assert_eq!(
        dev.write_zeroes(Extent::new(0, 1)),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(dev.flush(), Ok(()));
    assert_eq!(read_vec(&dev, 0, 8), data);
    assert_eq!(std::fs::read(&path.0).unwrap(), data);
}

#[test]
fn out_of_range_requests_are_rejected() {
    let path = TempPath::new("range");
    let dev = create(&path, 512, 100 * 512);
    for (lba, len) in [(100, 512), (99, 1024), (u64::MAX, 512), (0, 511)] {
        assert_eq!(
            dev.read(lba, &mut vec![0; len]),
            Err(BlockError::OutOfRange)
        );
        assert_eq!(dev.write(lba, &vec![1; len]), Err(BlockError::OutOfRange));
        assert_eq!(
            dev.write_vectored(lba, &[&vec![1; len]], WriteFlags::FUA),
            Err(BlockError::OutOfRange)
        );
    }
    for (lba, blocks) in [(100, 1), (50, 51), (u64::MAX, 2)] {
        assert_eq!(
            dev.unmap(Extent::new(lba, blocks)),
            Err(BlockError::OutOfRange)
        );
        assert_eq!(
            dev.write_zeroes(Extent::new(lba, blocks)),
            Err(BlockError::OutOfRange)
        );
    }
    // Nothing grew the file.
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 100 * 512);
    assert_eq!(dev.unmap(Extent::new(100, 0)), Ok(()));
    assert_eq!(dev.write_zeroes(Extent::new(100, 0)), Ok(()));
}

#[test]
fn unmap_punches_holes_that_read_as_zeros() {
    let path = TempPath::new("punch");
    let dev = create(&path, 4096, 8 << 20);
    assert!(dev.capabilities().unmap && dev.capabilities().unmap_reads_zeroes);
    let data = pattern(8 << 20, 6);
    dev.write(0, &data).unwrap();
    dev.flush().unwrap();
    let full = dev.allocated_bytes().unwrap();
    assert!(full >= 8 << 20, "allocated {full}");

    // 4 MiB from 1 MiB on.
    dev.unmap(Extent::new(256, 1024)).unwrap();
    let after = dev.allocated_bytes().unwrap();
    assert!(after <= full - (4 << 20), "allocated {full} -> {after}");
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 8 << 20);
    let got = read_vec(&dev, 0, 2048);
    assert_eq!(got[..1 << 20], data[..1 << 20]);
    assert!(got[1 << 20..5 << 20].iter().all(|&b| b == 0));
    assert_eq!(got[5 << 20..], data[5 << 20..]);
}

#[test]
fn write_zeroes_zeroes_exactly_the_range() {
    let path = TempPath::new("zero");
    let dev = create(&path, 512, 1 << 20);
    assert!(dev.capabilities().write_zeroes);
    let data = pattern(1 << 20, 7);
    dev.write(0, &data).unwrap();
    // An odd range that is not aligned to file system blocks.
    dev.write_zeroes(Extent::new(3, 1001)).unwrap();
    let mut want = data.clone();
    want[3 * 512..1004 * 512].fill(0);
    assert_eq!(read_vec(&dev, 0, 2048), want);
    assert_eq!(std::fs::read(&path.0).unwrap(), want);
}

#[test]
fn zeroing_falls_back_to_writing_zeros() {
    let path = TempPath::new("fallback");
    let dev = create(&path, 512, 3 << 20);
    dev.write(0, &vec![9; 3 << 20]).unwrap();
    // As if the file system had refused both fallocate modes.
    dev.zero_range.store(false, Ordering::Relaxed);
    dev.punch_hole.store(false, Ordering::Relaxed);
    // Longer than one zero buffer.
    dev.write_zeroes(Extent::new(1, 2500)).unwrap();
    dev.unmap(Extent::new(4000, 100)).unwrap();
    let got = read_vec(&dev, 0, 6144);
    assert_eq!(got[..512], [9; 512]);
    assert!(got[512..2501 * 512].iter().all(|&b| b == 0));
    assert!(got[2501 * 512..4000 * 512].iter().all(|&b| b == 9));
    assert!(got[4000 * 512..4100 * 512].iter().all(|&b| b == 0));
    assert!(got[4100 * 512..].iter().all(|&b| b == 9));
}

#[test]
fn truncated_file_gives_errors_not_hangs() {
    let path = TempPath::new("truncated");
    let dev = create(&path, 512, 64 * 512);
    dev.write(0, &pattern(64 * 512, 8)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path.0)
        .unwrap()
        .set_len(10 * 512)
        .unwrap();
    assert_eq!(dev.read(20, &mut [0; 512]), Err(BlockError::Medium));
    // Straddling the new end: also an error, not a partial read.
    assert_eq!(dev.read(8, &mut [0; 4 * 512]), Err(BlockError::Medium));
    assert_eq!(read_vec(&dev, 0, 10), pattern(64 * 512, 8)[..10 * 512]);
    // Writing there grows the file again; the gap reads as zeros.
    dev.write(30, &[3; 512]).unwrap();
    assert_eq!(read_vec(&dev, 30, 1), vec![3; 512]);
    assert_eq!(read_vec(&dev, 20, 1), vec![0; 512]);
}

#[test]
fn removed_file_stays_usable_while_open() {
    let path = TempPath::new("removed");
    let dev = create(&path, 512, 16 * 512);
    std::fs::remove_file(&path.0).unwrap();
    dev.write(3, &[4; 512]).unwrap();
    dev.write_vectored(4, &[&[5; 512]], WriteFlags::FUA)
        .unwrap();
    dev.flush().unwrap();
    assert_eq!(read_vec(&dev, 3, 2)[..512], [4; 512]);
    assert_eq!(read_vec(&dev, 4, 1), vec![5; 512]);
}

#[test]
fn fua_writes_use_a_dsync_descriptor_on_the_same_file() {
    let path = TempPath::new("fua");
    let dev = create(&path, 512, 64 * 512);
    assert!(dev.capabilities().write_cache);
    let dsync = dev.dsync.as_ref().expect("an O_DSYNC descriptor");
    let flags = nix::fcntl::fcntl(dsync.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(flags & libc::O_DSYNC, 0, "flags {flags:#x}");
    dev.write_vectored(9, &[&pattern(2048, 9)], WriteFlags::FUA)
        .unwrap();
    assert_eq!(read_vec(&dev, 9, 4), pattern(2048, 9));
    assert_eq!(
        std::fs::read(&path.0).unwrap()[9 * 512..13 * 512],
        pattern(2048, 9)
    );
}

#[test]
fn direct_io_with_aligned_and_unaligned_buffers() {
    let path = TempPath::new("direct");
    let options = FileOptions {
        size: Some(4 << 20),
        create: true,
        direct: true,
        ..FileOptions::new(4096)
    };
    let dev = FileDevice::open(&path.0, options).unwrap();
    assert!(dev.is_direct());
    let flags = nix::fcntl::fcntl(dev.file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(flags & libc::O_DIRECT, 0);

    // Longer than one bounce buffer, starting one byte into a vector:
    // never aligned for O_DIRECT.
    let len = MAX_BUFFER + 2 * 4096;
    let data = pattern(len, 10);
    let mut unaligned = vec![0u8; len + 1];
    unaligned[1..].copy_from_slice(&data);
    assert!(!is_aligned(&unaligned[1..]));
    dev.write(3, &unaligned[1..]).unwrap();

    let mut aligned = AlignedBuf::zeroed(len);
    dev.read(3, aligned.as_mut_slice()).unwrap();
    assert_eq!(aligned.as_slice(), &data[..]);

    let mut back = vec![0u8; len + 1];
    dev.read(3, &mut back[1..]).unwrap();
    assert_eq!(back[1..], data);

    dev.write_vectored(900, &[&unaligned[1..4097]], WriteFlags::FUA)
        .unwrap();
    dev.write_zeroes(Extent::new(4, 1)).unwrap();
    dev.flush().unwrap();
    let file = std::fs::read(&path.0).unwrap();
    assert_eq!(file[3 * 4096..4 * 4096], data[..4096]);
    assert!(file[4 * 4096..5 * 4096].iter().all(|&b| b == 0));
    assert_eq!(file[5 * 4096..3 * 4096 + len], data[2 * 4096..]);
    assert_eq!(file[900 * 4096..901 * 4096], data[..4096]);
}

#[test]
fn lba_status_reports_holes_and_data() {
    let path = TempPath::new("status");
    let dev = create(&path, 4096, 16 << 20); // 4096 blocks
    assert_eq!(
        dev.lba_status(0),
        Ok(ExtentStatus::deallocated(Extent::new(0, 4096)))
    );
    assert_eq!(
        dev.lba_status(4095),
        Ok(ExtentStatus::deallocated(Extent::new(4095, 1)))
    );
    assert_eq!(dev.lba_status(4096), Err(BlockError::OutOfRange));

    // 1 MiB of data from block 1024.
    dev.write(1024, &pattern(1 << 20, 11)).unwrap();
    dev.flush().unwrap();
    assert_eq!(
        dev.lba_status(0),
        Ok(ExtentStatus::deallocated(Extent::new(0, 1024)))
    );
    assert_eq!(
        dev.lba_status(1000),
        Ok(ExtentStatus::deallocated(Extent::new(1000, 24)))
    );
    assert_eq!(
        dev.lba_status(1024),
        Ok(ExtentStatus::mapped(Extent::new(1024, 256)))
    );
    assert_eq!(
        dev.lba_status(1100),
        Ok(ExtentStatus::mapped(Extent::new(1100, 180)))
    );
    assert_eq!(
        dev.lba_status(1280),
        Ok(ExtentStatus::deallocated(Extent::new(1280, 4096 - 1280)))
    );

    // A punched hole in the middle splits the data.
    dev.unmap(Extent::new(1100, 100)).unwrap();
    assert_eq!(
        dev.lba_status(1024),
        Ok(ExtentStatus::mapped(Extent::new(1024, 76)))
    );
    assert_eq!(
        dev.lba_status(1100),
        Ok(ExtentStatus::deallocated(Extent::new(1100, 100)))
    );
    assert_eq!(
        dev.lba_status(1200),
        Ok(ExtentStatus::mapped(Extent::new(1200, 80)))
    );

    // Beyond the end of a truncated file: deallocated.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path.0)
        .unwrap()
        .set_len(2048 * 4096)
        .unwrap();
    assert_eq!(
        dev.lba_status(3000),
        Ok(ExtentStatus::deallocated(Extent::new(3000, 1096)))
    );
}

#[test]
fn aligned_buffers_are_aligned() {
    for len in [0, 1, 512, 4096, 12345] {
        let mut buf = AlignedBuf::zeroed(len);
        assert!(is_aligned(buf.as_slice()));
        assert_eq!(buf.as_mut_slice().len(), len);
        assert!(buf.as_slice().iter().all(|&b| b == 0));
    }
}

#[test]
fn concurrent_writers_on_disjoint_ranges() {
    let path = TempPath::new("threads");
    let dev = create(&path, 512, 8 * 256 * 512);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let dev = &dev;
            s.spawn(move || {
                for round in 0..20u8 {
                    let data = pattern(256 * 512, (t as u8) << 4 | round);
                    dev.write(t * 256, &data).unwrap();
                    assert_eq!(read_vec(dev, t * 256, 256), data);
                }
            });
        }
    });
    for t in 0..8u64 {
        assert_eq!(
            read_vec(&dev, t * 256, 256),
            pattern(256 * 512, (t as u8) << 4 | 19)
        );
    }
}

#[test]
fn error_messages_name_the_file() {
    let path = TempPath::new("named");
    let err = open_err(&path.0, FileOptions::new(512));
    assert!(err.to_string().contains(&path.0.display().to_string()));
    assert!(std::error::Error::source(&err).is_none());
    let err = FileDeviceError::Open {
        path: path.0.clone(),
        source: io::Error::from_raw_os_error(libc::EACCES),
    };
    assert!(err.to_string().starts_with("cannot open "));
    assert!(std::error::Error::source(&err).is_some());
}
