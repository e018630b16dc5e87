//! Additional sense codes (ASC/ASCQ pairs, SPC-5 table 53).

use std::fmt;

/// An additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdditionalSense {
    pub asc: u8,
    pub ascq: u8,
}

macro_rules! codes {
    ($($name:ident = ($asc:literal, $ascq:literal, $text:literal);)*) => {
        impl AdditionalSense {
            $(
                #[doc = $text]
                pub const $name: AdditionalSense = AdditionalSense { asc: $asc, ascq: $ascq };
            )*

            /// The name the standard gives this code, if it is in the table.
            pub fn name(&self) -> Option<&'static str> {
                match (self.asc, self.ascq) {
                    $(($asc, $ascq) => Some($text),)*
                    _ => None,
                }
            }
        }

        #[cfg(test)]
        const ALL: &[AdditionalSense] = &[$(AdditionalSense::$name,)*];
    };
}

codes! {
    NO_ADDITIONAL_SENSE = (0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION");
    LOGICAL_UNIT_NOT_READY = (0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE");
    WRITE_ERROR = (0x0C, 0x00, "WRITE ERROR");
    UNRECOVERED_READ_ERROR = (0x11, 0x00, "UNRECOVERED READ ERROR");
    MISCOMPARE_DURING_VERIFY = (0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION");
    PARAMETER_LIST_LENGTH_ERROR = (0x1A, 0x00, "PARAMETER LIST LENGTH ERROR");
    INVALID_COMMAND_OPERATION_CODE = (0x20, 0x00, "INVALID COMMAND OPERATION CODE");
    LBA_OUT_OF_RANGE = (0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE");
    INVALID_FIELD_IN_CDB = (0x24, 0x00, "INVALID FIELD IN CDB");
    LOGICAL_UNIT_NOT_SUPPORTED = (0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED");
    INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00, "INVALID FIELD IN PARAMETER LIST");
    WRITE_PROTECTED = (0x27, 0x00, "WRITE PROTECTED");
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = (0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT");
    POWER_ON_RESET_OR_BUS_DEVICE_RESET = (0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED");
    CAPACITY_DATA_HAS_CHANGED = (0x2A, 0x09, "CAPACITY DATA HAS CHANGED");
    SAVING_PARAMETERS_NOT_SUPPORTED = (0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED");
    INTERNAL_TARGET_FAILURE = (0x44, 0x00, "INTERNAL TARGET FAILURE");
}

impl AdditionalSense {
    /// The code with the given ASC and ASCQ.
    pub const fn new(asc: u8, ascq: u8) -> Self {
        AdditionalSense { asc, ascq }
    }
}

impl fmt::Display for AdditionalSense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:02X}h/{:02X}h)", self.asc, self.ascq),
            None => write!(f, "ASC {:02X}h ASCQ {:02X}h", self.asc, self.ascq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_named() {
        let mut seen = HashSet::new();
        for code in ALL {
            assert!(seen.insert((code.asc, code.ascq)), "duplicate {code:?}");
            assert!(code.name().is_some());
        }
    }

    #[test]
    fn display_names_known_and_unknown_codes() {
        assert_eq!(
            AdditionalSense::LBA_OUT_OF_RANGE.to_string(),
            "LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h)"
        );
        assert_eq!(
            AdditionalSense::new(0x7F, 0x01).to_string(),
            "ASC 7Fh ASCQ 01h"
        );
    }
}
