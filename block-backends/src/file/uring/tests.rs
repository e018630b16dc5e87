//! Tests of the io_uring file device: real files, futures driven by a
//! small executor of their own, results compared with the file and with
//! the synchronous device.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use scsi_emu::{AsyncBlockDevice, BlockDevice, BlockError, Extent, WriteFlags};

use crate::test_support::pattern;

use super::super::device::{FileDevice, MAX_BUFFER};
use super::super::error::FileDeviceError;
use super::super::options::FileOptions;
use super::super::tests::{TempPath, create};
use super::device::UringFileDevice;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn this_thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// Poll `future` on this thread, sleeping until it is woken.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = this_thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// Poll all `futures` together on this thread; their outputs in order.
fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    let waker = this_thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    while outputs.iter().any(Option::is_none) {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = future
                && let Poll::Ready(value) = f.as_mut().poll(&mut cx)
            {
                *output = Some(value);
                *future = None;
            }
        }
        if outputs.iter().any(Option::is_none) {
            std::thread::park();
        }
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

fn uring(path: &TempPath, block_size: u32, size: u64) -> UringFileDevice {
    UringFileDevice::new(create(path, block_size, size)).unwrap()
}

fn read_vec(dev: &UringFileDevice, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = vec![0xee; blocks * AsyncBlockDevice::block_size(dev) as usize];
    block_on(dev.read(lba, &mut buf)).unwrap();
    buf
}

/// Bounce buffers are reused: a read into a buffer an earlier write of
/// another length filled gives the file's bytes, none of the write's.
#[test]
fn reused_buffers_never_show_an_earlier_requests_bytes() {
    let path = TempPath::new("reuse");
    let options = FileOptions {
        size: Some(1 << 20),
        create: true,
        ..FileOptions::new(512)
    };
    let dev = UringFileDevice::open(&path.0, options).unwrap();
    for round in 0..3u8 {
        // 16 KiB of 0xAA at block 0, then 12 KiB (the same buffer size)
        // read from never written blocks: zeros.
        block_on(dev.write(0, &[0xaa ^ round; 16384])).unwrap();
        let mut back = vec![0x55u8; 12288];
        block_on(dev.read(1024, &mut back)).unwrap();
        assert!(back.iter().all(|&b| b == 0), "round {round}: stale bytes");
        // A 3 KiB write from a reused 4 KiB buffer writes only its own bytes.
        block_on(dev.write(1536, &[0x11; 3072])).unwrap();
        let mut block = vec![0u8; 4096];
        block_on(dev.read(1536, &mut block)).unwrap();
        assert!(block[..3072].iter().all(|&b| b == 0x11));
        assert!(
            block[3072..].iter().all(|&b| b == 0),
            "round {round}: past the write"
        );
    }
}

#[test]
fn round_trips_at_several_alignments_and_sizes() {
    for direct in [false, true] {
        let path = TempPath::new("alignments");
        let options = FileOptions {
            size: Some(8 << 20),
            create: true,
            direct,
            ..FileOptions::new(4096)
        };
        let dev = UringFileDevice::open(&path.0, options).unwrap();
        assert_eq!(dev.file().is_direct(), direct);
        let mut lba = 0;
        for (i, blocks) in [1, 3, 16, MAX_BUFFER / 4096 + 5].into_iter().enumerate() {
            for misalign in [0, 1, 512] {
                let len = blocks * 4096;
                let data = pattern(len, (i * 3 + misalign) as u8);
                let mut unaligned = vec![0u8; len + misalign];
                unaligned[misalign..].copy_from_slice(&data);
                block_on(dev.write(lba, &unaligned[misalign..])).unwrap();
                let mut back = vec![0u8; len + misalign];
                block_on(dev.read(lba, &mut back[misalign..])).unwrap();
                assert_eq!(back[misalign..], data, "{blocks} blocks, +{misalign}");
                lba += blocks as u64;
            }
        }
        // The same bytes as the synchronous device reads.
        block_on(dev.flush()).unwrap();
        let sync = FileDevice::open(&path.0, FileOptions::new(4096)).unwrap();
        let mut via_sync = vec![0u8; lba as usize * 4096];
        sync.read(0, &mut via_sync).unwrap();
        assert_eq!(read_vec(&dev, 0, lba as usize), via_sync);
    }
}

#[test]
fn vectored_io_lands_where_sequential_io_would() {
    let path = TempPath::new("vectored");
    let dev = uring(&path, 512, 4 << 20);
    // Longer than one bounce buffer, cut unevenly, one empty piece.
    let data = pattern(MAX_BUFFER + 3 * 512, 5);
    let parts: [&[u8]; 4] = [
        &data[..1024],
        &[],
        &data[1024..700 * 512],
        &data[700 * 512..],
    ];
    block_on(dev.write_vectored(40, &parts, WriteFlags::NONE)).unwrap();
    assert_eq!(
        std::fs::read(&path.0).unwrap()[40 * 512..40 * 512 + data.len()],
        data
    );
    let (mut a, mut b) = (vec![0u8; 512 * 5], vec![0u8; data.len() - 512 * 5]);
    block_on(dev.read_vectored(40, &mut [&mut a, &mut b])).unwrap();
    assert_eq!([a, b].concat(), data);
}

#[test]
fn concurrent_requests_from_many_threads() {
    let path = TempPath::new("concurrent");
    let dev = uring(&path, 512, 8 * 64 * 8 * 512);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let dev = &dev;
            s.spawn(move || {
                for round in 0..10u8 {
                    // 64 requests in flight from this thread, of mixed
                    // sizes so that they complete in any order.
                    let base = t * 64 * 8;
                    let data: Vec<Vec<u8>> = (0..64u64)
                        .map(|i| {
                            pattern((1 + i as usize % 8) * 512, round ^ (t as u8) << 4 ^ i as u8)
                        })
                        .collect();
                    let writes = data
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            Box::pin(dev.write(base + i as u64 * 8, d))
                                as Pin<Box<dyn Future<Output = _>>>
                        })
                        .collect();
                    assert!(join_all(writes).iter().all(Result::is_ok));
                    let mut back: Vec<Vec<u8>> = data.iter().map(|d| vec![0; d.len()]).collect();
                    let reads = back
                        .iter_mut()
                        .enumerate()
                        .map(|(i, b)| {
                            Box::pin(dev.read(base + i as u64 * 8, b))
                                as Pin<Box<dyn Future<Output = _>>>
                        })
                        .collect();
                    assert!(join_all(reads).iter().all(Result::is_ok));
                    assert_eq!(back, data);
                }
            });
        }
    });
}

#[test]
fn fua_writes_and_flushes_reach_the_file() {
    let path = TempPath::new("fua");
    let dev = uring(&path, 512, 64 * 512);
    assert!(dev.file().dsync.is_some());
    // FUA through the O_DSYNC descriptor: no separate sync.
    block_on(dev.write_vectored(9, &[&pattern(2048, 9)], WriteFlags::FUA)).unwrap();
    assert_eq!(dev.data_syncs(), 0);
    assert_eq!(
        std::fs::read(&path.0).unwrap()[9 * 512..13 * 512],
        pattern(2048, 9)
    );
    block_on(dev.write(20, &[1; 512])).unwrap();
    block_on(dev.flush()).unwrap();
    assert_eq!(dev.data_syncs(), 1);

    // Without an O_DSYNC descriptor FUA is a write and an fdatasync, as
    // with the synchronous device.
    let path = TempPath::new("fua-sync");
    let mut file = create(&path, 512, 64 * 512);
    file.dsync = None;
    let dev = UringFileDevice::new(file).unwrap();
    block_on(dev.write_vectored(3, &[&[7; 512], &[8; 512]], WriteFlags::FUA)).unwrap();
    assert_eq!(dev.data_syncs(), 1);
    assert_eq!(read_vec(&dev, 3, 2), [[7; 512], [8; 512]].concat());
}

#[test]
fn errors_map_as_the_synchronous_device_maps_them() {
    let path = TempPath::new("errors");
    let dev = uring(&path, 512, 64 * 512);
    let mut two = [0u8; 1024];
    assert_eq!(
        block_on(dev.read(63, &mut two)),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        block_on(dev.read(0, &mut [0; 100])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        block_on(dev.write(64, &[0; 512])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(block_on(dev.read(0, &mut [])), Ok(()));

    block_on(dev.write(0, &pattern(64 * 512, 8))).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path.0)
        .unwrap()
        .set_len(10 * 512)
        .unwrap();
    // Beyond the file's new end, and across it (a short read, asked again
    // for the rest, which is not there): a medium error, as synchronously.
    assert_eq!(
        block_on(dev.read(20, &mut [0; 512])),
        Err(BlockError::Medium)
    );
    assert_eq!(
        block_on(dev.read(8, &mut [0; 4 * 512])),
        Err(BlockError::Medium)
    );
    assert_eq!(
        dev.file().read(8, &mut [0; 4 * 512]),
        Err(BlockError::Medium)
    );
    assert_eq!(read_vec(&dev, 0, 10), pattern(64 * 512, 8)[..10 * 512]);
    // Writing there grows the file again; the gap reads as zeros.
    block_on(dev.write(30, &[3; 512])).unwrap();
    assert_eq!(read_vec(&dev, 30, 1), vec![3; 512]);
    assert_eq!(read_vec(&dev, 20, 1), vec![0; 512]);

    let options = FileOptions {
        read_only: true,
        ..FileOptions::new(512)
    };
    let read_only = UringFileDevice::open(&path.0, options).unwrap();
    assert_eq!(
        block_on(read_only.write(0, &[0; 512])),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(
        block_on(read_only.write_vectored(0, &[&[0; 512]], WriteFlags::FUA)),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(block_on(read_only.flush()), Ok(()));
    assert_eq!(read_only.data_syncs(), 0);
}

#[test]
fn dropped_futures_leave_the_callers_buffers_alone() {
    let path = TempPath::new("dropped");
    let dev = uring(&path, 4096, 16 << 20);
    block_on(dev.write(0, &pattern(16 << 20, 4))).unwrap();
    let waker = this_thread_waker();
    let mut cx = Context::from_waker(&waker);
    for round in 0..200u64 {
        // Submitted (polled once), then dropped or leaked at once, most
        // still in flight; the caller's buffer is written over meanwhile.
        let mut buf = vec![0u8; 1 << 20];
        let lba = (round % 16) * 256;
        {
            let mut read = Box::pin(dev.read(lba, &mut buf));
            let _ = read.as_mut().poll(&mut cx);
            if round % 2 == 0 {
                drop(read);
            } else {
                std::mem::forget(read);
            }
        }
        buf.fill(0xa5);
        let mut write_data = pattern(1 << 20, round as u8);
        {
            let mut write = Box::pin(dev.write(4096 - 256, &write_data));
            let _ = write.as_mut().poll(&mut cx);
        }
        write_data.fill(0);
        std::thread::yield_now();
        assert!(buf.iter().all(|&b| b == 0xa5), "round {round}");
    }
    // The abandoned requests finished; the device is still consistent.
    assert_eq!(read_vec(&dev, 0, 256), pattern(16 << 20, 4)[..1 << 20]);
    // Dropping the device waits for whatever is still in flight.
    let mut buf = vec![0u8; 1 << 20];
    let mut read = Box::pin(dev.read(0, &mut buf));
    let _ = read.as_mut().poll(&mut cx);
    std::mem::forget(read);
    buf.fill(0xa5);
    drop(dev);
    assert!(buf.iter().all(|&b| b == 0xa5));
}

#[test]
fn other_requests_and_capabilities_are_the_synchronous_devices() {
    let path = TempPath::new("delegated");
    let dev = uring(&path, 512, 1 << 20);
    assert_eq!(
        AsyncBlockDevice::capabilities(&dev),
        BlockDevice::capabilities(dev.file())
    );
    assert_eq!(AsyncBlockDevice::product_name(&dev), "file");
    block_on(dev.write(0, &pattern(64 * 512, 6))).unwrap();
    block_on(dev.write_zeroes(Extent::new(3, 5))).unwrap();
    block_on(dev.unmap(Extent::new(20, 10))).unwrap();
    let mut want = pattern(64 * 512, 6);
    want[3 * 512..8 * 512].fill(0);
    want[20 * 512..30 * 512].fill(0);
    assert_eq!(read_vec(&dev, 0, 64), want);
    assert_eq!(block_on(dev.lba_status(2000)), dev.file().lba_status(2000));
    AsyncBlockDevice::resize(&dev, 4096).unwrap();
    assert_eq!(AsyncBlockDevice::num_blocks(&dev), 4096);
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 4096 * 512);
}

#[test]
fn ring_setup_errors_name_io_uring() {
    let err = FileDeviceError::IoUring {
        path: "/x.img".into(),
        source: std::io::Error::from_raw_os_error(nix::libc::EPERM),
    };
    let message = err.to_string();
    assert!(
        message.starts_with("/x.img: cannot set up io_uring"),
        "{message}"
    );
}
