//! The emulator over an asynchronous device: commands in flight hold no
//! thread.

use crate::async_block_device::AsyncBlockDevice;
use crate::async_path::{plan, run};
use crate::blocking::Blocking;
use crate::completion::Completion;
use crate::copy_registry::CopyRegistry;
use crate::emulator::Emulator;
use crate::executor::Executor;
use crate::identity::LunIdentity;
use crate::port_groups::PortGroupSource;

/// How many threads poll the futures of an [`AsyncEmulator`] by default.
/// They only poll (the device's own I/O happens elsewhere), so two keep up
/// with many commands in flight.
pub const DEFAULT_POLL_THREADS: usize = 2;

/// A SCSI logical unit over an [`AsyncBlockDevice`], answering every
/// command the synchronous [`Emulator`] does, with the same answers.
///
/// READ, WRITE and SYNCHRONIZE CACHE become one future each, polled first
/// on the thread that starts the command and then, whenever the device
/// wakes it, on the emulator's own polling threads: a command waiting for
/// the device holds no thread, so the queue depth the initiator asks for
/// reaches the device. The other commands (INQUIRY, MODE SENSE, and the
/// multi-step COMPARE AND WRITE, WRITE SAME, UNMAP, VERIFY, WRITE AND
/// VERIFY, EXTENDED COPY, GET LBA STATUS, and WRITE ATOMIC) run the
/// synchronous emulator on the starting thread, waiting for the device
/// there ([`Blocking`]); so do the rare READs and WRITEs that need it (a
/// buffer not in whole blocks, a WRITE whose range COMPARE AND WRITE
/// holds, a READ of blocks a WRITE ATOMIC holds or waits for).
///
/// ```
/// use scsi_emu::{AsyncBlockDevice, AsyncEmulator, BlockError, Completion};
/// use scsi_emu::{DataBuffer, LunIdentity, ScsiResponse, ScsiStatus};
/// use std::sync::mpsc;
///
/// struct Zeros;
/// impl AsyncBlockDevice for Zeros {
///     fn block_size(&self) -> u32 { 512 }
///     fn num_blocks(&self) -> u64 { 8 }
///     async fn read(&self, _: u64, buf: &mut [u8]) -> Result<(), BlockError> {
///         buf.fill(0);
///         Ok(())
///     }
///     async fn write(&self, _: u64, _: &[u8]) -> Result<(), BlockError> {
///         Err(BlockError::ReadOnly)
///     }
/// }
///
/// /// A command whose answer goes to a channel.
/// struct Job(Vec<u8>, Vec<u8>, mpsc::Sender<ScsiResponse>);
/// impl Completion for Job {
///     fn parts(&mut self) -> (&[u8], &mut (dyn DataBuffer + Send)) {
///         (&self.0, &mut self.1)
///     }
///     fn complete(self, response: ScsiResponse, _descriptor_sense: bool) {
///         self.2.send(response).unwrap();
///     }
/// }
///
/// let lun = AsyncEmulator::new(Zeros, LunIdentity::new("0001", "zeros"))?;
/// let (tx, rx) = mpsc::channel();
/// // READ(10) of one block.
/// lun.start(Job(vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], vec![0xff; 512], tx));
/// assert_eq!(rx.recv()?.status, ScsiStatus::Good);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncEmulator<D: AsyncBlockDevice> {
    /// The unit and everything it shares with the synchronous emulator
    /// (identity, mode pages, locks), whose families run the slow path.
    emulator: Emulator<Blocking<D>>,
    executor: Executor,
}

impl<D: AsyncBlockDevice> AsyncEmulator<D> {
    /// A logical unit on `device` identifying itself as `identity`, with
    /// [`DEFAULT_POLL_THREADS`] polling threads. Fails only when a thread
    /// cannot be started.
    pub fn new(device: D, identity: LunIdentity) -> std::io::Result<Self> {
        AsyncEmulator::with_poll_threads(device, identity, DEFAULT_POLL_THREADS)
    }

    /// As [`new`](Self::new), with `threads` polling threads (at least one).
    pub fn with_poll_threads(
        device: D,
        identity: LunIdentity,
        threads: usize,
    ) -> std::io::Result<Self> {
        Ok(AsyncEmulator {
            emulator: Emulator::new(Blocking(device), identity),
            executor: Executor::new(threads)?,
        })
    }

    /// See [`Emulator::with_max_io_bytes`].
    pub fn with_max_io_bytes(mut self, bytes: u32) -> Self {
        self.emulator = self.emulator.with_max_io_bytes(bytes);
        self
    }

    /// See [`Emulator::with_port_groups`].
    pub fn with_port_groups(mut self, source: impl PortGroupSource) -> Self {
        self.emulator = self.emulator.with_port_groups(source);
        self
    }

    /// See [`Emulator::with_copy_registry`].
    pub fn with_copy_registry(mut self, registry: CopyRegistry) -> Self {
        self.emulator = self.emulator.with_copy_registry(registry);
        self
    }

    /// The synchronous emulator sharing this unit: its settings
    /// (descriptor sense, write cache, resize, identity) are this unit's.
    pub fn emulator(&self) -> &Emulator<Blocking<D>> {
        &self.emulator
    }

    /// The backing device.
    pub fn device(&self) -> &D {
        &self.emulator.device().0
    }

    /// Start one command; it is answered through `completion`, now or
    /// later, from this thread or a polling thread. Never panics, whatever
    /// the CDB.
    pub fn start<C: Completion>(&self, mut completion: C) {
        let lun = &self.emulator.lun;
        let (cdb, data) = completion.parts();
        let command = match self.emulator.admit(cdb) {
            Ok(command) => command,
            Err(response) => return completion.complete(response, lun.descriptor_sense()),
        };
        match plan(lun, &command, &*data) {
            Some(op) => self.executor.spawn(run(lun.clone(), op, completion)),
            None => {
                let response = self.emulator.dispatch(&command, data);
                completion.complete(response, lun.descriptor_sense());
            }
        }
    }
}

impl<D: AsyncBlockDevice + std::fmt::Debug> std::fmt::Debug for AsyncEmulator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEmulator")
            .field("emulator", &self.emulator)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    use std::time::Duration;

    use super::*;
    use crate::testutil::*;
    use crate::{BlockError, DataBuffer, ScsiResponse};

    /// Run `cdb` on both emulators (over equal devices) with a buffer of
    /// `segments` (its lengths; filled with `fill`): the answers, the data
    /// and the media must agree.
    fn agree(
        sync: &Emulator<VecDevice>,
        asynchronous: &AsyncEmulator<Yielding<VecDevice>>,
        cdb: &[u8],
        segments: &[usize],
        fill: u8,
    ) -> ScsiResponse {
        let buffer: Vec<Vec<u8>> = segments.iter().map(|&n| vec![fill; n]).collect();
        let mut expected_data = buffer.clone();
        let expected = sync.execute(cdb, &mut expected_data);
        let (done, answers) = mpsc::channel();
        asynchronous.start(Job {
            cdb: cdb.to_vec(),
            data: buffer,
            done,
        });
        let (got, data) = answers.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, expected, "CDB {cdb:02x?}");
        if let Some(n) = expected.data_in_len {
            let flat = |b: &Vec<Vec<u8>>| b.concat()[..n].to_vec();
            assert_eq!(flat(&data), flat(&expected_data), "data of {cdb:02x?}");
        }
        assert_eq!(
            asynchronous.device().0.contents(),
            sync.device().contents(),
            "medium after {cdb:02x?}"
        );
        got
    }

    /// WRITE ATOMIC(16) of `blocks` blocks at `lba`.
    fn atomic16(flags: u8, lba: u64, blocks: u16) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        (cdb[0], cdb[1]) = (0x9C, flags);
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[12..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    #[test]
    fn every_command_answers_as_on_the_synchronous_emulator() {
        const BS: usize = 512;
        let device = || {
            VecDevice::new(BS as u32, 64)
                .with_unmap()
                .with_lba_status()
                .with_write_cache()
                .with_atomic_writes(4)
        };
        let sync = emulator(device());
        let asynchronous = async_emulator(device());
        let one = [BS];
        let two = [BS, BS];
        let mut caw = vec![0x89, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0];
        let cases: Vec<(Vec<u8>, &[usize], u8)> = vec![
            (vec![0x00, 0, 0, 0, 0, 0], &[], 0),         // TEST UNIT READY
            (vec![0x12, 0, 0, 0, 96, 0], &[96], 0),      // INQUIRY
            (vec![0x12, 1, 0x83, 0, 255, 0], &[255], 0), // VPD 83h
            (vec![0x12, 1, 0xB0, 0, 64, 0], &[64], 0),   // Block Limits
            (vec![0x12, 1, 0xB2, 0, 8, 0], &[8], 0),     // LBP
            (vec![0x1A, 0, 0x3F, 0, 255, 0], &[255], 0), // MODE SENSE(6)
            (vec![0x5A, 0, 0x08, 0, 0, 0, 0, 0, 64, 0], &[64], 0), // MODE SENSE(10)
            (vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[8], 0), // READ CAPACITY(10)
            (
                vec![0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                &[32],
                0,
            ), // READ CAPACITY(16)
            (rw10(true, 0, 3, 2), &two, 0xA1),           // WRITE, two segments
            (rw16(true, 0x08, 10, 1), &one, 0xA2),       // WRITE FUA
            (rw6(true, 20, 1), &one, 0xA3),              // WRITE(6)
            (rw12(true, 0, 30, 2), &[1024], 0xA4),       // WRITE(12)
            (rw10(false, 0, 3, 2), &two, 0),             // READ, two segments
            (rw16(false, 0, 0, 4), &[1024, 1024], 0),    // READ(16)
            (rw6(false, 20, 1), &one, 0),                // READ(6)
            (rw12(false, 0, 30, 2), &[1536], 0),         // READ(12), long buffer
            (rw10(false, 0, 0, 2), &[300, 724], 0),      // split block: slow path
            (rw10(true, 0, 40, 2), &[700], 0xA5),        // short write buffer
            (rw10(false, 0, 63, 2), &two, 0),            // out of range
            (rw10(false, 0xE0, 0, 1), &one, 0),          // RDPROTECT
            (atomic16(0x08, 44, 2), &[BS, BS], 0xA8),    // WRITE ATOMIC, FUA
            (atomic16(0, 44, 5), &[5 * BS], 0xA9),       // beyond its limit
            (atomic16(0, 63, 2), &two, 0xAA),            // out of range
            (vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 0), // SYNCHRONIZE CACHE(10)
            (
                vec![0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[],
                0,
            ), // SYNCHRONIZE CACHE(16)
            (vec![0x35, 0, 0, 0, 0, 99, 0, 0, 1, 0], &[], 0), // out of range
            (vec![0x2F, 0x02, 0, 0, 0, 3, 0, 0, 2, 0], &two, 0xA1), // VERIFY BYTCHK
            (vec![0x2F, 0x02, 0, 0, 0, 3, 0, 0, 2, 0], &two, 0x55), // miscompare
            (vec![0x2E, 0x02, 0, 0, 0, 50, 0, 0, 1, 0], &one, 0xA6), // WRITE AND VERIFY
            (vec![0x41, 0, 0, 0, 0, 60, 0, 0, 2, 0], &one, 0xA7), // WRITE SAME(10)
            (vec![0x41, 0x08, 0, 0, 0, 60, 0, 0, 2, 0], &one, 0), // WRITE SAME, UNMAP
            (vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &[24], 0), // UNMAP (list below)
            (
                vec![0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0],
                &[64],
                0,
            ), // GET LBA STATUS
            (vec![0xA3, 0x0C, 1, 0x28, 0, 0, 0, 0, 0, 64, 0, 0], &[64], 0), // one opcode
            (vec![0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[16], 0), // TMFs
            (vec![0x1B, 0, 0, 0, 0, 0], &[], 0),         // STOP
            (rw10(false, 0, 0, 1), &one, 0),             // not ready
            (vec![0x03, 0, 0, 0, 18, 0], &[18], 0),      // REQUEST SENSE
            (vec![0x1B, 0, 0, 0, 1, 0], &[], 0),         // START
            (vec![0xFF, 0, 0, 0, 0, 0], &[], 0),         // invalid opcode
        ];
        let mut good = 0;
        for (cdb, segments, fill) in &cases {
            if cdb[0] == 0x42 {
                // UNMAP: one descriptor, 4 blocks from LBA 4.
                let mut p = vec![0u8; 24];
                p[1] = 22;
                p[3] = 16;
                p[15] = 4;
                p[19] = 4;
                let mut a = vec![p.clone()];
                let s = sync.execute(cdb, &mut a);
                let (done, answers) = mpsc::channel();
                asynchronous.start(Job {
                    cdb: cdb.clone(),
                    data: vec![p],
                    done,
                });
                assert_eq!(answers.recv().unwrap().0, s);
                continue;
            }
            let response = agree(&sync, &asynchronous, cdb, segments, *fill);
            good += usize::from(response.status == crate::ScsiStatus::Good);
        }
        // Errors agree too, but most of the list must succeed.
        assert_eq!(good, 31, "GOOD answers");
        // COMPARE AND WRITE: a match writes, a mismatch does not.
        let medium = sync.device().contents()[3 * BS..4 * BS].to_vec();
        let mut both = medium.clone();
        both.extend(vec![0xEE; BS]);
        for (data, what) in [(both.clone(), "match"), (vec![0x11; 2 * BS], "mismatch")] {
            let mut expected_data = data.clone();
            let expected = sync.execute(&caw, &mut expected_data);
            let (done, answers) = mpsc::channel();
            asynchronous.start(Job {
                cdb: caw.clone(),
                data,
                done,
            });
            assert_eq!(answers.recv().unwrap().0, expected, "{what}");
            assert_eq!(asynchronous.device().0.contents(), sync.device().contents());
        }
        caw[9] = 100; // out of range
        let (done, answers) = mpsc::channel();
        asynchronous.start(Job {
            cdb: caw.clone(),
            data: both,
            done,
        });
        assert_eq!(
            answers.recv().unwrap().0,
            sync.execute(&caw, &mut vec![0u8; 2 * BS])
        );
    }

    #[test]
    fn extended_copy_and_copy_status_answer_as_on_the_synchronous_emulator() {
        let sync = emulator(VecDevice::new(512, 64));
        let asynchronous = async_emulator(VecDevice::new(512, 64));
        let naa = sync.identity().naa();
        assert_eq!(asynchronous.emulator().identity().naa(), naa);
        // List identifier 1 (held), one CSCD naming the unit itself, one
        // segment: 4 blocks from LBA 0 to LBA 32.
        let mut list = vec![0u8; 16 + 32 + 28];
        (list[0], list[3], list[11]) = (1, 32, 28);
        list[16..24].copy_from_slice(&[0xE4, 0, 0, 0, 0x01, 0x03, 0, 8]);
        list[24..32].copy_from_slice(&naa);
        (list[48], list[51], list[59], list[75]) = (0x02, 0x18, 4, 32);
        let mut xcopy = vec![0u8; 16];
        (xcopy[0], xcopy[13]) = (0x83, list.len() as u8);
        let mut status = vec![0u8; 16];
        (status[0], status[2], status[13]) = (0x84, 1, 64);
        let cases = [
            (&xcopy, list),
            (&status, vec![0; 64]),
            (&status, vec![0; 64]),
        ];
        let mut answers = Vec::new();
        for (cdb, data) in cases {
            let (mut expected_data, mut got_data) = (data.clone(), data);
            let expected = sync.run(cdb, &mut expected_data);
            assert_eq!(asynchronous.run(cdb, &mut got_data), expected);
            assert_eq!(got_data, expected_data);
            answers.push(expected);
        }
        assert_eq!(answers[0], ScsiResponse::good());
        assert_eq!(answers[1], ScsiResponse::data_in(12));
        assert_invalid_field(&answers[2], 2, 7);
        let medium = asynchronous.contents();
        assert_eq!(medium, sync.contents());
        assert_eq!(medium[32 * 512..36 * 512], medium[..4 * 512]);
    }

    /// Holds every read until released, counting reads in flight.
    #[derive(Default)]
    struct Gate {
        in_flight: AtomicUsize,
        open: Mutex<(bool, Vec<Waker>)>,
    }

    impl Gate {
        fn release(&self) {
            let mut open = self.open.lock().unwrap();
            open.0 = true;
            open.1.drain(..).for_each(Waker::wake);
        }
    }

    struct Gated(Arc<Gate>);

    impl AsyncBlockDevice for Gated {
        fn block_size(&self) -> u32 {
            512
        }
        fn num_blocks(&self) -> u64 {
            1024
        }
        async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.0.in_flight.fetch_add(1, Ordering::SeqCst);
            std::future::poll_fn(|cx| {
                let mut open = self.0.open.lock().unwrap();
                if open.0 {
                    Poll::Ready(())
                } else {
                    open.1.push(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            buf.fill(lba as u8);
            Ok(())
        }
        async fn write(&self, _: u64, _: &[u8]) -> Result<(), BlockError> {
            Ok(())
        }
    }

    #[test]
    fn commands_in_flight_hold_no_thread() {
        let gate = Arc::new(Gate::default());
        let lun = AsyncEmulator::with_poll_threads(
            Gated(gate.clone()),
            LunIdentity::new("g", "gated"),
            1,
        )
        .unwrap();
        let (done, answers) = mpsc::channel();
        // 128 READs started from this one thread, all waiting at once.
        for lba in 0..128u32 {
            lun.start(Job {
                cdb: rw10(false, 0, lba, 1),
                data: vec![0u8; 512],
                done: done.clone(),
            });
        }
        assert_eq!(gate.in_flight.load(Ordering::SeqCst), 128);
        assert!(answers.try_recv().is_err(), "nothing answered yet");
        std::thread::spawn(move || gate.release());
        let mut seen = 0;
        for _ in 0..128 {
            let (response, data) = answers.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(response, ScsiResponse::data_in(512));
            assert!(data.iter().all(|&b| b == data[0]));
            seen += 1;
        }
        assert_eq!(seen, 128);
    }

    #[test]
    fn a_dropped_emulator_answers_its_pending_commands() {
        struct Dropped(mpsc::Sender<bool>, Vec<u8>, Vec<u8>);
        impl Completion for Dropped {
            fn parts(&mut self) -> (&[u8], &mut (dyn DataBuffer + Send)) {
                (&self.1, &mut self.2)
            }
            fn complete(self, _: ScsiResponse, _: bool) {
                let _ = self.0.send(true);
            }
        }
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send(false);
            }
        }
        let gate = Arc::new(Gate::default());
        let lun = AsyncEmulator::new(Gated(gate.clone()), LunIdentity::new("g", "gated")).unwrap();
        let (tx, rx) = mpsc::channel();
        lun.start(Dropped(tx, rw10(false, 0, 0, 1), vec![0; 512]));
        drop(lun);
        // The future waits in the gate; dropping the gate's wakers drops it.
        gate.open.lock().unwrap().1.clear();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(false));
    }
}
