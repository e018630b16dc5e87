//! The asynchronous emulator serving through the ring of the simulated
//! kernel with the real serving loop: many commands pending at once on two
//! workers, completed from other threads in any order.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use block_backends::MemoryDevice;
use scsi_emu::{AsyncBlockDevice, AsyncEmulator, BlockDevice, BlockError, LunIdentity};
use tcmu_core::Ring;
use tcmu_core::server::{ServeOptions, serve_with};
use tcmu_core::sim::{SimCompletion, SimConfig, SimDoorbell, SimKernel};

/// A memory device whose every request finishes on a thread of its own
/// after 0-3 ms, so requests complete out of order; counts the most
/// requests it had at once.
struct Remote {
    blocks: MemoryDevice,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Remote {
    async fn round_trip(&self, lba: u64) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let mut started = false;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::future::poll_fn(|cx| {
            if done.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !started {
                started = true;
                let (done, waker) = (done.clone(), cx.waker().clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(lba % 4 * 1000));
                    done.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        })
        .await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncBlockDevice for Remote {
    fn block_size(&self) -> u32 {
        512
    }
    fn num_blocks(&self) -> u64 {
        self.blocks.num_blocks()
    }
    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.round_trip(lba).await;
        self.blocks.read(lba, buf)
    }
    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.round_trip(lba).await;
        self.blocks.write(lba, buf)
    }
}

fn rw10(opcode: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut cdb = vec![opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

fn wait_for(kernel: &mut SimKernel, n: usize) -> Vec<SimCompletion> {
    let start = Instant::now();
    let mut done = Vec::new();
    while done.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} of {n}",
            done.len()
        );
        done.extend(kernel.reap());
        std::thread::sleep(Duration::from_millis(1));
    }
    done
}

#[test]
fn many_commands_pending_on_two_workers_move_the_right_data() {
    let mut kernel = SimKernel::new(SimConfig::default());
    // Scatter buffers over 4 KiB segments, as the kernel's pages are.
    kernel.segment_size = 4096;
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let device = Remote {
        blocks: MemoryDevice::new(512, 4096).unwrap(),
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    };
    let lun = Arc::new(AsyncEmulator::new(device, LunIdentity::new("a1", "remote")).unwrap());
    let (stop_rx, mut stop) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 2,
        ..ServeOptions::default()
    };
    let (server_bell, server_lun) = (bell.clone(), lun.clone());
    let server = std::thread::spawn(move || {
        serve_with(server_bell, ring, server_lun, stop_rx.as_fd(), options)
    });

    // 48 WRITEs of 16 KiB, each its own pattern, all submitted at once.
    let pattern = |n: u32| -> Vec<u8> { (0..16384u32).map(|i| (i * 31 + n * 7) as u8).collect() };
    for n in 0..48u32 {
        kernel
            .submit(&rw10(0x2A, n * 32, 32), &pattern(n), 0)
            .unwrap();
    }
    bell.kick();
    let written = wait_for(&mut kernel, 48);
    assert!(written.iter().all(|c| c.status == 0), "{written:?}");
    let most = lun.device().most.load(Ordering::SeqCst);
    assert!(most > 2, "at most {most} requests in flight on 2 workers");

    // Read them back at once, plus an INQUIRY and a COMPARE AND WRITE
    // (the synchronous path) in between.
    let mut reads = std::collections::HashMap::new();
    for n in 0..48u32 {
        let id = kernel.submit(&rw10(0x28, n * 32, 32), &[], 16384).unwrap();
        reads.insert(id, n);
    }
    let inquiry = kernel.submit(&[0x12, 0, 0, 0, 36, 0], &[], 36).unwrap();
    // On a block no READ covers (LBA 2000, zeros so far).
    let mut caw_data = vec![0u8; 512];
    caw_data.extend([0xC5; 512]);
    let caw_cdb = [0x89, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xD0, 0, 0, 0, 1, 0, 0];
    let caw = kernel.submit(&caw_cdb, &caw_data, 0).unwrap();
    bell.kick();
    let done = wait_for(&mut kernel, 50);
    for c in &done {
        assert_eq!(c.status, 0, "{c:?}");
        if let Some(n) = reads.get(&c.id) {
            assert_eq!(c.data_in, pattern(*n), "READ of write {n}");
        } else if c.id == inquiry {
            assert_eq!(&c.data_in[16..27], b"remote     ");
        } else {
            assert_eq!(c.id, caw);
        }
    }
    let mut block = vec![0u8; 512];
    lun.device().blocks.read(2000, &mut block).unwrap();
    assert_eq!(block, vec![0xC5; 512], "COMPARE AND WRITE wrote");
    assert!(kernel.broken().is_none(), "{:?}", kernel.broken());

    stop.write_all(&[1]).unwrap();
    server.join().unwrap().unwrap();
}
