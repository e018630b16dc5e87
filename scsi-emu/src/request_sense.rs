//! REQUEST SENSE (SPC-5 6.39).

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::cdb::Cdb;
use crate::data_buffer::DataBuffer;
use crate::lun::{Lun, not_ready};
use crate::response::{ScsiResponse, send_data_in};
use crate::sense_format;

/// REQUEST SENSE (SPC-5 6.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestSense {
    /// DESC: descriptor-format sense data.
    descriptor: bool,
    allocation_length: usize,
}

impl RequestSense {
    const DESC: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        Ok(RequestSense {
            descriptor: cdb.byte(1) & Self::DESC != 0,
            allocation_length: usize::from(cdb.byte(4)),
        })
    }
}

/// With autosense every error's sense went out with its status and no
/// deferred errors exist, so the conditions to report are a sanitize in
/// progress (with its progress, which is how an initiator polls it) or
/// failed, and a stopped unit; otherwise NO SENSE. The format follows the
/// DESC bit.
pub(crate) fn request_sense<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &RequestSense,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let sense = if let Some(sanitize) = lun.sanitize.pending_sense() {
        sanitize
    } else if lun.is_stopped() {
        not_ready()
    } else {
        Sense::new(SenseKey::NoSense, AdditionalSense::NO_ADDITIONAL_SENSE)
    };
    let bytes = sense_format::encode(&sense, cmd.descriptor);
    send_data_in(data, &bytes, cmd.allocation_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn request_sense_reports_no_sense_fixed_format() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 0, 0, 0, 252, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(18));
        assert_eq!(buf[0], 0x70);
        assert_eq!(buf[2], 0x00);
        assert_eq!(buf[7], 10);
        assert_eq!((buf[12], buf[13]), (0, 0));
        assert!(buf[18..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn request_sense_truncates_to_allocation_length() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 0, 0, 0, 8, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        assert_eq!(buf[8], 0xFF);
        let resp = emu.execute(&[0x03, 0, 0, 0, 0, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(0));
    }

    #[test]
    fn request_sense_desc_returns_descriptor_format() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0xFFu8; 32];
        let resp = emu.execute(&[0x03, 1, 0, 0, 252, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        assert_eq!(&buf[..8], &[0x72, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(buf[8], 0xFF);
    }
}
