//! An in-process simulated kernel: it lays out the same shared area as
//! `target_core_user` in ordinary memory, publishes command entries with
//! their data (PAD at the wrap), and reaps completions, checking each one
//! the way the kernel does (an unknown or repeated command id breaks the
//! ring). Tests, fuzzing and benchmarks drive a [`Ring`](crate::Ring) with it.

use std::sync::Arc;

use tcmu_sys::{
    TCMU_MAILBOX_FLAG_CAP_OOOC, TCMU_MAILBOX_FLAG_CAP_READ_LEN, TCMU_MAILBOX_FLAG_CAP_TMR,
    TCMU_MAILBOX_VERSION, TCMU_OP_CMD, TCMU_OP_PAD, TCMU_OP_TMR, TCMU_SENSE_BUFFERSIZE,
    TCMU_UFLAG_READ_LEN, TCMU_UFLAG_UNKNOWN_OP, tcmu_hdr_get_len, tcmu_hdr_get_op,
    tcmu_hdr_set_len, tcmu_hdr_set_op,
};

use crate::bitmap::BitSet;
use crate::layout::*;
use crate::mem::{AccessError, SharedMap};

/// Shape of the simulated shared area.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Size of the command ring in bytes (multiple of 8).
    pub cmdr_size: u32,
    /// Size of the data area in bytes.
    pub data_size: u64,
    /// Mailbox capability flags.
    pub flags: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            // Like the kernel: the ring ends where the data area's first page starts.
            cmdr_size: 64 * 1024 - MAILBOX_SIZE as u32,
            data_size: 4 << 20,
            flags: TCMU_MAILBOX_FLAG_CAP_OOOC
                | TCMU_MAILBOX_FLAG_CAP_READ_LEN
                | TCMU_MAILBOX_FLAG_CAP_TMR,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The command ring has no room for the entry.
    #[error("the command ring has no room for the entry")]
    RingFull,
    /// The data area has no room for the buffer.
    #[error("the data area has no room for the buffer")]
    DataFull,
    /// All command ids are in flight.
    #[error("no free command id")]
    NoId,
    /// The ring or a data page the entry needs is a buffer handed out: the
    /// ring was told a different layout (a corrupted mailbox).
    #[error("{0}")]
    Lent(#[from] AccessError),
}

/// A completion the simulated kernel collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCompletion {
    /// The command's id.
    pub id: u16,
    /// The SCSI status.
    pub status: u8,
    /// The response's whole sense buffer (`TCMU_SENSE_BUFFERSIZE` bytes).
    pub sense: Vec<u8>,
    /// `Some` when the handler set READ_LEN.
    pub read_len: Option<u32>,
    /// The data-in bytes the initiator receives (honouring READ_LEN).
    pub data_in: Vec<u8>,
}

struct InFlight {
    /// (offset, len) of each data segment.
    segments: Vec<(u64, u64)>,
    data_in: bool,
}

/// The simulated kernel side of one device.
pub struct SimKernel {
    map: Arc<SharedMap>,
    cmdr_off: u64,
    cmdr_size: u32,
    data_start: u64,
    head: u32,
    /// Where the kernel's own walk of completed entries stands.
    cleaned: u32,
    /// Commands in flight, indexed by id.
    in_flight: Vec<Option<InFlight>>,
    in_flight_count: usize,
    next_id: u16,
    /// Free data pages, one bit each (set = free), lowest first.
    free_pages: BitSet,
    free_count: u64,
    /// Emptied segment lists of reaped commands, reused.
    segment_pool: Vec<Vec<(u64, u64)>>,
    broken: Option<String>,
    /// Largest segment the simulated kernel uses (it splits buffers).
    pub segment_size: u64,
}

impl SimKernel {
    /// A fresh shared area with an empty ring.
    pub fn new(config: SimConfig) -> SimKernel {
        let cmdr_off = MAILBOX_SIZE;
        let data_start = (cmdr_off + config.cmdr_size as u64).next_multiple_of(DATA_PAGE);
        let map = Arc::new(SharedMap::anonymous(
            (data_start + config.data_size) as usize,
        ));
        let init = || -> Result<(), crate::mem::OutOfBounds> {
            map.write_u16(MB_VERSION, TCMU_MAILBOX_VERSION)?;
            map.write_u16(MB_FLAGS, config.flags)?;
            map.write_u32(MB_CMDR_OFF, cmdr_off as u32)?;
            map.write_u32(MB_CMDR_SIZE, config.cmdr_size)
        };
        init().expect("the mailbox fits in the simulated map");
        SimKernel {
            map,
            cmdr_off,
            cmdr_size: config.cmdr_size,
            data_start,
            head: 0,
            cleaned: 0,
            in_flight: (0..=u16::MAX).map(|_| None).collect(),
            in_flight_count: 0,
            next_id: 1,
            free_pages: BitSet::full((config.data_size / DATA_PAGE) as usize),
            free_count: config.data_size / DATA_PAGE,
            segment_pool: Vec::new(),
            broken: None,
            segment_size: 64 * 1024,
        }
    }

    /// The shared area, to attach a [`Ring`](crate::Ring) to.
    pub fn map(&self) -> Arc<SharedMap> {
        self.map.clone()
    }

    /// Why the simulated kernel considers the ring broken, if it does.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Number of commands published and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight_count
    }

    fn ring_free(&self) -> u32 {
        // One 8-byte gap keeps a full ring distinguishable from an empty one:
        // (cleaned - head - 8) modulo the ring size, without a division.
        let size = self.cmdr_size as u64;
        let x = self.cleaned as u64 + size - self.head as u64;
        let x = if x >= size { x - size } else { x };
        (if x >= 8 { x - 8 } else { x + size - 8 }) as u32
    }

    /// The lowest free pages for `len` bytes, merged into segments.
    fn alloc_pages(&mut self, len: u64) -> Result<Vec<(u64, u64)>, SimError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let pages = len.div_ceil(DATA_PAGE);
        if pages > self.free_count {
            return Err(SimError::DataFull);
        }
        self.free_count -= pages;
        let mut segments = self.segment_pool.pop().unwrap_or_default();
        let mut left = len;
        let mut word = 0;
        while left > 0 {
            // There are enough free pages, so one is always found.
            let Some(page) = self.free_pages.take_first(&mut word) else {
                break;
            };
            let n = left.min(DATA_PAGE);
            let off = self.data_start + page as u64 * DATA_PAGE;
            // Merge with the previous segment when contiguous, up to segment_size.
            match segments.last_mut() {
                Some((o, l))
                    if *o + *l == off && *l + n <= self.segment_size && *l % DATA_PAGE == 0 =>
                {
                    *l += n
                }
                _ => segments.push((off, n)),
            }
            left -= n;
        }
        Ok(segments)
    }

    fn free_segments(&mut self, segments: &[(u64, u64)]) {
        for &(off, len) in segments {
            let first = (off - self.data_start) / DATA_PAGE;
            let count = len.div_ceil(DATA_PAGE);
            self.free_pages
                .set_range(first as usize..(first + count) as usize, true);
            self.free_count += count;
        }
    }

    /// Free a reaped command's pages and keep its segment list for reuse.
    fn release(&mut self, mut segments: Vec<(u64, u64)>) {
        self.free_segments(&segments);
        if segments.capacity() > 0 && self.segment_pool.len() < 256 {
            segments.clear();
            self.segment_pool.push(segments);
        }
    }

    fn fresh_id(&mut self) -> Result<u16, SimError> {
        for _ in 0..=u16::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if self.in_flight[id as usize].is_none() {
                return Ok(id);
            }
        }
        Err(SimError::NoId)
    }

    /// Reserve `len` contiguous ring bytes, padding to the end first when
    /// the entry would cross it; returns the entry's ring offset.
    fn reserve(&mut self, len: u32) -> Result<u32, SimError> {
        let to_end = self.cmdr_size - self.head;
        let need = if len > to_end { to_end + len } else { len };
        if need > self.ring_free() {
            return Err(SimError::RingFull);
        }
        if len > to_end {
            let abs = self.cmdr_off + self.head as u64;
            let pad = tcmu_hdr_set_len(tcmu_hdr_set_op(0, TCMU_OP_PAD), to_end);
            self.map.write_u32(abs + HDR_LEN_OP, pad).expect("in ring");
            self.head = 0;
        }
        Ok(self.head)
    }

    fn publish(&mut self, off: u32, len: u32) {
        // The entry ends at or before the end of the ring.
        self.head = if off + len == self.cmdr_size {
            0
        } else {
            off + len
        };
        self.map
            .store_u32_release(MB_CMD_HEAD, self.head)
            .expect("in mailbox");
    }

    /// Publish a command with `cdb`; `data_out` is copied into its buffer,
    /// or, when `data_in_len > 0`, a buffer of that size is given for the
    /// handler to fill (its old contents are garbage, as in the kernel).
    pub fn submit(
        &mut self,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: usize,
    ) -> Result<u16, SimError> {
        let data_in = data_out.is_empty() && data_in_len > 0;
        let buf_len = if data_in { data_in_len } else { data_out.len() } as u64;
        let segments = self.alloc_pages(buf_len)?;
        let map = self.map.clone();
        let ring = (self.cmdr_off, self.cmdr_size as u64);
        let _held = match map.unlent(std::iter::once(ring).chain(segments.iter().copied())) {
            Ok(held) => held,
            Err(e) => {
                self.free_segments(&segments);
                return Err(e.into());
            }
        };
        let entry_len = (REQ_IOV + segments.len() as u64 * IOV_SIZE + cdb.len() as u64)
            .next_multiple_of(8)
            .max(CMD_ENTRY_SIZE);
        let off = match self.reserve(entry_len as u32) {
            Ok(off) => off,
            Err(e) => {
                self.free_segments(&segments);
                return Err(e);
            }
        };
        let id = match self.fresh_id() {
            Ok(id) => id,
            Err(e) => {
                self.free_segments(&segments);
                return Err(e);
            }
        };
        let abs = self.cmdr_off + off as u64;
        let cdb_off = abs + REQ_IOV + segments.len() as u64 * IOV_SIZE;
        let m = &self.map;
        let write = || -> Result<(), crate::mem::OutOfBounds> {
            m.write_u32(
                abs + HDR_LEN_OP,
                tcmu_hdr_set_len(tcmu_hdr_set_op(0, TCMU_OP_CMD), entry_len as u32),
            )?;
            m.write_u16(abs + HDR_CMD_ID, id)?;
            m.write_u8(abs + HDR_KFLAGS, 0)?;
            m.write_u8(abs + HDR_UFLAGS, 0)?;
            m.write_u32(abs + REQ_IOV_CNT, segments.len() as u32)?;
            m.write_u32(abs + REQ_IOV_BIDI_CNT, 0)?;
            m.write_u32(abs + REQ_IOV_DIF_CNT, 0)?;
            m.write_u64(abs + REQ_CDB_OFF, cdb_off)?;
            let mut pos = 0usize;
            for (i, &(seg_off, seg_len)) in segments.iter().enumerate() {
                let at = abs + REQ_IOV + i as u64 * IOV_SIZE;
                m.write_u64(at + IOV_BASE, seg_off)?;
                m.write_u64(at + IOV_LEN, seg_len)?;
                if !data_in {
                    m.write_bytes(seg_off, &data_out[pos..pos + seg_len as usize])?;
                }
                pos += seg_len as usize;
            }
            m.write_bytes(cdb_off, cdb)
        };
        write().expect("entry lies in the simulated map");
        self.in_flight[id as usize] = Some(InFlight { segments, data_in });
        self.in_flight_count += 1;
        self.publish(off, entry_len as u32);
        Ok(id)
    }

    /// Publish a task-management entry naming `cmd_ids`.
    pub fn submit_tmr(&mut self, kind: u8, cmd_ids: &[u16]) -> Result<(), SimError> {
        let len = (TMR_CMD_IDS + 2 * cmd_ids.len() as u64).next_multiple_of(8) as u32;
        let map = self.map.clone();
        let _held = map.unlent([(self.cmdr_off, self.cmdr_size as u64)])?;
        let off = self.reserve(len)?;
        let abs = self.cmdr_off + off as u64;
        let m = &self.map;
        let write = || -> Result<(), crate::mem::OutOfBounds> {
            m.write_u32(
                abs + HDR_LEN_OP,
                tcmu_hdr_set_len(tcmu_hdr_set_op(0, TCMU_OP_TMR), len),
            )?;
            m.write_u8(abs + TMR_TYPE, kind)?;
            m.write_u32(abs + TMR_CMD_CNT, cmd_ids.len() as u32)?;
            for (i, id) in cmd_ids.iter().enumerate() {
                m.write_u16(abs + TMR_CMD_IDS + 2 * i as u64, *id)?;
            }
            Ok(())
        };
        write().expect("entry lies in the simulated map");
        self.publish(off, len);
        Ok(())
    }

    /// Publish an entry of arbitrary bytes (its `len_op` is the first four
    /// bytes): fuzzing and malformed-entry tests. The bytes are placed at
    /// the head without padding; `head` advances by `advance` bytes.
    /// Nothing is written where a buffer is handed out (after a corrupted
    /// mailbox).
    pub fn submit_raw(&mut self, bytes: &[u8], advance: u32) -> Result<(), AccessError> {
        let abs = self.cmdr_off + self.head as u64;
        let room = (self.cmdr_size - self.head) as usize;
        let bytes = &bytes[..bytes.len().min(room)];
        let map = self.map.clone();
        let _held = map.unlent([(abs, bytes.len() as u64)])?;
        map.write_bytes(abs, bytes)?;
        self.head = (self.head + advance) % self.cmdr_size;
        map.store_u32_release(MB_CMD_HEAD, self.head)?;
        Ok(())
    }

    /// Overwrite bytes of the mailbox or ring the way a faulty kernel
    /// would (tests of malformed entries, fuzzing). Refused for bytes of a
    /// data buffer handed out, which nothing may touch while it lives.
    pub fn overwrite(&self, offset: u64, bytes: &[u8]) -> Result<(), AccessError> {
        self.map.write_unlent(offset, bytes)
    }

    /// Collect the completions user space made since the last call, walking
    /// from the last cleaned entry to `cmd_tail` as the kernel does.
    pub fn reap(&mut self) -> Vec<SimCompletion> {
        let mut done = Vec::new();
        self.reap_into(Some(&mut done));
        done
    }

    /// Like [`reap`](Self::reap), checking the completions the same way but
    /// only counting them (benchmarks).
    pub fn reap_count(&mut self) -> usize {
        self.reap_into(None)
    }

    fn reap_into(&mut self, mut out: Option<&mut Vec<SimCompletion>>) -> usize {
        let mut done = 0;
        if self.broken.is_some() {
            return 0;
        }
        let Ok(tail) = self.map.load_u32_acquire(MB_CMD_TAIL) else {
            self.broken = Some("cmd_tail unreadable".into());
            return done;
        };
        if tail % 8 != 0 || tail >= self.cmdr_size {
            self.broken = Some(format!("cmd_tail {tail:#x} outside the ring"));
            return done;
        }
        let map = self.map.clone();
        let Ok(held) = map.unlent([(self.cmdr_off, self.cmdr_size as u64)]) else {
            self.broken = Some("the ring lies in a data buffer handed out".into());
            return done;
        };
        while self.cleaned != tail {
            let abs = self.cmdr_off + self.cleaned as u64;
            let m = &map;
            let len_op = m.read_u32(abs + HDR_LEN_OP).unwrap_or(0);
            let len = tcmu_hdr_get_len(len_op);
            if len == 0 || self.cleaned + len > self.cmdr_size {
                self.broken = Some(format!("tail walk hit a bad entry at {:#x}", self.cleaned));
                return done;
            }
            if tcmu_hdr_get_op(len_op) == TCMU_OP_CMD {
                let id = m.read_u16(abs + HDR_CMD_ID).unwrap_or(0);
                let Some(cmd) = self.in_flight[id as usize].take() else {
                    self.broken = Some(format!(
                        "completion of command {id}, which is not in flight"
                    ));
                    return done;
                };
                done += 1;
                self.in_flight_count -= 1;
                let Some(out) = out.as_deref_mut() else {
                    self.release(cmd.segments);
                    self.cleaned = self.wrap(self.cleaned + len);
                    continue;
                };
                let uflags = m.read_u8(abs + HDR_UFLAGS).unwrap_or(0);
                let mut status = m.read_u8(abs + RSP_SCSI_STATUS).unwrap_or(0);
                if uflags & TCMU_UFLAG_UNKNOWN_OP != 0 {
                    status = 0x02;
                }
                let mut sense = vec![0u8; TCMU_SENSE_BUFFERSIZE];
                let _ = m.read_bytes(abs + RSP_SENSE, &mut sense);
                let read_len = (uflags & TCMU_UFLAG_READ_LEN != 0)
                    .then(|| m.read_u32(abs + RSP_READ_LEN).unwrap_or(0));
                let mut data_in = Vec::new();
                if cmd.data_in {
                    for &(off, seg_len) in &cmd.segments {
                        let start = data_in.len();
                        data_in.resize(start + seg_len as usize, 0);
                        if held.also(off, seg_len).is_ok() {
                            let _ = m.read_bytes(off, &mut data_in[start..]);
                        }
                    }
                    if let Some(n) = read_len {
                        data_in.truncate(n as usize);
                    }
                }
                self.release(cmd.segments);
                out.push(SimCompletion {
                    id,
                    status,
                    sense,
                    read_len,
                    data_in,
                });
            }
            self.cleaned = self.wrap(self.cleaned + len);
        }
        done
    }

    /// A ring offset up to the ring's end, wrapped (checked by the walk:
    /// `cleaned + len <= cmdr_size`).
    fn wrap(&self, off: u32) -> u32 {
        if off == self.cmdr_size { 0 } else { off }
    }

    /// The raw `uflags` of the entry at ring offset `off` (tests check the
    /// UNKNOWN_OP marking).
    pub fn entry_uflags(&self, off: u32) -> u8 {
        self.map
            .read_u8(self.cmdr_off + off as u64 + HDR_UFLAGS)
            .unwrap_or(0)
    }

    /// The current head (ring offset of the next entry the kernel writes).
    pub fn head(&self) -> u32 {
        self.head
    }

    /// Byte offset of the command ring in the map.
    pub fn cmdr_off(&self) -> u64 {
        self.cmdr_off
    }

    /// Byte offset of the data area in the map.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }
}

/// The simulated kernel's side of the notification channel: [`kick`]
/// plays the UIO event the kernel raises after publishing entries, and
/// the notifications user space sends are counted.
///
/// [`kick`]: SimDoorbell::kick
pub struct SimDoorbell {
    event_rx: std::os::unix::net::UnixStream,
    event_tx: std::os::unix::net::UnixStream,
    notified: std::sync::atomic::AtomicU64,
}

impl SimDoorbell {
    /// A doorbell with no pending event.
    pub fn new() -> std::io::Result<SimDoorbell> {
        let (event_rx, event_tx) = std::os::unix::net::UnixStream::pair()?;
        event_rx.set_nonblocking(true)?;
        Ok(SimDoorbell {
            event_rx,
            event_tx,
            notified: Default::default(),
        })
    }

    /// Raise the "entries published" event.
    pub fn kick(&self) {
        use std::io::Write;
        let _ = (&self.event_tx).write(&[1]);
    }

    /// How many times user space notified the kernel.
    pub fn notifications(&self) -> u64 {
        self.notified.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl crate::server::Doorbell for SimDoorbell {
    fn wait(
        &self,
        others: &[std::os::fd::BorrowedFd<'_>],
        timeout: Option<std::time::Duration>,
    ) -> std::io::Result<crate::uio::Wake> {
        use std::io::Read;
        use std::os::fd::AsFd;
        Ok(
            match crate::poll::wait_readable(self.event_rx.as_fd(), others, timeout)? {
                Some(0) => {
                    let mut sink = [0u8; 64];
                    while matches!((&self.event_rx).read(&mut sink), Ok(n) if n > 0) {}
                    crate::uio::Wake::Kernel
                }
                Some(i) => crate::uio::Wake::Other(i - 1),
                None => crate::uio::Wake::Timeout,
            },
        )
    }

    fn notify(&self) -> std::io::Result<()> {
        self.notified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
