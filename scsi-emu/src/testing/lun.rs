//! [`TestLun`]: a device served through the emulator and the real serving
//! loop over the simulated kernel, driven by typed calls.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scsi_sense_codes::{AdditionalSense, ScsiStatus, Sense, SenseKey};
use tcmu_core::server::{ServeError, ServeOptions, serve_with};
use tcmu_core::sim::{SimCompletion, SimConfig, SimDoorbell, SimError, SimKernel};
use tcmu_core::{AsyncCommandHandler, Ring};

use super::cdb;
use super::options::TestLunOptions;
use super::outcome::{CommandFailure, Outcome};
use super::request::Request;
use super::unit::Unit;
use crate::{
    AsyncBlockDevice, AsyncEmulator, BlockDevice, BlockError, DeviceCapabilities, Emulator,
    LunIdentity,
};

/// A command in the ring, to [`wait`](TestLun::wait) for. Each ticket is
/// waited for at most once.
#[derive(Debug)]
#[must_use = "wait for the command"]
pub struct Ticket {
    seq: u64,
    name: String,
}

impl Ticket {
    /// The command, as named in messages.
    pub fn command(&self) -> &str {
        &self.name
    }
}

/// The kernel's side, shared by every caller.
struct Kernel {
    sim: SimKernel,
    next_seq: u64,
    /// Ring command id → ticket.
    in_ring: HashMap<u16, u64>,
    /// Completions reaped for tickets not yet waited for.
    done: HashMap<u64, SimCompletion>,
    most_in_flight: usize,
}

impl Kernel {
    fn reap(&mut self) {
        for c in self.sim.reap() {
            if let Some(seq) = self.in_ring.remove(&c.id) {
                self.done.insert(seq, c);
            }
        }
    }
}

/// A logical unit for tests: a [`BlockDevice`] (or an
/// [`AsyncBlockDevice`]) served through the real [`Emulator`] and the real
/// serving loop of `tcmu-core` with worker threads, over the simulated
/// kernel, so no root and no kernel module are needed. What a command
/// goes through is what it goes through under `target_core_user`: the
/// CDB and data are placed in the shared ring, workers read the ring,
/// execute commands at the same time, and complete them in any order.
///
/// The typed calls ([`read`](Self::read), [`write`](Self::write), ...)
/// return `Ok` only for GOOD; every other ending is a
/// [`CommandFailure`] naming the command. [`command`](Self::command) and
/// [`run`](Self::run) return any [`Outcome`] the device answered. Many
/// commands at once: [`submit`](Self::submit) or
/// [`submit_all`](Self::submit_all), then [`wait`](Self::wait), or
/// [`run_all`](Self::run_all). Every wait is bounded by
/// [`TestLunOptions::timeout`]: a stuck device is an error, not a hang.
///
/// ```
/// use scsi_emu::testing::TestLun;
/// # use scsi_emu::{BlockDevice, BlockError};
/// # use std::sync::Mutex;
/// # struct Ram(Mutex<Vec<u8>>);
/// # impl BlockDevice for Ram {
/// #     fn block_size(&self) -> u32 { 512 }
/// #     fn num_blocks(&self) -> u64 { 64 }
/// #     fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
/// #         let at = lba as usize * 512;
/// #         buf.copy_from_slice(&self.0.lock().unwrap()[at..at + buf.len()]);
/// #         Ok(())
/// #     }
/// #     fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
/// #         let at = lba as usize * 512;
/// #         self.0.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
/// #         Ok(())
/// #     }
/// # }
/// let lun = TestLun::new(Ram(Mutex::new(vec![0; 64 * 512]))).unwrap();
/// lun.write(3, &[7u8; 1024]).unwrap();
/// assert_eq!(lun.read(3, 2).unwrap(), vec![7u8; 1024]);
/// let beyond = lun.read(63, 2).unwrap_err();
/// assert_eq!(beyond.sense().unwrap().code.asc, 0x21); // LBA OUT OF RANGE
/// ```
pub struct TestLun {
    kernel: Mutex<Kernel>,
    bell: Arc<SimDoorbell>,
    unit: Arc<dyn Unit>,
    stop: UnixStream,
    server: Mutex<Option<JoinHandle<Result<(), ServeError>>>>,
    options: TestLunOptions,
    block_size: u32,
}

impl std::fmt::Debug for TestLun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLun")
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.unit.num_blocks())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TestLun {
    /// Serve `device` with the default options.
    pub fn new<D: BlockDevice + 'static>(device: D) -> io::Result<TestLun> {
        TestLun::with_options(device, TestLunOptions::default())
    }

    /// Serve `device` with `options`.
    pub fn with_options<D: BlockDevice + 'static>(
        device: D,
        options: TestLunOptions,
    ) -> io::Result<TestLun> {
        let name = device.product_name().to_owned();
        let emulator = Arc::new(Emulator::new(device, LunIdentity::new("test-lun", name)));
        TestLun::serve(emulator.clone(), emulator, options)
    }

    /// Serve the asynchronous `device` (through [`AsyncEmulator`]) with the
    /// default options.
    pub fn new_async<D: AsyncBlockDevice>(device: D) -> io::Result<TestLun> {
        TestLun::async_with_options(device, TestLunOptions::default())
    }

    /// Serve the asynchronous `device` with `options`.
    pub fn async_with_options<D: AsyncBlockDevice>(
        device: D,
        options: TestLunOptions,
    ) -> io::Result<TestLun> {
        let name = device.product_name().to_owned();
        let emulator = Arc::new(AsyncEmulator::new(
            device,
            LunIdentity::new("test-lun", name),
        )?);
        TestLun::serve(emulator.clone(), emulator, options)
    }

    fn serve<H: AsyncCommandHandler + 'static>(
        handler: Arc<H>,
        unit: Arc<dyn Unit>,
        options: TestLunOptions,
    ) -> io::Result<TestLun> {
        let mut sim = SimKernel::new(SimConfig {
            data_size: options.data_area_bytes,
            ..SimConfig::default()
        });
        sim.segment_size = options.segment_size.max(4096);
        let ring = Ring::new(sim.map()).map_err(io::Error::other)?;
        let bell = Arc::new(SimDoorbell::new()?);
        let (stop_rx, stop) = UnixStream::pair()?;
        let serve_options = ServeOptions {
            workers: options.workers.max(1),
            drain_timeout: Duration::from_secs(1),
            ..ServeOptions::default()
        };
        let server_bell = bell.clone();
        let server = std::thread::Builder::new()
            .name("test-lun-serve".into())
            .spawn(move || {
                serve_with(server_bell, ring, handler, stop_rx.as_fd(), serve_options)
            })?;
        Ok(TestLun {
            kernel: Mutex::new(Kernel {
                sim,
                next_seq: 0,
                in_ring: HashMap::new(),
                done: HashMap::new(),
                most_in_flight: 0,
            }),
            bell,
            block_size: unit.block_size(),
            unit,
            stop,
            server: Mutex::new(Some(server)),
            options,
        })
    }

    /// The logical block size.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The device's number of blocks now.
    pub fn num_blocks(&self) -> u64 {
        self.unit.num_blocks()
    }

    /// What the device declares it can do.
    pub fn capabilities(&self) -> DeviceCapabilities {
        self.unit.capabilities()
    }

    /// The most commands the simulated kernel had in the ring at once
    /// (published and not completed), counted when each was published.
    pub fn most_in_flight(&self) -> usize {
        self.lock().most_in_flight
    }

    /// Change the device's size to `blocks` blocks, as a changed
    /// `dev_size` does under the kernel. The next command is answered with
    /// UNIT ATTENTION, CAPACITY DATA HAS CHANGED; the typed calls retry it
    /// once, as the initiator would.
    pub fn resize(&self, blocks: u64) -> Result<(), BlockError> {
        self.unit
            .resize(blocks.saturating_mul(u64::from(self.block_size)))
    }

    /// Send one raw CDB with a data-out buffer, or a data-in buffer of
    /// `data_in_len` bytes when `data_out` is empty, and wait for it.
    pub fn command(
        &self,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: usize,
    ) -> Result<Outcome, CommandFailure> {
        self.run(Request::Raw {
            cdb: cdb.to_vec(),
            data_out: data_out.to_vec(),
            data_in_len,
        })
    }

    /// Send `request` and wait for it; any status is `Ok`.
    pub fn run(&self, request: Request) -> Result<Outcome, CommandFailure> {
        let ticket = self.submit(request)?;
        self.wait(ticket)
    }

    /// Put `request` in the ring and let the workers at it; it runs while
    /// the caller goes on (and submits more).
    pub fn submit(&self, request: Request) -> Result<Ticket, CommandFailure> {
        Ok(self.submit_all(vec![request])?.remove(0))
    }

    /// Put every request in the ring before waking the workers, so they
    /// are in flight together (as far as the data area holds them: when it
    /// is full, the harness waits for completions before it places more).
    pub fn submit_all(&self, requests: Vec<Request>) -> Result<Vec<Ticket>, CommandFailure> {
        let mut tickets = Vec::with_capacity(requests.len());
        let mut kernel = self.lock();
        for request in requests {
            let wire = request.into_wire(self.block_size);
            let len = wire.data_out.len().max(wire.data_in_len) as u64;
            if len > self.options.data_area_bytes {
                return Err(CommandFailure::Ring {
                    command: wire.name,
                    reason: format!(
                        "{len} bytes of data do not fit in the {}-byte data area",
                        self.options.data_area_bytes
                    ),
                });
            }
            let start = Instant::now();
            let id = loop {
                match kernel
                    .sim
                    .submit(&wire.cdb, &wire.data_out, wire.data_in_len)
                {
                    Ok(id) => break id,
                    Err(SimError::RingFull | SimError::DataFull) => {
                        // Let the workers finish some and take their room back.
                        self.bell.kick();
                        kernel.reap();
                        if let Some(failure) = self.check_serving(&kernel, &wire.name) {
                            return Err(failure);
                        }
                        if start.elapsed() > self.options.timeout {
                            return Err(CommandFailure::TimedOut {
                                command: wire.name,
                                waited: start.elapsed(),
                            });
                        }
                        drop(kernel);
                        std::thread::sleep(Duration::from_micros(200));
                        kernel = self.lock();
                    }
                    Err(e) => {
                        return Err(CommandFailure::Ring {
                            command: wire.name,
                            reason: e.to_string(),
                        });
                    }
                }
            };
            let seq = kernel.next_seq;
            kernel.next_seq += 1;
            kernel.in_ring.insert(id, seq);
            kernel.most_in_flight = kernel.most_in_flight.max(kernel.sim.in_flight());
            tickets.push(Ticket {
                seq,
                name: wire.name,
            });
        }
        drop(kernel);
        self.bell.kick();
        Ok(tickets)
    }

    /// Wait (at most [`TestLunOptions::timeout`]) for the command of
    /// `ticket`; any status is `Ok`.
    pub fn wait(&self, ticket: Ticket) -> Result<Outcome, CommandFailure> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            let mut kernel = self.lock();
            kernel.reap();
            if let Some(c) = kernel.done.remove(&ticket.seq) {
                return outcome_of(c, &ticket.name);
            }
            if let Some(failure) = self.check_serving(&kernel, &ticket.name) {
                return Err(failure);
            }
            drop(kernel);
            if start.elapsed() > self.options.timeout {
                return Err(CommandFailure::TimedOut {
                    command: ticket.name,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Submit every request together ([`submit_all`](Self::submit_all)),
    /// then wait for each; the outcomes are in the order of `requests`.
    pub fn run_all(&self, requests: Vec<Request>) -> Result<Vec<Outcome>, CommandFailure> {
        let tickets = self.submit_all(requests)?;
        tickets.into_iter().map(|t| self.wait(t)).collect()
    }

    /// READ `blocks` blocks at `lba`.
    pub fn read(&self, lba: u64, blocks: u32) -> Result<Vec<u8>, CommandFailure> {
        let expected = blocks as usize * self.block_size as usize;
        let name = Request::read(lba, blocks).describe(self.block_size);
        let outcome = self.typed(Request::read(lba, blocks))?;
        if outcome.data.len() != expected {
            return Err(CommandFailure::Status {
                command: name,
                outcome,
            });
        }
        Ok(outcome.data)
    }

    /// WRITE `data` (whole blocks) at `lba`.
    pub fn write(&self, lba: u64, data: &[u8]) -> Result<(), CommandFailure> {
        self.typed(Request::write(lba, data)).map(drop)
    }

    /// WRITE `data` at `lba` with FUA (durable before GOOD).
    pub fn write_fua(&self, lba: u64, data: &[u8]) -> Result<(), CommandFailure> {
        self.typed(Request::write_fua(lba, data)).map(drop)
    }

    /// UNMAP the `(lba, blocks)` extents.
    pub fn unmap(&self, extents: &[(u64, u32)]) -> Result<(), CommandFailure> {
        self.typed(Request::Unmap {
            extents: extents.to_vec(),
        })
        .map(drop)
    }

    /// WRITE SAME: `block` (one block) to `blocks` blocks at `lba`; with
    /// `unmap`, a block of zeros may be deallocated.
    pub fn write_same(
        &self,
        lba: u64,
        blocks: u32,
        block: &[u8],
        unmap: bool,
    ) -> Result<(), CommandFailure> {
        self.typed(Request::WriteSame {
            lba,
            blocks,
            block: block.to_vec(),
            unmap,
        })
        .map(drop)
    }

    /// COMPARE AND WRITE: write `new` at `lba` if the blocks there hold
    /// `compare`. A mismatch is a [`CommandFailure::Status`] with
    /// MISCOMPARE sense whose INFORMATION is the offset of the first
    /// differing byte.
    pub fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        new: &[u8],
    ) -> Result<(), CommandFailure> {
        self.typed(Request::CompareAndWrite {
            lba,
            compare: compare.to_vec(),
            write: new.to_vec(),
        })
        .map(drop)
    }

    /// SYNCHRONIZE CACHE of the whole medium.
    pub fn sync(&self) -> Result<(), CommandFailure> {
        self.typed(Request::SynchronizeCache).map(drop)
    }

    /// Turn the write cache on or off the way an initiator does: MODE
    /// SENSE of the caching page, then MODE SELECT of it with WCE changed.
    /// With the cache off, every write reaches the device with FUA.
    pub fn set_write_cache(&self, on: bool) -> Result<(), CommandFailure> {
        let sense = self.typed(Request::Raw {
            cdb: cdb::mode_sense_caching(),
            data_out: Vec::new(),
            data_in_len: 64,
        })?;
        let mut list = sense.data;
        let name = format!("MODE SELECT(10) of the caching page, WCE {}", u8::from(on));
        // Header (8 bytes, no block descriptors) and the caching page.
        let page_len = list.get(9).map_or(0, |&l| usize::from(l) + 2);
        if list.len() < 8 + page_len || page_len < 3 {
            return Err(CommandFailure::Ring {
                command: name,
                reason: format!("MODE SENSE gave a short caching page: {list:02x?}"),
            });
        }
        list.truncate(8 + page_len);
        // MODE DATA LENGTH is reserved in MODE SELECT, and so is PS.
        list[0] = 0;
        list[1] = 0;
        list[8] &= 0x7F;
        if on {
            list[10] |= 0x04;
        } else {
            list[10] &= !0x04;
        }
        let outcome = self.run(Request::Raw {
            cdb: cdb::mode_select10(list.len() as u16),
            data_out: list,
            data_in_len: 0,
        })?;
        if outcome.is_good() {
            Ok(())
        } else {
            Err(CommandFailure::Status {
                command: name,
                outcome,
            })
        }
    }

    /// GET LBA STATUS of the block at `lba`: `Some(true)` mapped,
    /// `Some(false)` deallocated, `None` any other provisioning status.
    pub fn is_mapped(&self, lba: u64) -> Result<Option<bool>, CommandFailure> {
        let outcome = self.typed(Request::Raw {
            cdb: cdb::get_lba_status(lba),
            data_out: Vec::new(),
            data_in_len: 24,
        })?;
        let d = &outcome.data;
        let starts = d
            .get(8..16)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let blocks = d
            .get(16..20)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        match (starts, blocks, d.get(20)) {
            (Some(start), Some(blocks), Some(status)) if start == lba && blocks > 0 => {
                Ok(match status & 0x0F {
                    0 => Some(true),
                    1 => Some(false),
                    _ => None,
                })
            }
            _ => Err(CommandFailure::Status {
                command: format!("GET LBA STATUS LBA {lba}"),
                outcome,
            }),
        }
    }

    /// Stop serving: wait for the serving loop to end and report an error
    /// of it or a broken ring.
    pub fn shutdown(self) -> Result<(), CommandFailure> {
        let failure = |reason: String| CommandFailure::Ring {
            command: "shutdown".into(),
            reason,
        };
        if let Some(broken) = self.lock().sim.broken() {
            return Err(failure(format!("the ring is broken: {broken}")));
        }
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(server) = server else {
            return Err(failure("the serving loop had stopped".into()));
        };
        let _ = (&self.stop).write_all(&[1]);
        match server.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failure(format!("the serving loop failed: {e}"))),
            Err(_) => Err(failure("the serving loop panicked".into())),
        }
    }

    /// Run `request`; GOOD or an error. A pending capacity change (after
    /// [`resize`](Self::resize)) is reported once and retried.
    fn typed(&self, request: Request) -> Result<Outcome, CommandFailure> {
        let name = request.describe(self.block_size);
        let mut outcome = self.run(request.clone())?;
        if outcome.is_check(
            SenseKey::UnitAttention,
            AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
        ) {
            outcome = self.run(request)?;
        }
        if outcome.is_good() {
            Ok(outcome)
        } else {
            Err(CommandFailure::Status {
                command: name,
                outcome,
            })
        }
    }

    /// Why commands will not complete, if the ring broke or serving ended.
    fn check_serving(&self, kernel: &Kernel, name: &str) -> Option<CommandFailure> {
        let failure = |reason: String| CommandFailure::Ring {
            command: name.to_owned(),
            reason,
        };
        if let Some(broken) = kernel.sim.broken() {
            return Some(failure(format!(
                "the simulated kernel found the ring broken: {broken}"
            )));
        }
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if server.as_ref().is_none_or(|s| s.is_finished()) {
            let reason = match server.take().map(JoinHandle::join) {
                Some(Ok(Ok(()))) | None => "the serving loop has stopped".to_owned(),
                Some(Ok(Err(e))) => format!("the serving loop failed: {e}"),
                Some(Err(_)) => "the serving loop panicked".to_owned(),
            };
            return Some(failure(reason));
        }
        None
    }

    fn lock(&self) -> MutexGuard<'_, Kernel> {
        // A panic elsewhere leaves the bookkeeping consistent enough to report.
        self.kernel.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// TEST UNIT READY, READ CAPACITY(16) and MODE SENSE of the caching
    /// page, for the conformance check.
    pub(super) fn probe(&self) -> Result<Probe, CommandFailure> {
        let tur = self.command(&cdb::TEST_UNIT_READY, &[], 0)?;
        let capacity = self.typed(Request::Raw {
            cdb: cdb::read_capacity16(),
            data_out: Vec::new(),
            data_in_len: 32,
        })?;
        let caching = self.typed(Request::Raw {
            cdb: cdb::mode_sense_caching(),
            data_out: Vec::new(),
            data_in_len: 64,
        })?;
        let c = &capacity.data;
        let short = |what: &str| CommandFailure::Status {
            command: what.to_owned(),
            outcome: capacity.clone(),
        };
        if c.len() < 16 {
            return Err(short("READ CAPACITY(16)"));
        }
        let last = u64::from_be_bytes(c[0..8].try_into().expect("8 bytes"));
        let block_size = u32::from_be_bytes(c[8..12].try_into().expect("4 bytes"));
        // Mode parameter header (8 bytes), then the caching page: WCE is
        // bit 2 of its third byte.
        let wce = caching.data.get(8 + 2).map(|b| b & 0x04 != 0);
        Ok(Probe {
            ready: tur,
            blocks: last.wrapping_add(1),
            block_size,
            lbpme: c[14] & 0x80 != 0,
            lbprz: c[14] & 0x40 != 0,
            wce,
        })
    }
}

/// What [`TestLun::probe`] found.
pub(super) struct Probe {
    pub(super) ready: Outcome,
    pub(super) blocks: u64,
    pub(super) block_size: u32,
    pub(super) lbpme: bool,
    pub(super) lbprz: bool,
    pub(super) wce: Option<bool>,
}

impl Drop for TestLun {
    fn drop(&mut self) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            let _ = (&self.stop).write_all(&[1]);
            // Bounded: the serving loop waits at most its drain timeout.
            let _ = server.join();
        }
    }
}

fn outcome_of(c: SimCompletion, name: &str) -> Result<Outcome, CommandFailure> {
    let Some(status) = ScsiStatus::from_u8(c.status) else {
        return Err(CommandFailure::Ring {
            command: name.to_owned(),
            reason: format!("completed with the undefined status {:#04x}", c.status),
        });
    };
    let sense = if status == ScsiStatus::CheckCondition {
        Sense::parse(&c.sense)
    } else {
        None
    };
    Ok(Outcome {
        status,
        sense,
        data: c.data_in,
    })
}
