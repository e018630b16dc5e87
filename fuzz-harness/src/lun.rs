//! The logical unit under test and the invariants every response obeys.

use block_backends::MemoryDevice;
use scsi_emu::{BlockDevice, Emulator, LunIdentity, ScsiResponse, ScsiStatus};
use scsi_sense_codes::{Sense, SenseKey};

use crate::buffer::Buffer;

/// Device geometries a case can pick: (block size, number of blocks).
/// Mostly small disks; one just past 2^32 blocks so that READ CAPACITY(10)
/// saturates and LBAs need more than 32 bits (the device is sparse, so
/// this costs no memory).
pub const GEOMETRIES: [(u32, u64); 8] = [
    (512, 64),
    (4096, 64),
    (512, 4096),
    (4096, 4096),
    (1024, 1000),
    (2048, 65),
    (512, 1),
    (512, (1 << 32) + 16),
];

/// The geometry a selector byte picks from [`GEOMETRIES`].
pub fn geometry(selector: u8) -> (u32, u64) {
    GEOMETRIES[usize::from(selector) % GEOMETRIES.len()]
}

/// One command the harness ran and the emulator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The CDB sent.
    pub cdb: Vec<u8>,
    /// What came back.
    pub response: ScsiResponse,
}

/// Statuses a direct-access logical unit may return to a single initiator.
const ALLOWED_STATUS: [ScsiStatus; 4] = [
    ScsiStatus::Good,
    ScsiStatus::CheckCondition,
    ScsiStatus::ConditionMet,
    ScsiStatus::Busy,
];

/// Check what every response must satisfy; panics (with the CDB in hex) on
/// a violation:
///
/// * the status is GOOD, CHECK CONDITION, CONDITION MET or BUSY;
/// * sense data is present exactly when the status is CHECK CONDITION;
/// * sense data survives encoding and parsing in both formats (a field
///   pointer is only kept for ILLEGAL REQUEST, an INFORMATION value above
///   32 bits only in descriptor format) and can be displayed;
/// * the data-in length is at most `buffer_len`.
pub fn check_response(cdb: &[u8], response: &ScsiResponse, buffer_len: usize) {
    let cdb_hex = hex(cdb);
    assert!(
        ALLOWED_STATUS.contains(&response.status),
        "CDB {cdb_hex}: status {} is not one a disk returns here",
        response.status
    );
    assert_eq!(
        response.sense.is_some(),
        response.status == ScsiStatus::CheckCondition,
        "CDB {cdb_hex}: sense {:?} with status {}",
        response.sense,
        response.status
    );
    if let Some(n) = response.data_in_len {
        assert!(
            n <= buffer_len,
            "CDB {cdb_hex}: data-in length {n} exceeds the {buffer_len}-byte buffer"
        );
    }
    if let Some(sense) = response.sense {
        let _ = sense.to_string();
        let described = Sense {
            field_pointer: sense
                .field_pointer
                .filter(|_| sense.key == SenseKey::IllegalRequest),
            ..sense
        };
        assert_eq!(
            Sense::parse(sense.encode(true).as_bytes()),
            Some(described),
            "CDB {cdb_hex}: descriptor-format sense of {sense:?} does not read back"
        );
        let fixed = Sense {
            information: described.information.filter(|&i| i <= u64::from(u32::MAX)),
            ..described
        };
        assert_eq!(
            Sense::parse(sense.encode(false).as_bytes()),
            Some(fixed),
            "CDB {cdb_hex}: fixed-format sense of {sense:?} does not read back"
        );
    }
}

/// Bytes as space-separated hex, for messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An emulated disk on a fresh all-zero [`MemoryDevice`], recording every
/// command it runs.
pub(crate) struct Lun {
    emulator: Emulator<MemoryDevice>,
    pub(crate) log: Vec<Executed>,
}

impl Lun {
    pub(crate) fn new(geometry_selector: u8) -> Lun {
        let (block_size, num_blocks) = geometry(geometry_selector);
        let device = MemoryDevice::new(block_size, num_blocks)
            .expect("every geometry in GEOMETRIES is valid");
        Lun {
            // No copy registry: EXTENDED COPY naming this unit (from VPD
            // page 83h) copies within it, as on every unit.
            emulator: Emulator::new(device, LunIdentity::new("serial", "fuzz")),
            log: Vec::new(),
        }
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.emulator.device().block_size()
    }

    pub(crate) fn num_blocks(&self) -> u64 {
        self.emulator.device().num_blocks()
    }

    /// Execute `cdb` with `buffer` and check the response.
    pub(crate) fn execute(&mut self, cdb: &[u8], buffer: &mut Buffer) -> ScsiResponse {
        let len = buffer.len();
        let response = self.emulator.execute(cdb, buffer.as_data_buffer());
        check_response(cdb, &response, len);
        self.log.push(Executed {
            cdb: cdb.to_vec(),
            response: response.clone(),
        });
        response
    }

    /// Read `blocks` blocks at `lba` straight from the device (not through
    /// the emulator), for checking what a command stored.
    pub(crate) fn device_read(&self, lba: u64, blocks: u64) -> Vec<u8> {
        let mut buf = vec![0u8; (blocks * u64::from(self.block_size())) as usize];
        self.emulator
            .device()
            .read(lba, &mut buf)
            .expect("harness reads stay inside the device");
        buf
    }

    /// Store `data` at `lba` straight on the device, to set up a case.
    pub(crate) fn device_write(&self, lba: u64, data: &[u8]) {
        self.emulator
            .device()
            .write(lba, data)
            .expect("harness writes stay inside the device");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scsi_sense_codes::AdditionalSense;

    #[test]
    fn every_geometry_makes_a_device() {
        for selector in 0..GEOMETRIES.len() as u8 {
            let lun = Lun::new(selector);
            assert_eq!((lun.block_size(), lun.num_blocks()), geometry(selector));
        }
        assert_eq!(geometry(8), GEOMETRIES[0]);
    }

    #[test]
    #[should_panic(expected = "status RESERVATION CONFLICT")]
    fn reservation_conflict_is_refused() {
        let r = ScsiResponse {
            status: ScsiStatus::ReservationConflict,
            sense: None,
            data_in_len: None,
        };
        check_response(&[0x2A], &r, 0);
    }

    #[test]
    #[should_panic(expected = "exceeds the 4-byte buffer")]
    fn data_in_longer_than_the_buffer_is_refused() {
        check_response(&[0x12], &ScsiResponse::data_in(5), 4);
    }

    #[test]
    #[should_panic(expected = "with status GOOD")]
    fn sense_with_good_status_is_refused() {
        let r = ScsiResponse {
            status: ScsiStatus::Good,
            sense: Some(Sense::illegal_request(
                AdditionalSense::INVALID_FIELD_IN_CDB,
            )),
            data_in_len: None,
        };
        check_response(&[0x00], &r, 0);
    }

    #[test]
    #[should_panic(expected = "does not read back")]
    fn sense_that_does_not_encode_is_refused() {
        // A bit pointer above 7 cannot be encoded.
        let r = ScsiResponse::check_condition(
            Sense::illegal_request(AdditionalSense::INVALID_FIELD_IN_CDB)
                .with_cdb_field(1, Some(9)),
        );
        check_response(&[0x00], &r, 0);
    }

    #[test]
    fn good_check_condition_and_busy_pass() {
        check_response(&[0x00], &ScsiResponse::good(), 0);
        check_response(&[0x12], &ScsiResponse::data_in(36), 36);
        check_response(&[0x28], &ScsiResponse::busy(), 0);
        let sense = Sense::new(
            SenseKey::MediumError,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        )
        .with_information_u64(1 << 40);
        check_response(&[0x88], &ScsiResponse::check_condition(sense), 0);
    }
}
