//! The outcome of one command.

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::data_buffer::DataBuffer;
use scsi_sense_codes::ScsiStatus;

/// What the emulator reports for one command: the SCSI status, sense data
/// when the status is CHECK CONDITION, and how much data-in was produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    /// The SCSI status.
    pub status: ScsiStatus,
    /// Sense data; present exactly when `status` is CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Bytes of data-in produced, when the command produced data-in; `None`
    /// otherwise. Never more than the data buffer's length; the caller
    /// reports the rest of the buffer as residual.
    pub data_in_len: Option<usize>,
}

impl ScsiResponse {
    /// GOOD status without data-in.
    pub fn good() -> Self {
        ScsiResponse {
            status: ScsiStatus::Good,
            sense: None,
            data_in_len: None,
        }
    }

    /// GOOD status with `len` bytes of data-in.
    pub fn data_in(len: usize) -> Self {
        ScsiResponse {
            status: ScsiStatus::Good,
            sense: None,
            data_in_len: Some(len),
        }
    }

    /// CHECK CONDITION with the given sense.
    pub fn check_condition(sense: Sense) -> Self {
        ScsiResponse {
            status: ScsiStatus::CheckCondition,
            sense: Some(sense),
            data_in_len: None,
        }
    }

    /// BUSY status (no sense): the initiator retries later.
    pub fn busy() -> Self {
        ScsiResponse {
            status: ScsiStatus::Busy,
            sense: None,
            data_in_len: None,
        }
    }

    /// The sense data as bytes, in descriptor format when `descriptor` is
    /// set (the logical unit's D_SENSE, see
    /// [`Emulator::descriptor_sense`](crate::Emulator::descriptor_sense)),
    /// in fixed format otherwise; `None` without sense.
    pub fn sense_bytes(&self, descriptor: bool) -> Option<Vec<u8>> {
        self.sense
            .as_ref()
            .map(|sense| crate::sense_format::encode(sense, descriptor))
    }

    /// CHECK CONDITION, HARDWARE ERROR, INTERNAL TARGET FAILURE: the backend
    /// reported something the emulator cannot work with (e.g. a zero block
    /// size). Better a failed command than a panic or a wrong answer.
    pub(crate) fn internal_failure() -> Self {
        Self::check_condition(Sense::new(
            SenseKey::HardwareError,
            AdditionalSense::INTERNAL_TARGET_FAILURE,
        ))
    }
}

impl From<Sense> for ScsiResponse {
    fn from(sense: Sense) -> Self {
        ScsiResponse::check_condition(sense)
    }
}

/// Return `payload` as data-in, truncated to the allocation length and to
/// the buffer. Commands with an allocation length build their whole
/// response first (length fields describe the untruncated data, as SPC
/// requires) and cut it here.
pub(crate) fn send_data_in(
    data: &mut dyn DataBuffer,
    payload: &[u8],
    allocation_length: usize,
) -> ScsiResponse {
    let n = payload.len().min(allocation_length);
    let copied = data.write_at(0, &payload[..n]);
    ScsiResponse::data_in(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_status_and_sense() {
        assert_eq!(ScsiResponse::good().status, ScsiStatus::Good);
        assert_eq!(ScsiResponse::data_in(7).data_in_len, Some(7));
        let busy = ScsiResponse::busy();
        assert_eq!((busy.status, busy.sense), (ScsiStatus::Busy, None));
        let cc = ScsiResponse::check_condition(Sense::illegal_request(
            AdditionalSense::INVALID_FIELD_IN_CDB,
        ));
        assert_eq!(cc.status, ScsiStatus::CheckCondition);
        assert_eq!(
            cc.sense,
            Some(Sense::illegal_request(
                AdditionalSense::INVALID_FIELD_IN_CDB
            ))
        );
        assert_eq!(ScsiResponse::good().sense_bytes(true), None);
        let fixed = cc.sense_bytes(false).unwrap();
        assert_eq!((fixed[0], fixed.len()), (0x70, 18));
        let desc = cc.sense_bytes(true).unwrap();
        assert_eq!(
            (desc[0], desc[1], desc[2], desc.len()),
            (0x72, 0x05, 0x24, 8)
        );
    }

    #[test]
    fn data_in_is_cut_to_allocation_length_and_buffer() {
        let mut buf = vec![0xAAu8; 4];
        assert_eq!(
            send_data_in(&mut buf, &[1, 2, 3], 2),
            ScsiResponse::data_in(2)
        );
        assert_eq!(buf, [1, 2, 0xAA, 0xAA]);
        let mut small = vec![0u8; 2];
        assert_eq!(
            send_data_in(&mut small, &[1, 2, 3], 100),
            ScsiResponse::data_in(2)
        );
        assert_eq!(small, [1, 2]);
    }
}
