//! SCSI status codes (SAM-5 table 39) returned in [`ScsiResponse::status`].
//!
//! [`ScsiResponse::status`]: crate::ScsiResponse::status

/// The command completed successfully.
pub const GOOD: u8 = 0x00;
/// The command failed; sense data describes why.
pub const CHECK_CONDITION: u8 = 0x02;
/// A pre-fetch style command found its condition met.
pub const CONDITION_MET: u8 = 0x04;
/// The logical unit is busy; the initiator should retry later.
pub const BUSY: u8 = 0x08;
/// A persistent or SPC-2 reservation conflicts with the command.
pub const RESERVATION_CONFLICT: u8 = 0x18;
/// The task set is full; the initiator should retry later.
pub const TASK_SET_FULL: u8 = 0x28;
