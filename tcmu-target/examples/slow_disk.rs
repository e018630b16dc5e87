//! An asynchronous device: a RAM disk whose every request waits a network
//! round trip (2 ms, or the first argument in milliseconds) before it
//! completes, as a disk behind a remote store would. Written with
//! `AsyncBlockDevice`, a waiting request holds no thread, so 32 requests
//! in flight take one round trip together: the initiator's queue depth
//! reaches the "network". Run as root; stop with ^C.

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use block_backends::MemoryDevice;
use scsi_emu::{AsyncBlockDevice, BlockDevice, BlockError, WriteFlags};
use tcmu_target::{AsyncDevice, Target};

/// The disk: its blocks, the round trip, and the clock that wakes
/// requests when their round trip is over.
struct SlowDisk {
    blocks: MemoryDevice,
    round_trip: Duration,
    timer: Arc<Timer>,
}

impl AsyncBlockDevice for SlowDisk {
    fn block_size(&self) -> u32 {
        self.blocks.block_size()
    }

    fn num_blocks(&self) -> u64 {
        self.blocks.num_blocks()
    }

    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.timer.sleep(self.round_trip).await;
        self.blocks.read(lba, buf)
    }

    async fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.timer.sleep(self.round_trip).await;
        self.blocks.write(lba, buf)
    }

    // One round trip per command, however many ring segments it has.
    async fn read_vectored(&self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.timer.sleep(self.round_trip).await;
        self.blocks.read_vectored(lba, bufs)
    }

    async fn write_vectored(
        &self,
        lba: u64,
        bufs: &[&[u8]],
        flags: WriteFlags,
    ) -> Result<(), BlockError> {
        self.timer.sleep(self.round_trip).await;
        self.blocks.write_vectored(lba, bufs, flags)
    }

    fn product_name(&self) -> &str {
        "slow disk"
    }
}

/// One thread that wakes each sleeping request at its deadline.
#[derive(Default)]
struct Timer {
    due: Mutex<Vec<(Instant, Waker)>>,
    changed: Condvar,
}

impl Timer {
    fn start() -> Arc<Timer> {
        let timer = Arc::new(Timer::default());
        let clock = timer.clone();
        std::thread::spawn(move || clock.run());
        timer
    }

    fn run(&self) {
        let mut due = self.due.lock().unwrap();
        loop {
            let now = Instant::now();
            // Wake what is due, keep the rest.
            due.retain(|(at, waker)| {
                if *at > now {
                    return true;
                }
                waker.wake_by_ref();
                false
            });
            due = match due.iter().map(|(at, _)| *at).min() {
                Some(next) => self.changed.wait_timeout(due, next - now).unwrap().0,
                None => self.changed.wait(due).unwrap(),
            };
        }
    }

    async fn sleep(&self, time: Duration) {
        let until = Instant::now() + time;
        std::future::poll_fn(|cx| {
            if Instant::now() >= until {
                return Poll::Ready(());
            }
            self.due.lock().unwrap().push((until, cx.waker().clone()));
            self.changed.notify_one();
            Poll::Pending
        })
        .await
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ms: u64 = std::env::args().nth(1).map_or(Ok(2), |a| a.parse())?;
    let disk = SlowDisk {
        blocks: MemoryDevice::new(512, 1 << 18)?, // 128 MiB
        round_trip: Duration::from_millis(ms),
        timer: Timer::start(),
    };
    let target = Target::builder(AsyncDevice(disk))
        .name("slow-disk")
        .start()?;
    println!("ready: {}", target.disk().unwrap().display());
    target.wait_for_signal()?;
    Ok(target.shutdown()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_emu::testing::{CheckOptions, check_async_device};

    /// Without root: through the asynchronous emulator and the serving
    /// loop over a simulated kernel, against a model of the medium.
    #[test]
    fn passes_the_device_check() {
        let timer = Timer::start();
        check_async_device(
            || SlowDisk {
                blocks: MemoryDevice::new(512, 256).unwrap(),
                round_trip: Duration::from_millis(1),
                timer: timer.clone(),
            },
            CheckOptions::default(),
        );
    }
}
