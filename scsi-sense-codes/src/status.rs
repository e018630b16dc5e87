//! SCSI status codes (SAM-5 table 39): the one byte every command ends with.

/// The status of a completed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ScsiStatus {
    /// The command completed successfully.
    Good = 0x00,
    /// The command failed; sense data describes why.
    CheckCondition = 0x02,
    /// A pre-fetch style command found its condition met.
    ConditionMet = 0x04,
    /// The logical unit is busy; the initiator should retry later.
    Busy = 0x08,
    /// A persistent or SPC-2 reservation conflicts with the command.
    ReservationConflict = 0x18,
    /// The task set is full; the initiator should retry later.
    TaskSetFull = 0x28,
    /// An ACA condition exists.
    AcaActive = 0x30,
    /// The command was aborted by another I_T nexus.
    TaskAborted = 0x40,
}

impl ScsiStatus {
    /// The status byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The status a byte encodes; `None` for a reserved or obsolete code.
    pub const fn from_u8(byte: u8) -> Option<ScsiStatus> {
        Some(match byte {
            0x00 => ScsiStatus::Good,
            0x02 => ScsiStatus::CheckCondition,
            0x04 => ScsiStatus::ConditionMet,
            0x08 => ScsiStatus::Busy,
            0x18 => ScsiStatus::ReservationConflict,
            0x28 => ScsiStatus::TaskSetFull,
            0x30 => ScsiStatus::AcaActive,
            0x40 => ScsiStatus::TaskAborted,
            _ => return None,
        })
    }
}

impl From<ScsiStatus> for u8 {
    fn from(status: ScsiStatus) -> u8 {
        status.as_u8()
    }
}

impl std::fmt::Display for ScsiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScsiStatus::Good => "GOOD",
            ScsiStatus::CheckCondition => "CHECK CONDITION",
            ScsiStatus::ConditionMet => "CONDITION MET",
            ScsiStatus::Busy => "BUSY",
            ScsiStatus::ReservationConflict => "RESERVATION CONFLICT",
            ScsiStatus::TaskSetFull => "TASK SET FULL",
            ScsiStatus::AcaActive => "ACA ACTIVE",
            ScsiStatus::TaskAborted => "TASK ABORTED",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_byte() {
        let mut known = 0;
        for byte in 0..=u8::MAX {
            if let Some(status) = ScsiStatus::from_u8(byte) {
                assert_eq!(status.as_u8(), byte);
                assert_eq!(u8::from(status), byte);
                known += 1;
            }
        }
        assert_eq!(known, 8);
        assert_eq!(ScsiStatus::CheckCondition.to_string(), "CHECK CONDITION");
    }
}
