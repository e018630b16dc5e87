//! PRE-FETCH(10) and (16) (SBC-4 5.9, 5.10).
//!
//! The emulator keeps no cache of its own and the device trait has no
//! read-ahead hint, so nothing is fetched: the range is checked and the
//! command ends with GOOD, which SBC-4 specifies for a cache that cannot
//! hold the blocks (CONDITION MET would promise they are cached). The
//! Block Limits page reports MAXIMUM PREFETCH LENGTH 0, no limit.

use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, lba_and_length};
use crate::medium::check_range;
use crate::response::ScsiResponse;

/// A decoded PRE-FETCH(10) or (16). IMMED (byte 1 bit 1) needs no
/// handling: nothing is fetched, so the answer is immediate anyway; the
/// GROUP NUMBER is a hint and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefetch {
    lba: u64,
    blocks: u64,
}

impl Prefetch {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let (lba, blocks) = lba_and_length(cdb);
        Ok(Prefetch { lba, blocks })
    }
}

pub(crate) fn prefetch<D: BlockDevice + ?Sized>(device: &D, cmd: &Prefetch) -> ScsiResponse {
    match check_range(device, cmd.lba, cmd.blocks) {
        Ok(()) => ScsiResponse::good(),
        Err(sense) => sense.into(),
    }
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::AdditionalSense;

    use super::*;
    use crate::testutil::*;

    fn prefetch10(immed: bool, lba: u32, blocks: u16, group: u8) -> Vec<u8> {
        let mut cdb = vec![0x34, u8::from(immed) << 1, 0, 0, 0, 0, group, 0, 0, 0];
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    fn prefetch16(lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x90;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    #[test]
    fn in_range_is_good_and_touches_nothing() {
        let emu = emulator(VecDevice::new(512, 64));
        let mut none = Vec::<u8>::new();
        for cdb in [
            prefetch10(false, 0, 1, 0),
            prefetch10(true, 0, 64, 3),
            prefetch10(false, 63, 1, 0),
            prefetch10(false, 0, 0, 0),
            prefetch16(60, 4),
            prefetch16(64, 0),
        ] {
            assert_eq!(
                emu.execute(&cdb, &mut none),
                ScsiResponse::good(),
                "{cdb:02x?}"
            );
        }
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn beyond_the_end_is_lba_out_of_range() {
        let emu = emulator(VecDevice::new(512, 64));
        let mut none = Vec::<u8>::new();
        for cdb in [
            prefetch10(false, 63, 2, 0),
            prefetch10(false, 65, 0, 0),
            prefetch10(false, u32::MAX, 1, 0),
            prefetch16(u64::MAX, 1),
            prefetch16(0x8000_0000, 0),
        ] {
            assert_illegal(
                &emu.execute(&cdb, &mut none),
                AdditionalSense::LBA_OUT_OF_RANGE,
            );
        }
    }
}
