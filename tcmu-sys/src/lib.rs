//! Rust mirror of the Linux TCMU user-space ABI, `<linux/target_core_user.h>`
//! (mailbox version 2).
//!
//! The structures are `#[repr(C)]` and have the same size, alignment and
//! field offsets as the C header; `tests/layout.rs` compiles a C program
//! against the system header and checks every one of them.
//!
//! These types describe the *layout* of the shared area. Code that parses a
//! live ring must not form references into the shared mapping (the kernel
//! may change it at any time); it reads fields at `core::mem::offset_of!`
//! offsets instead.

#![deny(missing_docs)]
#![no_std]
#![forbid(unsafe_code)]

/// Version string of the header (`TCMU_VERSION`).
pub const TCMU_VERSION: &str = "2.0";
/// The only mailbox version this crate describes (`TCMU_MAILBOX_VERSION`).
pub const TCMU_MAILBOX_VERSION: u16 = 2;
/// Alignment of the user-written part of the mailbox (`ALIGN_SIZE`).
pub const ALIGN_SIZE: usize = 64;

/// Mailbox capability: the kernel accepts out-of-order completions.
pub const TCMU_MAILBOX_FLAG_CAP_OOOC: u16 = 1 << 0;
/// Mailbox capability: the kernel honours `rsp.read_len` with `TCMU_UFLAG_READ_LEN`.
pub const TCMU_MAILBOX_FLAG_CAP_READ_LEN: u16 = 1 << 1;
/// Mailbox capability: the kernel can put TMR entries in the ring.
pub const TCMU_MAILBOX_FLAG_CAP_TMR: u16 = 1 << 2;
/// Mailbox capability: a completion may keep its data buffer (`TCMU_UFLAG_KEEP_BUF`).
pub const TCMU_MAILBOX_FLAG_CAP_KEEP_BUF: u16 = 1 << 3;

/// The mailbox at offset 0 of the shared area (`struct tcmu_mailbox`).
///
/// In C the struct is packed with `cmd_tail` aligned to 64 bytes, which makes
/// its size 128 and its alignment 64; the explicit padding reproduces that.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct tcmu_mailbox {
    /// Mailbox layout version ([`TCMU_MAILBOX_VERSION`]).
    pub version: u16,
    /// Capabilities of the kernel (`TCMU_MAILBOX_FLAG_CAP_*`).
    pub flags: u16,
    /// Offset of the command ring from the start of the shared area.
    pub cmdr_off: u32,
    /// Size of the command ring in bytes (not necessarily a power of two).
    pub cmdr_size: u32,
    /// Written by the kernel: end of the published entries.
    pub cmd_head: u32,
    /// Padding that puts `cmd_tail` on the next cache line.
    pub _pad_head: [u8; 48],
    /// Written by user space, on its own cache line: start of the unconsumed entries.
    pub cmd_tail: u32,
    /// Padding up to the C struct's size of 128 bytes.
    pub _pad_tail: [u8; 60],
}

/// Entry opcode: padding up to the end of the ring; skip it.
pub const TCMU_OP_PAD: u8 = 0;
/// Entry opcode: a SCSI command.
pub const TCMU_OP_CMD: u8 = 1;
/// Entry opcode: a task management notification.
pub const TCMU_OP_TMR: u8 = 2;
/// The opcode occupies the low bits of `len_op`.
pub const TCMU_OP_MASK: u32 = 0x7;
/// Entries are aligned to (and their lengths are multiples of) this many bytes.
pub const TCMU_OP_ALIGN_SIZE: usize = 8;

/// User flag: the entry's opcode was not understood.
pub const TCMU_UFLAG_UNKNOWN_OP: u8 = 0x1;
/// User flag: `rsp.read_len` holds the number of data-in bytes produced.
pub const TCMU_UFLAG_READ_LEN: u8 = 0x2;
/// User flag: keep the command's data buffer after completion.
pub const TCMU_UFLAG_KEEP_BUF: u8 = 0x4;

/// Size of the sense buffer in a response (`TCMU_SENSE_BUFFERSIZE`).
pub const TCMU_SENSE_BUFFERSIZE: usize = 96;

/// Header common to all entries (`struct tcmu_cmd_entry_hdr`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tcmu_cmd_entry_hdr {
    /// Length in bytes (bits 31..3) and opcode (bits 2..0).
    pub len_op: u32,
    /// The command's id, echoed back in its completion.
    pub cmd_id: u16,
    /// Flags set by the kernel.
    pub kflags: u8,
    /// Flags set by user space (`TCMU_UFLAG_*`).
    pub uflags: u8,
}

/// The opcode stored in `len_op` (`tcmu_hdr_get_op`).
pub const fn tcmu_hdr_get_op(len_op: u32) -> u8 {
    (len_op & TCMU_OP_MASK) as u8
}

/// The entry length stored in `len_op` (`tcmu_hdr_get_len`).
pub const fn tcmu_hdr_get_len(len_op: u32) -> u32 {
    len_op & !TCMU_OP_MASK
}

/// `len_op` with its opcode replaced (`tcmu_hdr_set_op`).
pub const fn tcmu_hdr_set_op(len_op: u32, op: u8) -> u32 {
    (len_op & !TCMU_OP_MASK) | (op as u32 & TCMU_OP_MASK)
}

/// `len_op` with its length replaced (`tcmu_hdr_set_len`); `len` must be a
/// multiple of [`TCMU_OP_ALIGN_SIZE`].
///
/// For such lengths the result equals the C helper's. For other lengths the
/// C helper ORs the low bits into the opcode; this one drops them so the
/// opcode survives. The length read back by [`tcmu_hdr_get_len`] is the same.
pub const fn tcmu_hdr_set_len(len_op: u32, len: u32) -> u32 {
    (len_op & TCMU_OP_MASK) | (len & !TCMU_OP_MASK)
}

/// `struct iovec` as the kernel fills it in the ring: `iov_base` is an
/// offset from the start of the shared area, not a pointer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct iovec {
    /// Offset of the buffer from the start of the shared area.
    pub iov_base: u64,
    /// Length of the buffer in bytes.
    pub iov_len: u64,
}

/// Request part of a command entry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tcmu_cmd_entry_req {
    /// Number of data buffers of the command (data-out or data-in).
    pub iov_cnt: u32,
    /// Number of bidirectional data-in buffers, after the `iov_cnt` ones.
    pub iov_bidi_cnt: u32,
    /// Number of protection-information (DIF) buffers, after those.
    pub iov_dif_cnt: u32,
    /// Offset of the CDB from the start of the shared area.
    pub cdb_off: u64,
    /// Padding (the C header's `__pad1`).
    pub __pad1: u64,
    /// Padding (the C header's `__pad2`).
    pub __pad2: u64,
    /// Followed by `iov_cnt + iov_bidi_cnt + iov_dif_cnt` [`iovec`]s.
    pub iov: [iovec; 0],
}

/// Response part of a command entry; overlays the request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tcmu_cmd_entry_rsp {
    /// SCSI status of the completed command.
    pub scsi_status: u8,
    /// Padding (the C header's `__pad1`).
    pub __pad1: u8,
    /// Padding (the C header's `__pad2`).
    pub __pad2: u16,
    /// Data-in bytes produced, when [`TCMU_UFLAG_READ_LEN`] is set.
    pub read_len: u32,
    /// Sense data, when the status is CHECK CONDITION.
    pub sense_buffer: [u8; TCMU_SENSE_BUFFERSIZE],
}

/// The request/response union of a command entry.
#[repr(C)]
#[derive(Clone, Copy)]
pub union tcmu_cmd_entry_body {
    /// The command as the kernel wrote it.
    pub req: tcmu_cmd_entry_req,
    /// The completion as user space writes it over the request.
    pub rsp: tcmu_cmd_entry_rsp,
}

/// A command entry (`struct tcmu_cmd_entry`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tcmu_cmd_entry {
    /// The entry header.
    pub hdr: tcmu_cmd_entry_hdr,
    /// Request, then response.
    pub body: tcmu_cmd_entry_body,
}

/// TMR type: unknown.
pub const TCMU_TMR_UNKNOWN: u8 = 0;
/// TMR type: ABORT TASK.
pub const TCMU_TMR_ABORT_TASK: u8 = 1;
/// TMR type: ABORT TASK SET.
pub const TCMU_TMR_ABORT_TASK_SET: u8 = 2;
/// TMR type: CLEAR ACA.
pub const TCMU_TMR_CLEAR_ACA: u8 = 3;
/// TMR type: CLEAR TASK SET.
pub const TCMU_TMR_CLEAR_TASK_SET: u8 = 4;
/// TMR type: LOGICAL UNIT RESET.
pub const TCMU_TMR_LUN_RESET: u8 = 5;
/// TMR type: TARGET WARM RESET.
pub const TCMU_TMR_TARGET_WARM_RESET: u8 = 6;
/// TMR type: TARGET COLD RESET.
pub const TCMU_TMR_TARGET_COLD_RESET: u8 = 7;
/// TMR type: pseudo reset caused by a PERSISTENT RESERVE OUT.
pub const TCMU_TMR_LUN_RESET_PRO: u8 = 128;

/// A task management notification entry (`struct tcmu_tmr_entry`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tcmu_tmr_entry {
    /// The entry header.
    pub hdr: tcmu_cmd_entry_hdr,
    /// The task management function (`TCMU_TMR_*`).
    pub tmr_type: u8,
    /// Padding (the C header's `__pad1`).
    pub __pad1: u8,
    /// Padding (the C header's `__pad2`).
    pub __pad2: u16,
    /// Number of aborted commands listed in `cmd_ids`.
    pub cmd_cnt: u32,
    /// Padding (the C header's `__pad3`).
    pub __pad3: u64,
    /// Padding (the C header's `__pad4`).
    pub __pad4: u64,
    /// Followed by `cmd_cnt` command ids.
    pub cmd_ids: [u16; 0],
}

/// Generic netlink family name of TCMU.
pub const TCMU_GENL_FAMILY_NAME: &str = "TCM-USER";
/// Generic netlink family version of TCMU.
pub const TCMU_GENL_VERSION: u8 = 2;
/// Multicast group the kernel sends device events to.
pub const TCMU_GENL_MCGRP_CONFIG: &str = "config";

// enum tcmu_genl_cmd: the commands of the netlink family.
/// Netlink command: unused (0).
pub const TCMU_CMD_UNSPEC: u8 = 0;
/// Netlink command: the kernel announces a new device.
pub const TCMU_CMD_ADDED_DEVICE: u8 = 1;
/// Netlink command: the kernel announces a device's removal.
pub const TCMU_CMD_REMOVED_DEVICE: u8 = 2;
/// Netlink command: the kernel asks to change a device's configuration (size, write cache, `dev_config`).
pub const TCMU_CMD_RECONFIG_DEVICE: u8 = 3;
/// Netlink command: user space's reply to [`TCMU_CMD_ADDED_DEVICE`].
pub const TCMU_CMD_ADDED_DEVICE_DONE: u8 = 4;
/// Netlink command: user space's reply to [`TCMU_CMD_REMOVED_DEVICE`].
pub const TCMU_CMD_REMOVED_DEVICE_DONE: u8 = 5;
/// Netlink command: user space's reply to [`TCMU_CMD_RECONFIG_DEVICE`].
pub const TCMU_CMD_RECONFIG_DEVICE_DONE: u8 = 6;
/// Netlink command: user space says which replies it sends.
pub const TCMU_CMD_SET_FEATURES: u8 = 7;
/// The highest netlink command number.
pub const TCMU_CMD_MAX: u8 = 7;

// enum tcmu_genl_attr: the attributes of its messages.
/// Netlink attribute: unused (0).
pub const TCMU_ATTR_UNSPEC: u16 = 0;
/// Netlink attribute: the device's name (string).
pub const TCMU_ATTR_DEVICE: u16 = 1;
/// Netlink attribute: the minor number of the device's UIO device (`u32`).
pub const TCMU_ATTR_MINOR: u16 = 2;
/// Netlink attribute: padding for 64-bit attributes.
pub const TCMU_ATTR_PAD: u16 = 3;
/// Netlink attribute: the new `dev_config` string.
pub const TCMU_ATTR_DEV_CFG: u16 = 4;
/// Netlink attribute: the new device size in bytes (`u64`).
pub const TCMU_ATTR_DEV_SIZE: u16 = 5;
/// Netlink attribute: the new write cache setting (`u8`).
pub const TCMU_ATTR_WRITECACHE: u16 = 6;
/// Netlink attribute: the status of a reply (`i32`, 0 or a negative errno).
pub const TCMU_ATTR_CMD_STATUS: u16 = 7;
/// Netlink attribute: the device's index, which identifies it in replies (`u32`).
pub const TCMU_ATTR_DEVICE_ID: u16 = 8;
/// Netlink attribute: whether user space replies to the kernel's commands (`u8`).
pub const TCMU_ATTR_SUPP_KERN_CMD_REPLY: u16 = 9;
/// The highest netlink attribute number.
pub const TCMU_ATTR_MAX: u16 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_op_helpers_round_trip() {
        let v = tcmu_hdr_set_len(tcmu_hdr_set_op(0, TCMU_OP_CMD), 160);
        assert_eq!(tcmu_hdr_get_op(v), TCMU_OP_CMD);
        assert_eq!(tcmu_hdr_get_len(v), 160);
        let v = tcmu_hdr_set_op(v, TCMU_OP_PAD);
        assert_eq!(tcmu_hdr_get_op(v), TCMU_OP_PAD);
        assert_eq!(tcmu_hdr_get_len(v), 160);
        // A length that is not 8-aligned loses its low bits (C would OR
        // them into the opcode instead).
        assert_eq!(tcmu_hdr_get_len(tcmu_hdr_set_len(0, 13)), 8);
    }
}
