//! The command ring: walk the entries the kernel publishes, hand out
//! commands, write completions (also out of order) and move `cmd_tail`.
//!
//! Nothing read from the shared area is trusted. Values are copied out, then
//! validated. A command entry whose CDB or data buffer is malformed is
//! completed at once with CHECK CONDITION and never reaches the handler. An
//! entry whose *length* is malformed leaves no way to find the next entry:
//! the ring reports [`RingError::Corrupt`] and stops, and every later call
//! returns the same error (the device must be reset from configfs).

use std::collections::VecDeque;
use std::sync::Arc;

use scsi_sense_codes::{AdditionalSense, ScsiStatus, Sense, SenseKey};
use tcmu_sys::{
    TCMU_MAILBOX_FLAG_CAP_OOOC, TCMU_MAILBOX_FLAG_CAP_READ_LEN, TCMU_MAILBOX_VERSION, TCMU_OP_CMD,
    TCMU_OP_PAD, TCMU_OP_TMR, TCMU_SENSE_BUFFERSIZE, TCMU_UFLAG_READ_LEN, TCMU_UFLAG_UNKNOWN_OP,
    tcmu_hdr_get_len, tcmu_hdr_get_op,
};

use crate::bitmap::BitSet;
use crate::dropped::{DroppedCommands, UnansweredNotice};
use crate::layout::*;
use crate::mem::{DataSegments, OutOfBounds, Region, SharedMap};

/// Why the ring cannot be used any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The mailbox has a layout version this crate does not know.
    #[error("unsupported mailbox version {0} (expected {TCMU_MAILBOX_VERSION})")]
    Version(u16),
    /// The mailbox describes a ring that does not fit the shared area.
    #[error("invalid ring geometry: {0}")]
    Geometry(String),
    /// An entry of the ring cannot be valid (bad length, opcode or iovecs).
    #[error("the command ring is corrupt: {0}")]
    Corrupt(String),
    /// A read or write would leave the shared area.
    #[error(transparent)]
    OutOfBounds(#[from] OutOfBounds),
}

/// The outcome of a command, written into the ring on completion.
#[derive(Clone)]
pub struct Reply {
    /// The SCSI status.
    pub status: ScsiStatus,
    /// Number of data-in bytes produced, when fewer than the buffer holds
    /// (reported as a residual; the rest of the buffer is never leaked).
    pub data_in_len: Option<usize>,
    sense: [u8; TCMU_SENSE_BUFFERSIZE],
    sense_len: u8,
}

impl Reply {
    /// Status GOOD, the whole data buffer valid.
    pub fn good() -> Self {
        Reply::status(ScsiStatus::Good)
    }

    /// Any status without sense data.
    pub fn status(status: ScsiStatus) -> Self {
        Reply {
            status,
            data_in_len: None,
            sense: [0; TCMU_SENSE_BUFFERSIZE],
            sense_len: 0,
        }
    }

    /// A status with sense data (truncated to the ring's 96-byte buffer).
    pub fn with_sense(status: ScsiStatus, sense: &[u8]) -> Self {
        let mut r = Reply::status(status);
        let n = sense.len().min(TCMU_SENSE_BUFFERSIZE);
        r.sense[..n].copy_from_slice(&sense[..n]);
        r.sense_len = n as u8;
        r
    }

    /// CHECK CONDITION with fixed-format sense for `sense`.
    pub fn check_condition(sense: &Sense) -> Self {
        Reply::with_sense(ScsiStatus::CheckCondition, sense.to_fixed().as_bytes())
    }

    /// The sense bytes.
    pub fn sense(&self) -> &[u8] {
        &self.sense[..self.sense_len as usize]
    }
}

/// A SCSI command taken from the ring. Complete it exactly once with
/// [`Ring::complete`]; its data buffer stays valid until then. A command
/// dropped without completion is failed by the ring the next time it is
/// used (HARDWARE ERROR, logged), never left holding the ring.
pub struct Command {
    id: u16,
    cdb: Cdb,
    data: DataSegments,
    /// Only bidirectional commands (rare) have a separate data-in buffer.
    bidi_in: Option<Box<DataSegments>>,
    unanswered: UnansweredNotice,
}

/// CDB bytes: inline up to 16 bytes (every fixed-length CDB), on the heap
/// beyond (variable-length CDBs, which are rare).
enum Cdb {
    Inline { bytes: [u8; INLINE_CDB], len: u8 },
    Long(Box<[u8]>),
}

const INLINE_CDB: usize = 16;

impl Cdb {
    fn as_slice(&self) -> &[u8] {
        match self {
            Cdb::Inline { bytes, len } => &bytes[..*len as usize],
            Cdb::Long(b) => b,
        }
    }
}

impl Command {
    /// The kernel's command id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The CDB bytes.
    pub fn cdb(&self) -> &[u8] {
        self.cdb.as_slice()
    }

    /// The data buffer (data-out for writes, to be filled for reads).
    pub fn data(&self) -> &DataSegments {
        &self.data
    }

    /// The CDB and the writable data buffer at once.
    pub fn cdb_and_data(&mut self) -> (&[u8], &mut DataSegments) {
        (self.cdb.as_slice(), &mut self.data)
    }

    /// The data-in part of a bidirectional command.
    pub fn bidi_in(&mut self) -> Option<&mut DataSegments> {
        self.bidi_in.as_deref_mut()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("id", &self.id)
            .field("cdb", &self.cdb())
            .field("data_len", &self.data.total_len())
            .finish()
    }
}

/// A task-management notification (only with `attrib/tmr_notification`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagement {
    /// One of the `TCMU_TMR_*` types.
    pub kind: u8,
    /// The in-flight commands it affects (they must still be completed).
    pub cmd_ids: Vec<u16>,
}

/// What the ring hands out.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // boxing the command would allocate per command
pub enum RingEntry {
    /// A SCSI command, to be completed.
    Command(Command),
    /// A task management notification; nothing to complete.
    TaskManagement(TaskManagement),
}

/// A parsed entry that `cmd_tail` has not passed yet.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// PAD, TMR or unknown: passed as soon as it reaches the tail.
    Skip { len: u32 },
    /// A command entry; `done` once its response is written (in-order mode).
    Cmd {
        off: u32,
        len: u32,
        id: u16,
        done: bool,
    },
}

/// `a + b` modulo `size`, for `a < size` and `b <= size` (no division).
fn ring_add(a: u32, b: u32, size: u32) -> u32 {
    let sum = a as u64 + b as u64;
    if sum >= size as u64 {
        (sum - size as u64) as u32
    } else {
        sum as u32
    }
}

/// The command ring of one TCMU device.
pub struct Ring {
    map: Arc<SharedMap>,
    cmdr_off: u64,
    cmdr_size: u32,
    data_start: u64,
    flags: u16,
    /// Where the next unparsed entry starts (ring offset).
    next: u32,
    /// Our `cmd_tail` (ring offset).
    tail: u32,
    slots: VecDeque<Slot>,
    in_flight: BitSet,
    notify: bool,
    broken: Option<RingError>,
    /// Emptied region lists of completed commands, reused so that a data
    /// command costs no allocation.
    region_pool: Vec<Vec<Region>>,
    /// Commands handed out and dropped without a reply.
    dropped: Arc<DroppedCommands>,
}

/// How many emptied region lists the ring keeps for reuse, and the largest
/// one it keeps (a huge list from a strange entry is freed instead).
const REGION_POOL: usize = 256;
const REGION_POOL_MAX_CAPACITY: usize = 64;

impl Ring {
    /// Attach to the shared area: check the mailbox and start at its
    /// `cmd_tail` (a fresh or freshly reset ring has head = tail = 0).
    pub fn new(map: Arc<SharedMap>) -> Result<Ring, RingError> {
        let version = map.read_u16(MB_VERSION)?;
        if version != TCMU_MAILBOX_VERSION {
            return Err(RingError::Version(version));
        }
        let flags = map.read_u16(MB_FLAGS)?;
        let cmdr_off = map.read_u32(MB_CMDR_OFF)? as u64;
        let cmdr_size = map.read_u32(MB_CMDR_SIZE)?;
        let map_len = map.len() as u64;
        let geometry = |what: &str| {
            Err(RingError::Geometry(format!(
                "{what} (cmdr_off {cmdr_off:#x}, cmdr_size {cmdr_size:#x}, map {map_len:#x})"
            )))
        };
        if cmdr_off < MAILBOX_SIZE || cmdr_off % 8 != 0 {
            return geometry("the ring overlaps the mailbox or is misaligned");
        }
        if (cmdr_size as u64) < CMD_ENTRY_SIZE || cmdr_size % 8 != 0 {
            return geometry("the ring is too small or its size is not a multiple of 8");
        }
        let data_start = cmdr_off + cmdr_size as u64;
        if data_start > map_len {
            return geometry("the ring extends past the end of the map");
        }
        let tail = map.load_u32_acquire(MB_CMD_TAIL)?;
        if tail % 8 != 0 || tail >= cmdr_size {
            return geometry("cmd_tail is outside the ring or misaligned");
        }
        Ok(Ring {
            map,
            cmdr_off,
            cmdr_size,
            data_start,
            flags,
            next: tail,
            tail,
            slots: VecDeque::new(),
            in_flight: BitSet::new(1 << 16),
            notify: false,
            broken: None,
            region_pool: Vec::new(),
            dropped: Arc::default(),
        })
    }

    /// The mailbox capability flags (`TCMU_MAILBOX_FLAG_CAP_*`).
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// The shared area this ring lives in.
    pub fn map(&self) -> &Arc<SharedMap> {
        &self.map
    }

    /// Number of commands handed out and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Cmd { done: false, .. }))
            .count()
    }

    /// Whether `cmd_tail` moved since the last call: the caller then tells
    /// the kernel once for the whole batch.
    pub fn take_notify(&mut self) -> bool {
        std::mem::take(&mut self.notify)
    }

    fn corrupt(&mut self, reason: String) -> RingError {
        let e = RingError::Corrupt(reason);
        self.broken = Some(e.clone());
        e
    }

    /// The next entry the kernel has published, or `None` when the ring is
    /// empty. Malformed commands are failed here and skipped.
    pub fn next_entry(&mut self) -> Result<Option<RingEntry>, RingError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        self.answer_dropped()?;
        loop {
            let head = self.map.load_u32_acquire(MB_CMD_HEAD)?;
            if head % 8 != 0 || head >= self.cmdr_size {
                return Err(self.corrupt(format!("cmd_head {head:#x} is outside the ring")));
            }
            if self.next == head {
                return Ok(None);
            }
            let off = self.next;
            let abs = self.cmdr_off + off as u64;
            let len_op = self.map.read_u32(abs + HDR_LEN_OP)?;
            let (len, op) = (tcmu_hdr_get_len(len_op), tcmu_hdr_get_op(len_op));
            // Bytes from our position to the head (head != off here).
            let published = if head > off {
                head - off
            } else {
                head + (self.cmdr_size - off)
            };
            if len == 0 || len > published || off as u64 + len as u64 > self.cmdr_size as u64 {
                return Err(self.corrupt(format!(
                    "entry at {off:#x} has length {len:#x} ({published:#x} bytes published)"
                )));
            }
            self.next = ring_add(off, len, self.cmdr_size);
            match op {
                TCMU_OP_CMD => {
                    if (len as u64) < CMD_ENTRY_SIZE {
                        return Err(self.corrupt(format!(
                            "command entry at {off:#x} is {len} bytes, shorter than a response"
                        )));
                    }
                    let id = self.map.read_u16(abs + HDR_CMD_ID)?;
                    if self.in_flight.get(id as usize) {
                        return Err(self.corrupt(format!("command id {id} is already in flight")));
                    }
                    self.in_flight.set(id as usize, true);
                    self.slots.push_back(Slot::Cmd {
                        off,
                        len,
                        id,
                        done: false,
                    });
                    match self.parse_command(id, abs, len) {
                        Ok(cmd) => return Ok(Some(RingEntry::Command(cmd))),
                        Err(reason) => {
                            log::warn!("failing malformed command {id}: {reason}");
                            let sense = Sense::new(
                                SenseKey::HardwareError,
                                AdditionalSense::INTERNAL_TARGET_FAILURE,
                            );
                            self.finish(id, &Reply::check_condition(&sense), None)?;
                        }
                    }
                }
                TCMU_OP_TMR => {
                    let tmr = self.parse_tmr(abs, len)?;
                    self.slots.push_back(Slot::Skip { len });
                    self.pass_completed()?;
                    return Ok(Some(RingEntry::TaskManagement(tmr)));
                }
                TCMU_OP_PAD => {
                    self.slots.push_back(Slot::Skip { len });
                    self.pass_completed()?;
                }
                _ => {
                    let uflags = self.map.read_u8(abs + HDR_UFLAGS)?;
                    self.map
                        .write_u8(abs + HDR_UFLAGS, uflags | TCMU_UFLAG_UNKNOWN_OP)?;
                    self.slots.push_back(Slot::Skip { len });
                    self.pass_completed()?;
                }
            }
        }
    }

    /// Copy a command entry out and validate it; `Err` names the problem.
    fn parse_command(&mut self, id: u16, abs: u64, len: u32) -> Result<Command, String> {
        let rd = |e: OutOfBounds| e.to_string();
        // The fixed part (header and request up to the iovecs) in one copy;
        // the caller checked that the entry is at least CMD_ENTRY_SIZE long.
        let fixed: [u8; REQ_IOV as usize] = self.map.read_array(abs).map_err(rd)?;
        let u32_at = |at: u64| u32::from_ne_bytes(field(&fixed, at)) as u64;
        let iov_cnt = u32_at(REQ_IOV_CNT);
        let bidi_cnt = u32_at(REQ_IOV_BIDI_CNT);
        let dif_cnt = u32_at(REQ_IOV_DIF_CNT);
        let cdb_off = u64::from_ne_bytes(field(&fixed, REQ_CDB_OFF));
        let total = iov_cnt + bidi_cnt + dif_cnt;
        if REQ_IOV + total * IOV_SIZE > len as u64 {
            return Err(format!("{total} iovecs do not fit in a {len}-byte entry"));
        }
        // Commands without data (TEST UNIT READY and the like) skip the
        // region handling altogether.
        let data = if iov_cnt == 0 {
            Vec::new()
        } else {
            self.read_regions(abs, 0, iov_cnt)?
        };
        let bidi = if bidi_cnt == 0 {
            Vec::new()
        } else {
            self.read_regions(abs, iov_cnt, bidi_cnt)?
        };

        // The CDB must lie inside the ring; its length follows from its
        // opcode, taken from the copied bytes.
        let ring_end = self.cmdr_off + self.cmdr_size as u64;
        if cdb_off < self.cmdr_off || cdb_off >= ring_end {
            return Err(format!("CDB offset {cdb_off:#x} is outside the ring"));
        }
        let avail = ring_end - cdb_off;
        let mut bytes = [0u8; INLINE_CDB];
        if avail >= INLINE_CDB as u64 {
            bytes = self.map.read_array(cdb_off).map_err(rd)?;
        } else {
            self.map
                .read_bytes(cdb_off, &mut bytes[..avail as usize])
                .map_err(rd)?;
        }
        let cdb_len = cdb_len(bytes[0], bytes[7]);
        if cdb_len as u64 > avail {
            return Err(format!(
                "{cdb_len}-byte CDB at {cdb_off:#x} runs past the ring"
            ));
        }
        let cdb = if cdb_len <= INLINE_CDB {
            Cdb::Inline {
                bytes,
                len: cdb_len as u8,
            }
        } else {
            let mut bytes = vec![0u8; cdb_len.min(MAX_CDB_LEN)];
            self.map.read_bytes(cdb_off, &mut bytes).map_err(rd)?;
            Cdb::Long(bytes.into_boxed_slice())
        };

        // Lending the pages is what keeps two commands' buffers apart.
        let data_seg = DataSegments::claim(&self.map, data, self.data_start)
            .map_err(|e| format!("data buffer: {e}"))?;
        let bidi_seg = if bidi.is_empty() {
            None
        } else {
            Some(Box::new(
                DataSegments::claim(&self.map, bidi, self.data_start)
                    .map_err(|e| format!("bidi buffer: {e}"))?,
            ))
        };
        Ok(Command {
            id,
            cdb,
            data: data_seg,
            bidi_in: bidi_seg,
            unanswered: UnansweredNotice::new(id, &self.dropped),
        })
    }

    /// Copy `count` iovecs out, from index `first`, into a list taken from
    /// the pool (the caller checked that they lie inside the entry).
    fn read_regions(&mut self, abs: u64, first: u64, count: u64) -> Result<Vec<Region>, String> {
        let mut list = self.region_pool.pop().unwrap_or_default();
        for i in first..first + count {
            let iov: [u8; IOV_SIZE as usize] = self
                .map
                .read_array(abs + REQ_IOV + i * IOV_SIZE)
                .map_err(|e| e.to_string())?;
            list.push(Region {
                offset: u64::from_ne_bytes(field(&iov, IOV_BASE)),
                len: u64::from_ne_bytes(field(&iov, IOV_LEN)),
            });
        }
        Ok(list)
    }

    /// Keep the emptied region list of a finished buffer for reuse.
    fn recycle(&mut self, segs: DataSegments) {
        let mut list = segs.into_regions();
        if (1..=REGION_POOL_MAX_CAPACITY).contains(&list.capacity())
            && self.region_pool.len() < REGION_POOL
        {
            list.clear();
            self.region_pool.push(list);
        }
    }

    fn parse_tmr(&mut self, abs: u64, len: u32) -> Result<TaskManagement, RingError> {
        let kind = self.map.read_u8(abs + TMR_TYPE)?;
        let count = self.map.read_u32(abs + TMR_CMD_CNT)? as u64;
        // Only the ids that fit in the entry are believed.
        let room = (len as u64).saturating_sub(TMR_CMD_IDS) / 2;
        let cmd_ids = (0..count.min(room))
            .map(|i| self.map.read_u16(abs + TMR_CMD_IDS + 2 * i))
            .collect::<Result<_, _>>()?;
        Ok(TaskManagement { kind, cmd_ids })
    }

    /// Complete a command: write its reply into the ring and move the tail
    /// as far as possible. The data buffer is released.
    ///
    /// A command is completed once: `complete` takes it by value, so
    /// completing it again does not compile:
    ///
    /// ```compile_fail
    /// # use tcmu_core::{Command, Reply, Ring};
    /// fn twice(ring: &mut Ring, cmd: Command) {
    ///     let _ = ring.complete(cmd, &Reply::good());
    ///     let _ = ring.complete(cmd, &Reply::good()); // use of moved `cmd`
    /// }
    /// ```
    ///
    /// and no slice of its data buffer outlives the completion, after
    /// which the kernel reuses those pages:
    ///
    /// ```compile_fail
    /// # use tcmu_core::{Command, Reply, Ring};
    /// fn stale(ring: &mut Ring, mut cmd: Command) {
    ///     let (_, data) = cmd.cdb_and_data();
    ///     let bytes = data.segment_mut(0);
    ///     let _ = ring.complete(cmd, &Reply::good()); // `cmd` is borrowed
    ///     bytes[0] = 1;
    /// }
    /// ```
    ///
    /// while the same code without the second completion or the late
    /// write compiles:
    ///
    /// ```
    /// # use tcmu_core::{Command, Reply, Ring};
    /// fn once(ring: &mut Ring, mut cmd: Command) {
    ///     let (_, data) = cmd.cdb_and_data();
    ///     if data.count() > 0 {
    ///         data.segment_mut(0)[0] = 1;
    ///     }
    ///     let _ = ring.complete(cmd, &Reply::good());
    /// }
    /// ```
    pub fn complete(&mut self, cmd: Command, reply: &Reply) -> Result<(), RingError> {
        let Command {
            id,
            mut data,
            bidi_in,
            unanswered,
            ..
        } = cmd;
        unanswered.answered();
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        self.answer_dropped()?;
        let mut reply_len = reply.data_in_len;
        if let Some(n) = reply_len {
            let total = data.total_len();
            if n as u64 >= total {
                reply_len = None;
            } else if self.flags & TCMU_MAILBOX_FLAG_CAP_READ_LEN == 0 {
                // The kernel would copy the whole buffer: do not leak old data.
                data.zero_after(n as u64);
                reply_len = None;
            }
        }
        if data.count() > 0 {
            self.recycle(data);
        }
        if let Some(b) = bidi_in {
            self.recycle(*b);
        }
        self.finish(id, reply, reply_len)
    }

    /// Fail the commands dropped without a reply since the last call.
    fn answer_dropped(&mut self) -> Result<(), RingError> {
        for id in self.dropped.take() {
            log::warn!("command {id} was dropped without a reply: failing it");
            let sense = Sense::new(
                SenseKey::HardwareError,
                AdditionalSense::INTERNAL_TARGET_FAILURE,
            );
            self.finish(id, &Reply::check_condition(&sense), None)?;
        }
        Ok(())
    }

    /// Write the reply for command `id` (with `read_len` as its data-in
    /// length) and pass every completed entry.
    fn finish(&mut self, id: u16, reply: &Reply, read_len: Option<usize>) -> Result<(), RingError> {
        if !self.in_flight.get(id as usize) {
            return Err(self.corrupt(format!(
                "completion for command {id}, which is not in flight"
            )));
        }
        self.in_flight.set(id as usize, false);
        let ooo = self.flags & TCMU_MAILBOX_FLAG_CAP_OOOC != 0;
        // Out of order: the reply goes into the oldest command slot, which
        // then carries this id. In order: into the command's own slot.
        let fits = |s: &Slot| match s {
            Slot::Cmd {
                done: false,
                id: sid,
                ..
            } => ooo || *sid == id,
            _ => false,
        };
        // The front slot is never done or skippable (they are passed at
        // once), so it is the one out of order, and usually in order too.
        let index = match self.slots.front() {
            Some(front) if fits(front) => Some(0),
            _ => self.slots.iter().position(fits),
        };
        let slot = index.and_then(|i| self.slots.get_mut(i));
        let Some(Slot::Cmd { off, done, .. }) = slot else {
            return Err(self.corrupt(format!("no ring slot for command {id}")));
        };
        *done = true;
        let abs = self.cmdr_off + *off as u64;
        self.write_reply(abs, id, reply, read_len)?;
        self.pass_completed()
    }

    fn write_reply(
        &self,
        abs: u64,
        id: u16,
        reply: &Reply,
        data_in_len: Option<usize>,
    ) -> Result<(), RingError> {
        let m = &self.map;
        m.write_u16(abs + HDR_CMD_ID, id)?;
        let mut uflags = 0;
        let mut read_len = 0;
        if let Some(n) = data_in_len {
            uflags |= TCMU_UFLAG_READ_LEN;
            read_len = n as u32;
        }
        m.write_u8(abs + HDR_UFLAGS, uflags)?;
        m.write_u8(abs + RSP_SCSI_STATUS, reply.status.as_u8())?;
        m.write_u32(abs + RSP_READ_LEN, read_len)?;
        // The kernel reads the sense buffer only with CHECK CONDITION.
        if reply.sense_len > 0 {
            m.write_bytes(abs + RSP_SENSE, &reply.sense)?;
        }
        Ok(())
    }

    /// Move the tail over the leading slots that are done or skippable.
    fn pass_completed(&mut self) -> Result<(), RingError> {
        let start = self.tail;
        while let Some(slot) = self.slots.front() {
            let len = match *slot {
                Slot::Skip { len } => len,
                Slot::Cmd {
                    len, done: true, ..
                } => len,
                Slot::Cmd { done: false, .. } => break,
            };
            self.tail = ring_add(self.tail, len, self.cmdr_size);
            self.slots.pop_front();
        }
        if self.tail != start {
            self.map.store_u32_release(MB_CMD_TAIL, self.tail)?;
            self.notify = true;
        }
        Ok(())
    }
}

/// The `N` bytes at offset `at` of a copied-out entry part.
fn field<const N: usize>(bytes: &[u8], at: u64) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at as usize..at as usize + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_offsets_wrap_without_division() {
        assert_eq!(ring_add(0, 8, 64), 8);
        assert_eq!(ring_add(56, 8, 64), 0);
        assert_eq!(ring_add(56, 16, 64), 8);
        assert_eq!(ring_add(u32::MAX - 8, u32::MAX, u32::MAX), u32::MAX - 8);
    }
}
