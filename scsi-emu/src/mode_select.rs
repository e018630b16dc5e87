//! MODE SELECT(6) and MODE SELECT(10) (SPC-5 6.11, 6.12).
//!
//! The parameter list is validated completely before anything changes:
//! the header, at most one block descriptor (its block length must be the
//! current one), and caching and control pages with their exact page
//! lengths. A page may differ from the current values only in the
//! changeable bits (WCE, D_SENSE); anything else is INVALID FIELD IN
//! PARAMETER LIST pointing at the first differing bit. A parameter list
//! that ends inside a structure is a PARAMETER LIST LENGTH ERROR.

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field, invalid_parameter, parameter_list_length_error};
use crate::data_buffer::DataBuffer;
use crate::lun::Lun;
use crate::mode_page::{ModePage, ModeValues};
use crate::mode_sense::{LONG_DESCRIPTOR_LEN, LONGLBA, SHORT_DESCRIPTOR_LEN, block_descriptor};
use crate::opcode;
use crate::response::ScsiResponse;

/// Device-specific parameter bits that MODE SENSE reports (WP, DPOFUA)
/// and MODE SELECT ignores; the other bits are reserved.
const DSP_IGNORED: u8 = 0x80 | 0x10;
/// SPF: the page is in sub_page format (no supported page has subpages).
const SPF: u8 = 0x40;

/// A decoded MODE SELECT(6) or MODE SELECT(10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModeSelect {
    /// The 10-byte form (8-byte header, 16-bit lengths).
    ten: bool,
    parameter_list_length: usize,
}

impl ModeSelect {
    /// PF: the parameters are in the standard page format.
    const PF: u8 = 0x10;
    /// SP: save the pages.
    const SP: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let ten = cdb.opcode() == opcode::MODE_SELECT_10;
        // Vendor-specific page formats are not supported.
        if cdb.byte(1) & Self::PF == 0 {
            return Err(invalid_field(1, 4));
        }
        // Nothing is savable: SPC-5 makes SP=1 without saved pages an
        // invalid CDB field.
        if cdb.byte(1) & Self::SP != 0 {
            return Err(invalid_field(1, 0));
        }
        Ok(ModeSelect {
            ten,
            parameter_list_length: if ten {
                usize::from(cdb.be16(7))
            } else {
                usize::from(cdb.byte(4))
            },
        })
    }

    /// The CDB byte of the PARAMETER LIST LENGTH field.
    fn length_field(&self) -> u16 {
        if self.ten { 7 } else { 4 }
    }
}

pub(crate) fn mode_select<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &ModeSelect,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let len = cmd.parameter_list_length;
    // A zero length transfers nothing and is not an error.
    if len == 0 {
        return ScsiResponse::good();
    }
    if data.len() < len {
        return ScsiResponse::check_condition(invalid_field(cmd.length_field(), 7));
    }
    let mut params = vec![0u8; len];
    data.read_at(0, &mut params);

    let mut modes = lun.modes.lock();
    match parse(lun.device(), cmd.ten, &params, *modes) {
        Ok(values) => {
            if values != *modes {
                log::info!("mode parameters changed: {:?} -> {values:?}", *modes);
            }
            *modes = values;
            ScsiResponse::good()
        }
        Err(sense) => ScsiResponse::check_condition(sense),
    }
}

/// Validate `p` and return the mode values it selects, starting from
/// `current`.
fn parse<D: BlockDevice + ?Sized>(
    device: &D,
    ten: bool,
    p: &[u8],
    current: ModeValues,
) -> Result<ModeValues, Sense> {
    let header_len = if ten { 8 } else { 4 };
    if p.len() < header_len {
        return Err(parameter_list_length_error());
    }
    // MODE DATA LENGTH is reserved in MODE SELECT and ignored.
    let (medium_type_at, dsp_at) = if ten { (2, 3) } else { (1, 2) };
    if p[medium_type_at] != 0 {
        return Err(invalid_parameter(medium_type_at, 7));
    }
    let reserved = p[dsp_at] & !DSP_IGNORED;
    if reserved != 0 {
        return Err(invalid_parameter(dsp_at, high_bit(reserved)));
    }
    let (long, descriptor_len, descriptor_len_at) = if ten {
        if p[4] & !LONGLBA != 0 {
            return Err(invalid_parameter(4, high_bit(p[4] & !LONGLBA)));
        }
        (
            p[4] & LONGLBA != 0,
            usize::from(BigEndian::read_u16(&p[6..8])),
            6,
        )
    } else {
        (false, usize::from(p[3]), 3)
    };
    let expected = if long {
        LONG_DESCRIPTOR_LEN
    } else {
        SHORT_DESCRIPTOR_LEN
    };
    // A direct-access device has one block descriptor, or none.
    if descriptor_len != 0 && descriptor_len != expected {
        return Err(invalid_parameter(descriptor_len_at, 7));
    }
    let pages_at = header_len + descriptor_len;
    if p.len() < pages_at {
        return Err(parameter_list_length_error());
    }
    if descriptor_len != 0 {
        check_block_descriptor(device, long, &p[header_len..pages_at], header_len)?;
    }

    let mut values = current;
    let mut at = pages_at;
    while at < p.len() {
        let Some(&[b0, page_length]) = p.get(at..at + 2) else {
            return Err(parameter_list_length_error());
        };
        // PS is reserved in MODE SELECT; what MODE SENSE returned (0)
        // is echoed back by most initiators, anything else is ignored.
        if b0 & SPF != 0 {
            return Err(invalid_parameter(at, 6));
        }
        let page = ModePage::from_code(b0 & 0x3F).ok_or_else(|| invalid_parameter(at, 5))?;
        if page_length != page.page_length() {
            return Err(invalid_parameter(at + 1, 7));
        }
        let end = at + 2 + usize::from(page_length);
        let Some(new) = p.get(at..end) else {
            return Err(parameter_list_length_error());
        };
        let cur = page.encode(values);
        let mask = page.changeable();
        for i in 2..new.len() {
            let changed = (new[i] ^ cur[i]) & !mask[i];
            if changed != 0 {
                return Err(invalid_parameter(at + i, high_bit(changed)));
            }
        }
        values = page.apply(new, values);
        at = end;
    }
    Ok(values)
}

/// The block descriptor may repeat what MODE SENSE reports, or leave the
/// number of blocks zero; the block length must be the current one.
fn check_block_descriptor<D: BlockDevice + ?Sized>(
    device: &D,
    long: bool,
    d: &[u8],
    at: usize,
) -> Result<(), Sense> {
    let current = block_descriptor(device, long);
    let (blocks_len, length_at) = if long { (8, 12) } else { (4, 5) };
    let blocks = &d[..blocks_len];
    if blocks.iter().any(|&b| b != 0) && blocks != &current[..blocks_len] {
        return Err(invalid_parameter(at, 7));
    }
    // Reserved bytes between the two fields must be zero.
    if let Some(i) = (blocks_len..length_at).find(|&i| d[i] != 0) {
        return Err(invalid_parameter(at + i, high_bit(d[i])));
    }
    if d[length_at..] != current[length_at..] {
        return Err(invalid_parameter(at + length_at, 7));
    }
    Ok(())
}

/// The most significant set bit of a non-zero byte.
fn high_bit(b: u8) -> u8 {
    7 - b.leading_zeros().min(7) as u8
}

#[cfg(test)]
mod tests {
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;

    fn ms6(len: u8, flags: u8) -> Vec<u8> {
        vec![0x15, flags, 0, 0, len, 0]
    }

    fn ms10(len: u16, flags: u8) -> Vec<u8> {
        let l = len.to_be_bytes();
        vec![0x55, flags, 0, 0, 0, 0, 0, l[0], l[1], 0]
    }

    const PF: u8 = 0x10;

    fn caching(wce: bool) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x08;
        p[1] = 0x12;
        if wce {
            p[2] = 0x04;
        }
        p
    }

    fn control(d_sense: bool) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p[0] = 0x0A;
        p[1] = 0x0A;
        p[2] = if d_sense { 0x04 } else { 0 };
        p[3] = 0x10;
        p
    }

    /// A MODE SELECT(6) parameter list: header, optional descriptor, pages.
    fn list6(descriptor: Option<[u8; 8]>, pages: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0, 0, 0, 0];
        if let Some(d) = descriptor {
            p[3] = 8;
            p.extend_from_slice(&d);
        }
        for page in pages {
            p.extend_from_slice(page);
        }
        p
    }

    fn list10(descriptor: Option<Vec<u8>>, pages: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        if let Some(d) = descriptor {
            if d.len() == 16 {
                p[4] = LONGLBA;
            }
            p[7] = d.len() as u8;
            p.extend_from_slice(&d);
        }
        for page in pages {
            p.extend_from_slice(page);
        }
        p
    }

    fn select6(emu: &Emulator<VecDevice>, mut params: Vec<u8>) -> ScsiResponse {
        let cdb = ms6(params.len() as u8, PF);
        emu.execute(&cdb, &mut params)
    }

    fn select10(emu: &Emulator<VecDevice>, mut params: Vec<u8>) -> ScsiResponse {
        let cdb = ms10(params.len() as u16, PF);
        emu.execute(&cdb, &mut params)
    }

    /// Assert INVALID FIELD IN PARAMETER LIST at `byte`, `bit`.
    #[track_caller]
    fn assert_bad_param(resp: &ScsiResponse, byte: u16, bit: u8) {
        assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST);
        let fp = resp.sense.unwrap().field_pointer.expect("field pointer");
        assert_eq!((fp.in_cdb, fp.byte, fp.bit), (false, byte, Some(bit)));
    }

    /// Offset of the caching page in MODE SENSE(6) all-pages data without
    /// a block descriptor: after the header and the 12-byte read-write
    /// error recovery page.
    const CACHING_AT: usize = 4 + 12;

    /// Current caching page byte 2 and control page byte 2, as MODE SENSE
    /// reports them.
    fn sensed(emu: &Emulator<VecDevice>) -> (u8, u8) {
        let mut buf = vec![0u8; 64];
        emu.execute(&[0x1A, 0x08, 0x3F, 0, 64, 0], &mut buf);
        (buf[CACHING_AT + 2], buf[CACHING_AT + 20 + 2])
    }

    #[test]
    fn wce_and_d_sense_change_and_mode_sense_follows() {
        let emu = emulator(VecDevice::new(512, 8));
        assert_eq!(sensed(&emu), (0, 0));
        assert!(!emu.write_cache_enabled());
        assert_eq!(
            select6(&emu, list6(None, &[caching(true)])),
            ScsiResponse::good()
        );
        assert_eq!(sensed(&emu), (0x04, 0));
        assert!(emu.write_cache_enabled());
        assert!(!emu.descriptor_sense());
        assert_eq!(
            select10(&emu, list10(None, &[control(true), caching(false)])),
            ScsiResponse::good()
        );
        assert_eq!(sensed(&emu), (0, 0x04));
        assert!(emu.descriptor_sense());
        // Defaults stay what they were.
        let mut buf = vec![0u8; 64];
        emu.execute(&[0x1A, 0x08, 0x80 | 0x3F, 0, 64, 0], &mut buf);
        assert_eq!((buf[CACHING_AT + 2], buf[CACHING_AT + 22]), (0, 0));
    }

    #[test]
    fn software_write_protect_refuses_writes_until_cleared() {
        let emu = emulator(VecDevice::new(512, 8).with_unmap());
        let mut swp = control(false);
        swp[4] = 0x08;
        assert_eq!(select6(&emu, list6(None, &[swp])), ScsiResponse::good());
        // MODE SENSE reports WP in the header and SWP in the page.
        let mut buf = vec![0u8; 64];
        emu.execute(&[0x1A, 0x08, 0x0A, 0, 64, 0], &mut buf);
        assert_eq!(buf[2] & 0x80, 0x80, "WP");
        assert_eq!(buf[4 + 4] & 0x08, 0x08, "SWP");
        // Every command that writes is refused; reads still work.
        let write10 = [0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let resp = emu.execute(&write10, &mut vec![0u8; 512]);
        assert_check(
            &resp,
            SenseKey::DataProtect,
            AdditionalSense::LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED,
        );
        let unmap = [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0];
        let resp = emu.execute(&unmap, &mut vec![0u8; 24]);
        assert_check(
            &resp,
            SenseKey::DataProtect,
            AdditionalSense::LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED,
        );
        let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            emu.execute(&read10, &mut vec![0u8; 512]),
            ScsiResponse::data_in(512)
        );
        assert!(emu.device().calls().iter().all(|&(kind, _, _)| kind == 'r'));
        // Cleared: writes go through and WP is gone.
        assert_eq!(
            select6(&emu, list6(None, &[control(false)])),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&write10, &mut vec![0u8; 512]),
            ScsiResponse::good()
        );
        emu.execute(&[0x1A, 0x08, 0x0A, 0, 64, 0], &mut buf);
        assert_eq!(buf[2] & 0x80, 0, "WP cleared");
    }

    #[test]
    fn descriptor_sense_after_d_sense() {
        let emu = emulator(VecDevice::new(512, 8));
        assert_eq!(
            select6(&emu, list6(None, &[control(true)])),
            ScsiResponse::good()
        );
        // An error now encodes in descriptor format through the glue.
        let resp = emu.execute(&[0x12, 0, 1, 0, 36, 0], &mut vec![0u8; 36]);
        let bytes = resp.sense_bytes(emu.descriptor_sense()).unwrap();
        assert_eq!(&bytes[..4], &[0x72, 0x05, 0x24, 0x00]);
        assert_eq!(&bytes[8..16], &[0x02, 0x06, 0, 0, 0xC0 | 0x08 | 7, 0, 2, 0]);
        // REQUEST SENSE keeps following its own DESC bit.
        let mut buf = vec![0u8; 32];
        let resp = emu.execute(&[0x03, 0, 0, 0, 32, 0], &mut buf);
        assert_eq!(resp.data_in_len, Some(18));
        assert_eq!(buf[0], 0x70);
    }

    #[test]
    fn echoing_mode_sense_data_back_is_accepted() {
        // What sg_wr_mode does: MODE SENSE with the block descriptor, then
        // MODE SELECT of the same bytes with the mode data length zeroed.
        let emu = emulator(VecDevice::new(4096, 1000).with_write_cache());
        let mut buf = vec![0u8; 255];
        let resp = emu.execute(&[0x1A, 0, 0x08, 0, 255, 0], &mut buf);
        let mut params = buf[..resp.data_in_len.unwrap()].to_vec();
        params[0] = 0;
        params[4 + 8 + 2] &= !0x04; // WCE off
        assert_eq!(select6(&emu, params), ScsiResponse::good());
        assert!(!emu.write_cache_enabled());

        let mut buf = vec![0u8; 255];
        let resp = emu.execute(&[0x5A, 0x10, 0x3F, 0, 0, 0, 0, 0, 255, 0], &mut buf);
        let mut params = buf[..resp.data_in_len.unwrap()].to_vec();
        params[0] = 0;
        params[1] = 0;
        params[8 + 16 + 12 + 2] |= 0x04; // WCE on (after page 01h)
        assert_eq!(select10(&emu, params), ScsiResponse::good());
        assert!(emu.write_cache_enabled());
    }

    /// What sg_wr_mode does: MODE SENSE(10) of the page with the block
    /// descriptor, mode data length zeroed, DPOFUA cleared, the masked
    /// bit set, MODE SELECT(10) of the same length.
    fn like_sg_wr_mode(emu: &Emulator<VecDevice>, page: u8, set: u8) -> ScsiResponse {
        let mut buf = vec![0u8; 1024];
        let resp = emu.execute(&[0x5A, 0, page, 0, 0, 0, 0, 0x04, 0x00, 0], &mut buf);
        let mut md = buf[..resp.data_in_len.unwrap()].to_vec();
        md[0] = 0;
        md[1] = 0;
        md[3] &= 0xEF;
        let off = 8 + usize::from(md[7]);
        md[off + 2] = (md[off + 2] & !0x04) | set;
        select10(emu, md)
    }

    #[test]
    fn sg_wr_mode_sequences_are_accepted() {
        let emu = emulator(VecDevice::new(512, 524288));
        assert_eq!(like_sg_wr_mode(&emu, 0x08, 0x04), ScsiResponse::good());
        assert_eq!(like_sg_wr_mode(&emu, 0x0A, 0x04), ScsiResponse::good());
        assert!(emu.write_cache_enabled());
        assert!(emu.descriptor_sense());
        assert_eq!(like_sg_wr_mode(&emu, 0x0A, 0), ScsiResponse::good());
        assert!(!emu.descriptor_sense());
        // A short sg_wr_mode mask zeroes the rest of the control page,
        // QAM included: refused at header 8 + descriptor 8 + byte 3.
        let mut buf = vec![0u8; 1024];
        let resp = emu.execute(&[0x5A, 0, 0x0A, 0, 0, 0, 0, 0x04, 0x00, 0], &mut buf);
        let mut md = buf[..resp.data_in_len.unwrap()].to_vec();
        md[0] = 0;
        md[19..].fill(0);
        assert_bad_param(&select10(&emu, md), 19, 4);
    }

    #[test]
    fn block_descriptor_is_checked() {
        let emu = emulator(VecDevice::new(512, 1000));
        let good = [0, 0, 0x03, 0xE8, 0, 0, 0x02, 0x00];
        let zero_blocks = [0, 0, 0, 0, 0, 0, 0x02, 0x00];
        for d in [good, zero_blocks] {
            assert_eq!(
                select6(&emu, list6(Some(d), &[caching(false)])),
                ScsiResponse::good()
            );
        }
        // Another block length: pointer at LOGICAL BLOCK LENGTH.
        let resp = select6(&emu, list6(Some([0, 0, 0, 0, 0, 0, 0x10, 0]), &[]));
        assert_bad_param(&resp, 4 + 5, 7);
        // Another capacity.
        let resp = select6(&emu, list6(Some([0, 0, 0x03, 0xE9, 0, 0, 2, 0]), &[]));
        assert_bad_param(&resp, 4, 7);
        // Reserved byte.
        let resp = select6(&emu, list6(Some([0, 0, 0, 0, 0x01, 0, 2, 0]), &[]));
        assert_bad_param(&resp, 4 + 4, 0);
        // Long descriptor through MODE SELECT(10).
        let mut long = vec![0u8; 16];
        long[12..16].copy_from_slice(&512u32.to_be_bytes());
        assert_eq!(
            select10(&emu, list10(Some(long.clone()), &[])),
            ScsiResponse::good()
        );
        long[14] = 0x10;
        assert_bad_param(&select10(&emu, list10(Some(long), &[])), 8 + 12, 7);
        // A descriptor length that is not one descriptor.
        let mut p = list6(None, &[]);
        p[3] = 16;
        p.extend_from_slice(&[0; 16]);
        assert_bad_param(&select6(&emu, p), 3, 7);
    }

    #[test]
    fn other_bits_are_not_changeable() {
        let emu = emulator(VecDevice::new(512, 8));
        // RCD (caching byte 2 bit 0).
        let mut page = caching(true);
        page[2] |= 0x01;
        assert_bad_param(&select6(&emu, list6(None, &[page])), 4 + 2, 0);
        // QAM changed to restricted (control byte 3 bits 7-4).
        let mut page = control(false);
        page[3] = 0x00;
        assert_bad_param(&select6(&emu, list6(None, &[page])), 4 + 3, 4);
        // A bit in the last byte of the second page.
        let mut page = control(true);
        page[11] = 0x80;
        assert_bad_param(
            &select10(&emu, list10(None, &[caching(true), page])),
            8 + 20 + 11,
            7,
        );
        // Nothing changed by the refused commands.
        assert_eq!(sensed(&emu), (0, 0));
    }

    #[test]
    fn header_and_page_headers_are_checked() {
        let emu = emulator(VecDevice::new(512, 8));
        // MEDIUM TYPE.
        let mut p = list6(None, &[]);
        p[1] = 1;
        assert_bad_param(&select6(&emu, p), 1, 7);
        // Reserved device-specific bits; WP and DPOFUA are ignored.
        let mut p = list6(None, &[caching(false)]);
        p[2] = 0x90;
        assert_eq!(select6(&emu, p.clone()), ScsiResponse::good());
        p[2] = 0x02;
        assert_bad_param(&select6(&emu, p), 2, 1);
        // Unsupported page, subpage format, wrong page length.
        let mut page = caching(false);
        page[0] = 0x02;
        assert_bad_param(&select6(&emu, list6(None, &[page])), 4, 5);
        let mut page = caching(false);
        page[0] |= 0x40;
        assert_bad_param(&select6(&emu, list6(None, &[page])), 4, 6);
        let mut page = control(false);
        page[1] = 0x0B;
        page.push(0);
        assert_bad_param(&select6(&emu, list6(None, &[page])), 5, 7);
        // PS is ignored.
        let mut page = caching(true);
        page[0] |= 0x80;
        assert_eq!(select6(&emu, list6(None, &[page])), ScsiResponse::good());
        assert!(emu.write_cache_enabled());
    }

    #[test]
    fn truncated_lists_are_length_errors() {
        let emu = emulator(VecDevice::new(512, 8));
        let full = list6(Some([0, 0, 0, 8, 0, 0, 2, 0]), &[caching(true)]);
        for cut in [1, 3, 4 + 7, 4 + 8 + 1, full.len() - 1] {
            let resp = select6(&emu, full[..cut].to_vec());
            assert_illegal(&resp, AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let full = list10(None, &[control(true)]);
        for cut in [7, 8 + 1, full.len() - 1] {
            let resp = select10(&emu, full[..cut].to_vec());
            assert_illegal(&resp, AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        }
        assert_eq!(sensed(&emu), (0, 0));
    }

    #[test]
    fn cdb_checks() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut p = list6(None, &[caching(true)]);
        let len = p.len() as u8;
        // PF=0, SP=1.
        assert_invalid_field(&emu.execute(&ms6(len, 0), &mut p), 1, 4);
        assert_invalid_field(&emu.execute(&ms6(len, PF | 1), &mut p), 1, 0);
        assert_invalid_field(&emu.execute(&ms10(len.into(), PF | 1), &mut p), 1, 0);
        // Zero length: nothing to do.
        assert_eq!(
            emu.execute(&ms6(0, PF), &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        // Less data than the CDB announces.
        assert_invalid_field(&emu.execute(&ms6(len + 1, PF), &mut p), 4, 7);
        assert_invalid_field(&emu.execute(&ms10(300, PF), &mut p), 7, 7);
        assert!(!emu.write_cache_enabled());
    }

    #[test]
    fn read_only_device_accepts_mode_select() {
        let emu = emulator(VecDevice::new(512, 8).read_only());
        assert_eq!(
            select6(&emu, list6(None, &[caching(true)])),
            ScsiResponse::good()
        );
        assert!(emu.write_cache_enabled());
    }

    #[test]
    fn wce_off_makes_writes_durable_on_a_cached_device() {
        let emu = emulator(VecDevice::new(512, 8).with_write_cache());
        let mut buf = vec![7u8; 512];
        let write = [0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0];
        assert_eq!(emu.execute(&write, &mut buf), ScsiResponse::good());
        assert_eq!(
            select6(&emu, list6(None, &[caching(false)])),
            ScsiResponse::good()
        );
        assert_eq!(emu.execute(&write, &mut buf), ScsiResponse::good());
        assert_eq!(emu.device().calls(), [('w', 1, 512), ('f', 1, 512)]);
        // On a device without a cache WCE=1 is accepted and changes nothing
        // about how writes reach it.
        let emu = emulator(VecDevice::new(512, 8));
        assert_eq!(
            select6(&emu, list6(None, &[caching(true)])),
            ScsiResponse::good()
        );
        assert_eq!(emu.execute(&write, &mut buf), ScsiResponse::good());
        assert_eq!(emu.device().calls(), [('w', 1, 512)]);
    }
}
