//! Operation codes and service actions (SPC-5, SBC-4).

pub(crate) const TEST_UNIT_READY: u8 = 0x00;
pub(crate) const REQUEST_SENSE: u8 = 0x03;
pub(crate) const READ_6: u8 = 0x08;
pub(crate) const WRITE_6: u8 = 0x0A;
pub(crate) const INQUIRY: u8 = 0x12;
pub(crate) const MODE_SELECT_6: u8 = 0x15;
pub(crate) const MODE_SENSE_6: u8 = 0x1A;
pub(crate) const START_STOP_UNIT: u8 = 0x1B;
pub(crate) const READ_CAPACITY_10: u8 = 0x25;
pub(crate) const READ_10: u8 = 0x28;
pub(crate) const WRITE_10: u8 = 0x2A;
pub(crate) const WRITE_AND_VERIFY_10: u8 = 0x2E;
pub(crate) const VERIFY_10: u8 = 0x2F;
pub(crate) const PRE_FETCH_10: u8 = 0x34;
pub(crate) const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub(crate) const READ_DEFECT_DATA_10: u8 = 0x37;
pub(crate) const WRITE_SAME_10: u8 = 0x41;
pub(crate) const UNMAP: u8 = 0x42;
pub(crate) const SANITIZE: u8 = 0x48;
pub(crate) const MODE_SELECT_10: u8 = 0x55;
pub(crate) const MODE_SENSE_10: u8 = 0x5A;
pub(crate) const THIRD_PARTY_COPY_OUT: u8 = 0x83;
pub(crate) const THIRD_PARTY_COPY_IN: u8 = 0x84;
pub(crate) const READ_16: u8 = 0x88;
pub(crate) const COMPARE_AND_WRITE: u8 = 0x89;
pub(crate) const WRITE_16: u8 = 0x8A;
pub(crate) const ORWRITE_16: u8 = 0x8B;
pub(crate) const WRITE_AND_VERIFY_16: u8 = 0x8E;
pub(crate) const VERIFY_16: u8 = 0x8F;
pub(crate) const PRE_FETCH_16: u8 = 0x90;
pub(crate) const SYNCHRONIZE_CACHE_16: u8 = 0x91;
pub(crate) const WRITE_SAME_16: u8 = 0x93;
pub(crate) const WRITE_ATOMIC_16: u8 = 0x9C;
pub(crate) const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub(crate) const MAINTENANCE_IN: u8 = 0xA3;
pub(crate) const READ_12: u8 = 0xA8;
pub(crate) const WRITE_12: u8 = 0xAA;
pub(crate) const WRITE_AND_VERIFY_12: u8 = 0xAE;
pub(crate) const VERIFY_12: u8 = 0xAF;
pub(crate) const READ_DEFECT_DATA_12: u8 = 0xB7;

/// Service actions of SERVICE ACTION IN(16).
pub(crate) mod service_action_in {
    pub(crate) const READ_CAPACITY_16: u8 = 0x10;
    pub(crate) const GET_LBA_STATUS: u8 = 0x12;
}

/// Service actions of THIRD-PARTY COPY OUT (83h).
pub(crate) mod copy_out {
    pub(crate) const EXTENDED_COPY_LID1: u8 = 0x00;
}

/// Service actions of THIRD-PARTY COPY IN (84h).
pub(crate) mod copy_in {
    pub(crate) const RECEIVE_COPY_STATUS_LID1: u8 = 0x00;
    pub(crate) const RECEIVE_COPY_OPERATING_PARAMETERS: u8 = 0x03;
}

/// Service actions of SANITIZE (03h, CRYPTOGRAPHIC ERASE, is not
/// supported: there is no key to destroy).
pub(crate) mod sanitize_action {
    pub(crate) const OVERWRITE: u8 = 0x01;
    pub(crate) const BLOCK_ERASE: u8 = 0x02;
    pub(crate) const EXIT_FAILURE_MODE: u8 = 0x1F;
}

/// Service actions of MAINTENANCE IN.
pub(crate) mod maintenance_in {
    pub(crate) const REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
    pub(crate) const REPORT_SUPPORTED_OPERATION_CODES: u8 = 0x0C;
    pub(crate) const REPORT_SUPPORTED_TMFS: u8 = 0x0D;
}

/// Whether `op` multiplexes several commands through a SERVICE ACTION
/// field (byte 1, bits 4-0).
pub(crate) fn has_service_actions(op: u8) -> bool {
    matches!(
        op,
        SANITIZE
            | SERVICE_ACTION_IN_16
            | MAINTENANCE_IN
            | THIRD_PARTY_COPY_OUT
            | THIRD_PARTY_COPY_IN
    )
}
