//! ORWRITE(16) (SBC-4 5.11): each byte of the data-out buffer is ORed
//! into the medium. The read, the OR and the write happen under the LBA
//! range lock, so no WRITE, COMPARE AND WRITE or other ORWRITE to those
//! blocks comes between them: the result is the OR of the data with what
//! the medium held when the command started.

use crate::block_device::BlockDevice;
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::medium::{Direction, backend_failure, check_write_transfer};
use crate::read_write::Transfer;
use crate::response::ScsiResponse;

/// ORWRITE(16) decodes as a WRITE(16) does (ORPROTECT where WRPROTECT
/// is, DPO ignored, FUA honoured).
pub(crate) fn orwrite<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Transfer,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let (_, len) =
        match check_write_transfer(lun, cmd.lba, cmd.blocks, cmd.length_field, data.len()) {
            Ok(checked) => checked,
            Err(resp) => return resp,
        };
    if cmd.blocks == 0 {
        return ScsiResponse::good();
    }
    let mut bits = vec![0u8; len];
    data.read_at(0, &mut bits);
    let device = lun.device();
    let _range = lun.locks.lock(cmd.lba, cmd.blocks);
    let mut medium = vec![0u8; len];
    if let Err(err) = device.read(cmd.lba, &mut medium) {
        return backend_failure(&err, cmd.lba, Direction::Read);
    }
    for (m, b) in medium.iter_mut().zip(&bits) {
        *m |= b;
    }
    match device.write_vectored(cmd.lba, &[&medium], lun.write_flags(cmd.fua)) {
        Ok(()) => ScsiResponse::good(),
        Err(err) => backend_failure(&err, cmd.lba, Direction::Write),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;

    const BS: usize = 512;

    fn orwrite16(flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
        let mut cdb = vec![0u8; 16];
        cdb[0] = 0x8B;
        cdb[1] = flags;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        cdb
    }

    #[test]
    fn ors_into_the_medium_and_nothing_else() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        emu.device().write(0, &vec![0x0Fu8; 16 * BS]).unwrap();
        let before = emu.device().contents();
        let mut data = vec![0xA0u8; 2 * BS];
        data[3] = 0x01;
        assert_eq!(
            emu.execute(&orwrite16(0, 4, 2), &mut data),
            ScsiResponse::good()
        );
        let after = emu.device().contents();
        assert_eq!(after[4 * BS + 3], 0x0F);
        assert!(
            after[4 * BS..6 * BS]
                .iter()
                .enumerate()
                .all(|(i, &b)| i == 3 || b == 0xAF)
        );
        assert_eq!(after[..4 * BS], before[..4 * BS]);
        assert_eq!(after[6 * BS..], before[6 * BS..]);
        // Zero blocks: nothing happens.
        let calls = emu.device().calls().len();
        assert_eq!(
            emu.execute(&orwrite16(0, 16, 0), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls().len(), calls);
    }

    #[test]
    fn fua_and_write_through_reach_the_write() {
        let emu = emulator(VecDevice::new(BS as u32, 16).with_write_cache());
        let mut data = vec![1u8; BS];
        assert_eq!(
            emu.execute(&orwrite16(0x18, 0, 1), &mut data),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('r', 0, BS), ('f', 0, BS)]);
        // Without FUA, a write-back cache gets a plain write.
        assert_eq!(
            emu.execute(&orwrite16(0, 1, 1), &mut data),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls()[2..], [('r', 1, BS), ('w', 1, BS)]);
    }

    #[test]
    fn checks_before_anything_is_read() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        let mut data = vec![0u8; 4 * BS];
        assert_illegal(
            &emu.execute(&orwrite16(0, 15, 2), &mut data),
            AdditionalSense::LBA_OUT_OF_RANGE,
        );
        assert_invalid_field(&emu.execute(&orwrite16(0x20, 0, 1), &mut data), 1, 7);
        // Less data than the transfer length.
        assert_invalid_field(&emu.execute(&orwrite16(0, 0, 2), &mut vec![0u8; BS]), 10, 7);
        assert!(emu.device().calls().is_empty());
        let ro = emulator(VecDevice::new(BS as u32, 16).read_only());
        assert_check(
            &ro.execute(&orwrite16(0, 0, 1), &mut data),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
    }

    #[test]
    fn concurrent_orwrites_lose_no_bit() {
        // Eight threads each OR their own bit into every byte of the same
        // blocks: without the range lock one thread's read-modify-write
        // would overwrite another's bit.
        let emu = Arc::new(emulator(VecDevice::new(BS as u32, 4)));
        let threads: Vec<_> = (0..8u8)
            .map(|bit| {
                let emu = emu.clone();
                std::thread::spawn(move || {
                    let mut data = vec![1u8 << bit; 4 * BS];
                    assert_eq!(
                        emu.execute(&orwrite16(0, 0, 4), &mut data),
                        ScsiResponse::good()
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(emu.device().contents().iter().all(|&b| b == 0xFF));
    }
}
