//! Sense keys (SPC-5 table 52).

use std::fmt;

/// The sense key: the general category of a CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    /// No specific sense key: nothing to report, or a report such as a filemark.
    NoSense = 0x0,
    /// The command completed after the device recovered from an error.
    RecoveredError = 0x1,
    /// The logical unit cannot be accessed now.
    NotReady = 0x2,
    /// An unrecovered error caused by a flaw in the medium or the recorded data.
    MediumError = 0x3,
    /// A non-recoverable hardware failure.
    HardwareError = 0x4,
    /// The CDB or parameter list holds an illegal value.
    IllegalRequest = 0x5,
    /// Something changed (reset, media, parameters) that the initiator should know of.
    UnitAttention = 0x6,
    /// A read or write was refused because the block is protected.
    DataProtect = 0x7,
    /// Blank medium or a format-defined end of data was met.
    BlankCheck = 0x8,
    /// Vendor-specific conditions.
    VendorSpecific = 0x9,
    /// An EXTENDED COPY (or similar) command was aborted.
    CopyAborted = 0xA,
    /// The device server aborted the command; the initiator may retry.
    AbortedCommand = 0xB,
    /// Reserved (obsolete EQUAL).
    Reserved = 0xC,
    /// A buffered device reached the end of the partition with data left over.
    VolumeOverflow = 0xD,
    /// Source data did not match data read from the medium.
    Miscompare = 0xE,
    /// Sense data for a command that completed successfully.
    Completed = 0xF,
}

impl SenseKey {
    /// The key of the low four bits of `value`.
    pub const fn from_u8(value: u8) -> SenseKey {
        match value & 0xF {
            0x0 => SenseKey::NoSense,
            0x1 => SenseKey::RecoveredError,
            0x2 => SenseKey::NotReady,
            0x3 => SenseKey::MediumError,
            0x4 => SenseKey::HardwareError,
            0x5 => SenseKey::IllegalRequest,
            0x6 => SenseKey::UnitAttention,
            0x7 => SenseKey::DataProtect,
            0x8 => SenseKey::BlankCheck,
            0x9 => SenseKey::VendorSpecific,
            0xA => SenseKey::CopyAborted,
            0xB => SenseKey::AbortedCommand,
            0xC => SenseKey::Reserved,
            0xD => SenseKey::VolumeOverflow,
            0xE => SenseKey::Miscompare,
            _ => SenseKey::Completed,
        }
    }

    /// The name the standard gives the key.
    pub const fn name(self) -> &'static str {
        match self {
            SenseKey::NoSense => "NO SENSE",
            SenseKey::RecoveredError => "RECOVERED ERROR",
            SenseKey::NotReady => "NOT READY",
            SenseKey::MediumError => "MEDIUM ERROR",
            SenseKey::HardwareError => "HARDWARE ERROR",
            SenseKey::IllegalRequest => "ILLEGAL REQUEST",
            SenseKey::UnitAttention => "UNIT ATTENTION",
            SenseKey::DataProtect => "DATA PROTECT",
            SenseKey::BlankCheck => "BLANK CHECK",
            SenseKey::VendorSpecific => "VENDOR SPECIFIC",
            SenseKey::CopyAborted => "COPY ABORTED",
            SenseKey::AbortedCommand => "ABORTED COMMAND",
            SenseKey::Reserved => "RESERVED",
            SenseKey::VolumeOverflow => "VOLUME OVERFLOW",
            SenseKey::Miscompare => "MISCOMPARE",
            SenseKey::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for SenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for v in 0u8..16 {
            assert_eq!(SenseKey::from_u8(v) as u8, v);
        }
        assert_eq!(SenseKey::from_u8(0x35), SenseKey::IllegalRequest);
        assert_eq!(SenseKey::MediumError.to_string(), "MEDIUM ERROR");
    }
}
