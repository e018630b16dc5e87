//! Byte offsets of the shared-area structures, derived from `tcmu-sys`.

use core::mem::{offset_of, size_of};
use tcmu_sys::*;

pub const MB_VERSION: u64 = offset_of!(tcmu_mailbox, version) as u64;
pub const MB_FLAGS: u64 = offset_of!(tcmu_mailbox, flags) as u64;
pub const MB_CMDR_OFF: u64 = offset_of!(tcmu_mailbox, cmdr_off) as u64;
pub const MB_CMDR_SIZE: u64 = offset_of!(tcmu_mailbox, cmdr_size) as u64;
pub const MB_CMD_HEAD: u64 = offset_of!(tcmu_mailbox, cmd_head) as u64;
pub const MB_CMD_TAIL: u64 = offset_of!(tcmu_mailbox, cmd_tail) as u64;
pub const MAILBOX_SIZE: u64 = size_of::<tcmu_mailbox>() as u64;

const HDR: u64 = offset_of!(tcmu_cmd_entry, hdr) as u64;
pub const HDR_LEN_OP: u64 = HDR + offset_of!(tcmu_cmd_entry_hdr, len_op) as u64;
pub const HDR_CMD_ID: u64 = HDR + offset_of!(tcmu_cmd_entry_hdr, cmd_id) as u64;
#[allow(dead_code)] // written by the simulated kernel only
pub const HDR_KFLAGS: u64 = HDR + offset_of!(tcmu_cmd_entry_hdr, kflags) as u64;
pub const HDR_UFLAGS: u64 = HDR + offset_of!(tcmu_cmd_entry_hdr, uflags) as u64;

const BODY: u64 = offset_of!(tcmu_cmd_entry, body) as u64;
pub const REQ_IOV_CNT: u64 = BODY + offset_of!(tcmu_cmd_entry_req, iov_cnt) as u64;
pub const REQ_IOV_BIDI_CNT: u64 = BODY + offset_of!(tcmu_cmd_entry_req, iov_bidi_cnt) as u64;
pub const REQ_IOV_DIF_CNT: u64 = BODY + offset_of!(tcmu_cmd_entry_req, iov_dif_cnt) as u64;
pub const REQ_CDB_OFF: u64 = BODY + offset_of!(tcmu_cmd_entry_req, cdb_off) as u64;
pub const REQ_IOV: u64 = BODY + offset_of!(tcmu_cmd_entry_req, iov) as u64;
pub const IOV_SIZE: u64 = size_of::<iovec>() as u64;
pub const IOV_BASE: u64 = offset_of!(iovec, iov_base) as u64;
pub const IOV_LEN: u64 = offset_of!(iovec, iov_len) as u64;

pub const RSP_SCSI_STATUS: u64 = BODY + offset_of!(tcmu_cmd_entry_rsp, scsi_status) as u64;
pub const RSP_READ_LEN: u64 = BODY + offset_of!(tcmu_cmd_entry_rsp, read_len) as u64;
pub const RSP_SENSE: u64 = BODY + offset_of!(tcmu_cmd_entry_rsp, sense_buffer) as u64;
/// A command entry must be at least this long to hold its response.
pub const CMD_ENTRY_SIZE: u64 = size_of::<tcmu_cmd_entry>() as u64;

pub const TMR_TYPE: u64 = offset_of!(tcmu_tmr_entry, tmr_type) as u64;
pub const TMR_CMD_CNT: u64 = offset_of!(tcmu_tmr_entry, cmd_cnt) as u64;
pub const TMR_CMD_IDS: u64 = offset_of!(tcmu_tmr_entry, cmd_ids) as u64;

/// Granularity at which data memory is lent to one command's buffer; the
/// kernel allocates data blocks in whole pages.
pub const DATA_PAGE: u64 = 4096;

/// Length of a CDB from its operation code (SPC-5 4.2.5.1): the group code
/// decides, variable-length CDBs (7Fh) carry their additional length in
/// byte 7. `byte7` is consulted only for 7Fh.
pub fn cdb_len(opcode: u8, byte7: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        3 if opcode == 0x7F => 8 + byte7 as usize,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// The longest CDB the ring copies out (variable-length CDBs: 8 + 255).
pub const MAX_CDB_LEN: usize = 8 + 255;
