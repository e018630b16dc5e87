//! MODE SENSE(6) and MODE SENSE(10) (SPC-5 6.14, 6.15): the mode
//! parameter header, the block descriptor and the pages of
//! [`mode_page`](crate::mode_page).

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::{AdditionalSense, Sense};

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::mode_page::{ModePage, PageControl};
use crate::opcode;
use crate::response::{ScsiResponse, send_data_in};

/// Device-specific parameter: WP, the medium is write protected.
const DSP_WP: u8 = 0x80;
/// Device-specific parameter: DPOFUA, DPO and FUA are supported (FUA
/// reaches the device as `WriteFlags::FUA`; DPO is a hint we may ignore).
const DSP_DPOFUA: u8 = 0x10;
/// MODE SENSE(10) header byte 4: LONGLBA, the block descriptor is long.
pub(crate) const LONGLBA: u8 = 0x01;
pub(crate) const SHORT_DESCRIPTOR_LEN: usize = 8;
pub(crate) const LONG_DESCRIPTOR_LEN: usize = 16;

/// A decoded MODE SENSE(6) or MODE SENSE(10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModeSense {
    /// The 10-byte form (8-byte header, 16-bit lengths).
    ten: bool,
    /// DBD: no block descriptor.
    dbd: bool,
    /// LLBAA: a long LBA block descriptor may be returned (10-byte form).
    llbaa: bool,
    pc: PageControl,
    pages: Vec<ModePage>,
    allocation_length: usize,
}

impl ModeSense {
    const DBD: u8 = 0x08;
    const LLBAA: u8 = 0x10;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let ten = cdb.opcode() == opcode::MODE_SENSE_10;
        let pc = match cdb.byte(2) >> 6 {
            0 => PageControl::Current,
            1 => PageControl::Changeable,
            2 => PageControl::Default,
            _ => {
                return Err(Sense::illegal_request(
                    AdditionalSense::SAVING_PARAMETERS_NOT_SUPPORTED,
                )
                .with_cdb_field(2, Some(7)));
            }
        };
        let page_code = cdb.byte(2) & 0x3F;
        let subpage = cdb.byte(3);
        let pages = match (page_code, subpage) {
            (ModePage::ALL_PAGES_CODE, 0 | ModePage::ALL_SUBPAGES) => ModePage::ALL.to_vec(),
            // No page has subpages.
            (code, 0) => vec![ModePage::from_code(code).ok_or_else(|| invalid_field(2, 5))?],
            _ => return Err(invalid_field(3, 7)),
        };
        Ok(ModeSense {
            ten,
            dbd: cdb.byte(1) & Self::DBD != 0,
            llbaa: ten && cdb.byte(1) & Self::LLBAA != 0,
            pc,
            pages,
            allocation_length: if ten {
                usize::from(cdb.be16(7))
            } else {
                usize::from(cdb.byte(4))
            },
        })
    }
}

pub(crate) fn mode_sense<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &ModeSense,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let device = lun.device();
    let header_len = if cmd.ten { 8 } else { 4 };
    let mut b = vec![0u8; header_len];
    let descriptor = if cmd.dbd {
        Vec::new()
    } else {
        block_descriptor(device, cmd.llbaa)
    };
    b.extend_from_slice(&descriptor);
    for page in &cmd.pages {
        b.extend_from_slice(&page.for_page_control(cmd.pc, &lun.modes));
    }

    let mut dsp = DSP_DPOFUA;
    if lun.write_protection().is_some() {
        dsp |= DSP_WP;
    }
    // MODE DATA LENGTH counts the bytes after itself, for the full data
    // even when the allocation length cuts it. MEDIUM TYPE stays 0.
    // The data is at most 8 + 16 + 20 + 12 bytes, so the casts are exact.
    let total = b.len();
    if cmd.ten {
        BigEndian::write_u16(&mut b[0..2], (total - 2) as u16);
        b[3] = dsp;
        if descriptor.len() == LONG_DESCRIPTOR_LEN {
            b[4] = LONGLBA;
        }
        BigEndian::write_u16(&mut b[6..8], descriptor.len() as u16);
    } else {
        b[0] = (total - 1) as u8;
        b[2] = dsp;
        b[3] = descriptor.len() as u8;
    }
    send_data_in(data, &b, cmd.allocation_length)
}

/// The LBA mode parameter block descriptor (SBC-4 6.5.2): short unless the
/// initiator accepts a long one, in which case a long one is returned so
/// that devices beyond 2^32 blocks report their real size.
pub(crate) fn block_descriptor<D: BlockDevice + ?Sized>(device: &D, long: bool) -> Vec<u8> {
    let blocks = device.num_blocks();
    let block_size = device.block_size();
    if long {
        let mut d = vec![0u8; LONG_DESCRIPTOR_LEN];
        BigEndian::write_u64(&mut d[0..8], blocks);
        BigEndian::write_u32(&mut d[12..16], block_size);
        d
    } else {
        let mut d = vec![0u8; SHORT_DESCRIPTOR_LEN];
        // Too many blocks for the field: FFFF_FFFFh, as SBC-4 requires.
        BigEndian::write_u32(&mut d[0..4], u32::try_from(blocks).unwrap_or(u32::MAX));
        BigEndian::write_u24(&mut d[5..8], block_size.min(0xFF_FFFF));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Emulator;
    use crate::testutil::*;

    fn ms6(dbd: bool, pc: u8, page: u8, subpage: u8, alloc: u8) -> Vec<u8> {
        vec![
            0x1A,
            if dbd { 0x08 } else { 0 },
            pc << 6 | page,
            subpage,
            alloc,
            0,
        ]
    }

    fn ms10(dbd: bool, llbaa: bool, pc: u8, page: u8, subpage: u8, alloc: u16) -> Vec<u8> {
        let a = alloc.to_be_bytes();
        let byte1 = if dbd { 0x08 } else { 0 } | if llbaa { 0x10 } else { 0 };
        vec![0x5A, byte1, pc << 6 | page, subpage, 0, 0, 0, a[0], a[1], 0]
    }

    fn run(emu: &Emulator<VecDevice>, cdb: &[u8]) -> (ScsiResponse, Vec<u8>) {
        let mut buf = vec![0xEEu8; 512];
        let resp = emu.execute(cdb, &mut buf);
        buf.truncate(resp.data_in_len.unwrap_or(0));
        (resp, buf)
    }

    #[test]
    fn mode_sense_6_all_pages_with_descriptor() {
        let emu = emulator(VecDevice::new(512, 1000));
        let (resp, b) = run(&emu, &ms6(false, 0, 0x3F, 0, 255));
        assert_eq!(resp, ScsiResponse::data_in(4 + 8 + 12 + 20 + 12));
        assert_eq!(usize::from(b[0]), b.len() - 1);
        assert_eq!(b[1], 0, "medium type");
        assert_eq!(b[2], 0x10, "DPOFUA, not write protected");
        assert_eq!(b[3], 8);
        assert_eq!(&b[4..12], &[0, 0, 0x03, 0xE8, 0, 0, 0x02, 0x00]);
        // Read-write error recovery: no recovery parameters.
        assert_eq!(&b[12..14], &[0x01, 0x0A]);
        assert!(b[14..24].iter().all(|&x| x == 0));
        assert_eq!(&b[24..26], &[0x08, 0x12]);
        assert_eq!(b[26] & 0x04, 0, "no write cache");
        assert_eq!(&b[44..46], &[0x0A, 0x0A]);
        assert_eq!(b[46] & 0x04, 0, "D_SENSE");
        assert_eq!(b[46] >> 5, 0, "TST");
        assert_eq!(b[47] & 0x06, 0, "QERR");
    }

    #[test]
    fn mode_sense_6_dbd_omits_descriptor() {
        let emu = emulator(VecDevice::new(512, 1000));
        let (resp, b) = run(&emu, &ms6(true, 0, 0x3F, 0, 255));
        assert_eq!(resp, ScsiResponse::data_in(4 + 12 + 20 + 12));
        assert_eq!(b[0], 47);
        assert_eq!(b[3], 0);
        assert_eq!(b[4], 0x01);
    }

    #[test]
    fn mode_sense_10_lengths() {
        let emu = emulator(VecDevice::new(4096, 1000));
        let (resp, b) = run(&emu, &ms10(false, false, 0, 0x08, 0, 512));
        assert_eq!(resp, ScsiResponse::data_in(8 + 8 + 20));
        assert_eq!(&b[..8], &[0, 34, 0, 0x10, 0, 0, 0, 8]);
        assert_eq!(&b[8..16], &[0, 0, 0x03, 0xE8, 0, 0, 0x10, 0]);
        assert_eq!(b[16], 0x08);

        let (resp, b) = run(&emu, &ms10(true, false, 0, 0x0A, 0, 512));
        assert_eq!(resp, ScsiResponse::data_in(8 + 12));
        assert_eq!(&b[..8], &[0, 18, 0, 0x10, 0, 0, 0, 0]);
        assert_eq!(&b[8..10], &[0x0A, 0x0A]);
    }

    #[test]
    fn mode_sense_10_long_descriptor() {
        let emu = emulator(VecDevice::geometry(512, 0x1_0000_0005));
        let (resp, b) = run(&emu, &ms10(false, true, 0, 0x08, 0, 512));
        assert_eq!(resp, ScsiResponse::data_in(8 + 16 + 20));
        assert_eq!(b[4], 0x01, "LONGLBA");
        assert_eq!(&b[6..8], &[0, 16]);
        assert_eq!(&b[8..16], &0x1_0000_0005u64.to_be_bytes());
        assert_eq!(&b[20..24], &512u32.to_be_bytes());
        // Without LLBAA the short descriptor caps the block count.
        let (_, b) = run(&emu, &ms10(false, false, 0, 0x08, 0, 512));
        assert_eq!(b[4], 0);
        assert_eq!(&b[8..12], &[0xFF; 4]);
    }

    #[test]
    fn write_protect_and_write_cache_bits() {
        let emu = emulator(VecDevice::new(512, 8).read_only().with_write_cache());
        let (_, b) = run(&emu, &ms6(true, 0, 0x08, 0, 255));
        assert_eq!(b[2], 0x90, "WP and DPOFUA");
        assert_eq!(b[6] & 0x04, 0x04, "WCE");
        let (_, b) = run(&emu, &ms10(true, false, 0, 0x08, 0, 255));
        assert_eq!(b[3], 0x90);
    }

    #[test]
    fn changeable_values_are_wce_d_sense_and_swp_and_default_is_current() {
        let emu = emulator(VecDevice::new(512, 8).with_write_cache());
        let (_, cur) = run(&emu, &ms6(true, 0, 0x3F, 0, 255));
        let (_, def) = run(&emu, &ms6(true, 2, 0x3F, 0, 255));
        assert_eq!(cur, def);
        let (_, chg) = run(&emu, &ms6(true, 1, 0x3F, 0, 255));
        assert_eq!(chg.len(), cur.len());
        assert_eq!(&chg[4..6], &[0x01, 0x0A]);
        assert!(chg[6..16].iter().all(|&b| b == 0), "no recovery field");
        assert_eq!(&chg[16..18], &[0x08, 0x12]);
        assert_eq!(chg[18], 0x04, "WCE");
        assert!(chg[19..36].iter().all(|&b| b == 0));
        assert_eq!(&chg[36..38], &[0x0A, 0x0A]);
        assert_eq!(chg[38], 0x04, "D_SENSE");
        assert_eq!(chg[39], 0);
        assert_eq!(chg[40], 0x08, "SWP");
        assert!(chg[41..].iter().all(|&b| b == 0));
    }

    #[test]
    fn saved_values_are_not_supported() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, _) = run(&emu, &ms6(false, 3, 0x3F, 0, 255));
        assert_illegal(&resp, AdditionalSense::SAVING_PARAMETERS_NOT_SUPPORTED);
        let fp = resp.sense.unwrap().field_pointer.unwrap();
        assert_eq!((fp.in_cdb, fp.byte, fp.bit), (true, 2, Some(7)));
        let (resp, _) = run(&emu, &ms10(false, false, 3, 0x08, 0, 255));
        assert_illegal(&resp, AdditionalSense::SAVING_PARAMETERS_NOT_SUPPORTED);
    }

    #[test]
    fn unsupported_pages_and_subpages_are_invalid() {
        let emu = emulator(VecDevice::new(512, 8));
        for (page, subpage, byte, bit) in [
            (0x00, 0, 2, 5),
            (0x02, 0, 2, 5),
            (0x1C, 0, 2, 5),
            (0x08, 1, 3, 7),
            (0x08, 0xFF, 3, 7),
            (0x3F, 1, 3, 7),
        ] {
            let (resp, _) = run(&emu, &ms6(false, 0, page, subpage, 255));
            assert_invalid_field(&resp, byte, bit);
            let (resp, _) = run(&emu, &ms10(false, false, 0, page, subpage, 255));
            assert_invalid_field(&resp, byte, bit);
        }
        let (resp, _) = run(&emu, &ms6(false, 0, 0x3F, 0xFF, 255));
        assert_eq!(resp, ScsiResponse::data_in(56));
    }

    #[test]
    fn truncation_keeps_full_lengths() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, &ms6(false, 0, 0x3F, 0, 4));
        assert_eq!(resp, ScsiResponse::data_in(4));
        assert_eq!(b, [55, 0, 0x10, 8]);
        let (resp, b) = run(&emu, &ms10(false, false, 0, 0x3F, 0, 2));
        assert_eq!(resp, ScsiResponse::data_in(2));
        assert_eq!(b, [0, 58]);
        let (resp, _) = run(&emu, &ms10(false, false, 0, 0x3F, 0, 0));
        assert_eq!(resp, ScsiResponse::data_in(0));
    }
}
