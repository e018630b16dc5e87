//! RECEIVE COPY STATUS(LID1) (SPC-4, THIRD-PARTY COPY IN 84h/00h; RECEIVE
//! COPY RESULTS with COPY STATUS in SPC-3 6.18.2), and the statuses a
//! unit's copy manager holds for it.
//!
//! An EXTENDED COPY whose LIST ID USAGE is 00b or 10b is tracked under
//! its LIST IDENTIFIER from the moment its first segment starts: in
//! progress while it runs, then completed with or without errors. A list
//! refused by the checks before any segment runs holds nothing.
//!
//! The standards keep these statuses per I_T nexus; TCMU does not say
//! which initiator sent a command (nor when a nexus is lost), so one unit
//! keeps one set for all initiators. To keep a stale status from
//! answering an unrelated later query, a completed status is discarded
//! once the initiator has received it, when another EXTENDED COPY names
//! the same list identifier, and [`HOLD_COMPLETED_FOR`] after the copy
//! ended (the vendor-specific time SPC allows). At most [`MAX_HELD`]
//! statuses are held; a new one drops the oldest.
//!
//! Callers pass the current time in, so that tests need not wait.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use byteorder::{BigEndian, ByteOrder};

use crate::cdb::{Cdb, invalid_field, to_usize};
use crate::data_buffer::DataBuffer;
use crate::response::{ScsiResponse, send_data_in};

/// How many copy statuses a unit holds at most.
pub(crate) const MAX_HELD: usize = 16;
/// How long a completed status is held when nobody asks for it.
pub(crate) const HOLD_COMPLETED_FOR: Duration = Duration::from_secs(10);
/// The COPY STATUS parameter data: the 4-byte AVAILABLE DATA and 8 bytes.
pub(crate) const PARAMETER_DATA_LEN: usize = 12;

/// COPY MANAGER STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyState {
    InProgress,
    Completed,
    CompletedWithErrors,
}

impl CopyState {
    fn code(self) -> u8 {
        match self {
            CopyState::InProgress => 0x00,
            CopyState::Completed => 0x01,
            CopyState::CompletedWithErrors => 0x02,
        }
    }
}

/// What COPY STATUS reports about one EXTENDED COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyStatus {
    pub(crate) state: CopyState,
    /// Segments finished so far.
    pub(crate) segments_processed: u16,
    /// Bytes written to destinations so far.
    pub(crate) bytes_transferred: u64,
}

impl CopyStatus {
    /// The COPY STATUS parameter data. HDD is zero: no held data is ever
    /// kept, so none is discarded.
    pub(crate) fn parameter_data(&self) -> [u8; PARAMETER_DATA_LEN] {
        let mut b = [0u8; PARAMETER_DATA_LEN];
        BigEndian::write_u32(&mut b[0..4], (PARAMETER_DATA_LEN - 4) as u32);
        b[4] = self.state.code();
        BigEndian::write_u16(&mut b[5..7], self.segments_processed);
        let (units, count) = transfer_count(self.bytes_transferred);
        b[7] = units;
        BigEndian::write_u32(&mut b[8..12], count);
        b
    }
}

/// TRANSFER COUNT UNITS and TRANSFER COUNT for `bytes`: bytes (00h) while
/// they fit the 32-bit field, else the smallest power of 1024 that fits
/// (01h kibibytes, 02h mebibytes, ...), rounded down.
fn transfer_count(bytes: u64) -> (u8, u32) {
    let mut units = 0u8;
    let mut count = bytes;
    while count > u64::from(u32::MAX) {
        count >>= 10;
        units += 1;
    }
    (units, count as u32)
}

/// One held status. `generation` tells a copy's own entry from a later
/// one under the same list identifier.
#[derive(Debug)]
struct Held {
    list_id: u8,
    generation: u64,
    status: CopyStatus,
    completed_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Table {
    /// Oldest first.
    held: VecDeque<Held>,
    next_generation: u64,
}

impl Table {
    /// Drop the completed statuses held longer than the hold time.
    fn expire(&mut self, now: Instant) {
        self.held.retain(|h| {
            h.completed_at
                .is_none_or(|at| now.saturating_duration_since(at) < HOLD_COMPLETED_FOR)
        });
    }

    fn find(&mut self, list_id: u8, generation: u64) -> Option<&mut Held> {
        self.held
            .iter_mut()
            .find(|h| h.list_id == list_id && h.generation == generation)
    }
}

/// The copy statuses one unit holds, by list identifier.
#[derive(Debug, Default)]
pub(crate) struct CopyStatuses {
    table: Mutex<Table>,
}

impl CopyStatuses {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every change is a single step: never inconsistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Discard whatever is held for `list_id`: an EXTENDED COPY names it
    /// again, so the earlier copy's status can no longer be told apart.
    pub(crate) fn forget(&self, list_id: u8) {
        self.table().held.retain(|h| h.list_id != list_id);
    }

    /// Hold an in-progress status for `list_id`, replacing any earlier
    /// one; the copy reports through the returned handle.
    pub(crate) fn begin(&self, list_id: u8, now: Instant) -> CopyInProgress<'_> {
        let mut table = self.table();
        table.expire(now);
        table.held.retain(|h| h.list_id != list_id);
        while table.held.len() >= MAX_HELD {
            table.held.pop_front();
        }
        let generation = table.next_generation;
        table.next_generation += 1;
        table.held.push_back(Held {
            list_id,
            generation,
            status: CopyStatus {
                state: CopyState::InProgress,
                segments_processed: 0,
                bytes_transferred: 0,
            },
            completed_at: None,
        });
        CopyInProgress {
            statuses: self,
            list_id,
            generation,
        }
    }

    /// The status held for `list_id` and its generation, if any.
    fn status(&self, list_id: u8, now: Instant) -> Option<(CopyStatus, u64)> {
        let mut table = self.table();
        table.expire(now);
        table
            .held
            .iter()
            .find(|h| h.list_id == list_id)
            .map(|h| (h.status, h.generation))
    }

    /// The initiator received the status of `generation` in full: a
    /// completed one is not held any longer.
    fn delivered(&self, list_id: u8, generation: u64) {
        self.table().held.retain(|h| {
            !(h.list_id == list_id && h.generation == generation && h.completed_at.is_some())
        });
    }

    fn update(&self, list_id: u8, generation: u64, change: impl FnOnce(&mut Held)) {
        // Gone (dropped as the oldest, or replaced): nothing to update.
        if let Some(held) = self.table().find(list_id, generation) {
            change(held);
        }
    }
}

/// A running copy's entry in [`CopyStatuses`].
#[derive(Debug)]
pub(crate) struct CopyInProgress<'a> {
    statuses: &'a CopyStatuses,
    list_id: u8,
    generation: u64,
}

impl CopyInProgress<'_> {
    /// `bytes` more reached a destination.
    pub(crate) fn transferred(&self, bytes: u64) {
        self.statuses.update(self.list_id, self.generation, |held| {
            held.status.bytes_transferred = held.status.bytes_transferred.saturating_add(bytes);
        });
    }

    /// One more segment is done.
    pub(crate) fn segment_processed(&self) {
        self.statuses.update(self.list_id, self.generation, |held| {
            held.status.segments_processed = held.status.segments_processed.saturating_add(1);
        });
    }

    /// The copy ended, at `now`, without errors or with them.
    pub(crate) fn finish(self, without_errors: bool, now: Instant) {
        self.statuses.update(self.list_id, self.generation, |held| {
            held.status.state = if without_errors {
                CopyState::Completed
            } else {
                CopyState::CompletedWithErrors
            };
            held.completed_at = Some(now);
        });
    }
}

/// A decoded RECEIVE COPY STATUS(LID1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReceiveCopyStatus {
    list_id: u8,
    allocation_length: usize,
}

impl ReceiveCopyStatus {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Self {
        ReceiveCopyStatus {
            list_id: cdb.byte(2),
            allocation_length: to_usize(cdb.be32(10)),
        }
    }
}

/// Answer RECEIVE COPY STATUS(LID1) from `statuses` at `now`. A list
/// identifier with nothing held is an invalid LIST IDENTIFIER field. A
/// completed status stays held when the allocation length (or the buffer)
/// cut it short, so the initiator can ask again.
pub(crate) fn receive_copy_status(
    statuses: &CopyStatuses,
    cmd: &ReceiveCopyStatus,
    data: &mut dyn DataBuffer,
    now: Instant,
) -> ScsiResponse {
    let Some((status, generation)) = statuses.status(cmd.list_id, now) else {
        return invalid_field(2, 7).into();
    };
    let response = send_data_in(data, &status.parameter_data(), cmd.allocation_length);
    if response.data_in_len == Some(PARAMETER_DATA_LEN) {
        statuses.delivered(cmd.list_id, generation);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_invalid_field;

    fn receive(statuses: &CopyStatuses, list_id: u8, alloc: u32, now: Instant) -> ScsiResponse {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x84;
        cdb[2] = list_id;
        BigEndian::write_u32(&mut cdb[10..14], alloc);
        let cmd = ReceiveCopyStatus::decode(&Cdb::parse(&cdb).unwrap());
        receive_copy_status(statuses, &cmd, &mut vec![0u8; 64], now)
    }

    fn read(statuses: &CopyStatuses, list_id: u8, now: Instant) -> Option<[u8; 12]> {
        let mut buf = vec![0xEEu8; 64];
        let mut cdb = [0u8; 16];
        cdb[0] = 0x84;
        cdb[2] = list_id;
        cdb[13] = 64;
        let cmd = ReceiveCopyStatus::decode(&Cdb::parse(&cdb).unwrap());
        let resp = receive_copy_status(statuses, &cmd, &mut buf, now);
        (resp.status == scsi_sense_codes::ScsiStatus::Good).then(|| {
            assert_eq!(resp, ScsiResponse::data_in(12));
            buf[..12].try_into().unwrap()
        })
    }

    #[test]
    fn nothing_held_is_an_invalid_list_identifier() {
        let statuses = CopyStatuses::default();
        assert_invalid_field(&receive(&statuses, 1, 64, Instant::now()), 2, 7);
    }

    #[test]
    fn parameter_data_layout() {
        let status = CopyStatus {
            state: CopyState::CompletedWithErrors,
            segments_processed: 0x0102,
            bytes_transferred: 0x0304_0506,
        };
        assert_eq!(
            status.parameter_data(),
            [0, 0, 0, 8, 0x02, 0x01, 0x02, 0x00, 0x03, 0x04, 0x05, 0x06]
        );
    }

    #[test]
    fn transfer_counts_beyond_32_bits_go_to_larger_units() {
        assert_eq!(transfer_count(0), (0, 0));
        assert_eq!(transfer_count(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(transfer_count(1 << 32), (1, 1 << 22));
        assert_eq!(transfer_count((1 << 42) + 1023), (2, 1 << 22));
        assert_eq!(transfer_count(u64::MAX), (4, (1 << 24) - 1));
    }

    #[test]
    fn in_progress_then_completed_then_discarded_once_read() {
        let statuses = CopyStatuses::default();
        let t0 = Instant::now();
        let copy = statuses.begin(7, t0);
        assert_eq!(read(&statuses, 7, t0).unwrap()[4..8], [0x00, 0, 0, 0]);
        copy.transferred(512);
        copy.segment_processed();
        copy.transferred(1024);
        let data = read(&statuses, 7, t0).unwrap();
        assert_eq!(data[4..8], [0x00, 0, 1, 0x00], "in progress, one segment");
        assert_eq!(BigEndian::read_u32(&data[8..12]), 1536);
        // Reading an in-progress status does not discard it.
        copy.segment_processed();
        copy.finish(true, t0);
        let data = read(&statuses, 7, t0).unwrap();
        assert_eq!(data[..8], [0, 0, 0, 8, 0x01, 0, 2, 0x00]);
        assert_eq!(BigEndian::read_u32(&data[8..12]), 1536);
        // Returned: gone.
        assert_invalid_field(&receive(&statuses, 7, 64, t0), 2, 7);
        // Errors.
        statuses.begin(8, t0).finish(false, t0);
        assert_eq!(read(&statuses, 8, t0).unwrap()[4], 0x02);
    }

    #[test]
    fn a_truncated_answer_keeps_the_status() {
        let statuses = CopyStatuses::default();
        let t0 = Instant::now();
        statuses.begin(3, t0).finish(true, t0);
        assert_eq!(receive(&statuses, 3, 4, t0), ScsiResponse::data_in(4));
        assert_eq!(receive(&statuses, 3, 0, t0), ScsiResponse::data_in(0));
        assert_eq!(read(&statuses, 3, t0).unwrap()[4], 0x01);
        assert!(read(&statuses, 3, t0).is_none());
    }

    #[test]
    fn completed_statuses_expire_after_the_hold_time() {
        let statuses = CopyStatuses::default();
        let t0 = Instant::now();
        statuses.begin(1, t0).finish(true, t0);
        let running = statuses.begin(2, t0);
        let later = t0 + HOLD_COMPLETED_FOR;
        assert!(read(&statuses, 1, later - Duration::from_millis(1)).is_some());
        statuses.begin(1, t0).finish(true, t0);
        assert!(read(&statuses, 1, later).is_none(), "expired");
        // A copy still running never expires.
        assert!(read(&statuses, 2, later).is_some());
        running.finish(true, later);
        assert!(read(&statuses, 2, later + Duration::from_secs(9)).is_some());
    }

    #[test]
    fn a_new_copy_with_the_same_list_identifier_replaces_the_old() {
        let statuses = CopyStatuses::default();
        let t0 = Instant::now();
        let old = statuses.begin(5, t0);
        old.segment_processed();
        let new = statuses.begin(5, t0);
        // The old copy's reports no longer land anywhere.
        old.segment_processed();
        old.finish(false, t0);
        assert_eq!(read(&statuses, 5, t0).unwrap()[4..7], [0x00, 0, 0]);
        new.finish(true, t0);
        statuses.forget(5);
        assert!(read(&statuses, 5, t0).is_none());
    }

    #[test]
    fn at_most_sixteen_are_held_oldest_dropped() {
        let statuses = CopyStatuses::default();
        let t0 = Instant::now();
        for id in 0..=MAX_HELD as u8 {
            statuses.begin(id, t0).finish(true, t0);
        }
        assert!(read(&statuses, 0, t0).is_none(), "the oldest was dropped");
        for id in 1..=MAX_HELD as u8 {
            assert!(read(&statuses, id, t0).is_some(), "{id}");
        }
    }
}
