//! The bodies of the vital product data pages beyond identification:
//! Extended INQUIRY Data (86h, SPC-5 7.7.7), Block Limits (B0h, SBC-4
//! 6.6.4), Block Device Characteristics (B1h, SBC-4 6.6.2) and Logical
//! Block Provisioning (B2h, SBC-4 6.6.6). INQUIRY adds the page header.

use byteorder::{BigEndian, ByteOrder};

use crate::capabilities::Capabilities;
use crate::limits::Limits;

/// PAGE LENGTH of the 86h, B0h and B1h pages.
const LONG_PAGE_LEN: usize = 0x3C;

/// 86h byte 5: HEADSUP, ORDSUP, SIMPSUP: head of queue, ordered and
/// simple task attributes are accepted (LIO orders the tasks).
const TASK_ATTRIBUTES: u8 = 0x04 | 0x02 | 0x01;
/// 86h byte 6: V_SUP, a volatile cache is supported (WCE, SYNCHRONIZE
/// CACHE, FUA). NV_SUP, CRD_SUP and WU_SUP (non-volatile cache,
/// WRITE LONG correction disable and write uncorrectable) stay zero.
const V_SUP: u8 = 0x01;

/// Extended INQUIRY Data: no protection information (SPT 0, no checks).
pub(crate) fn extended_inquiry() -> Vec<u8> {
    let mut b = vec![0u8; LONG_PAGE_LEN];
    b[5 - 4] = TASK_ATTRIBUTES;
    b[6 - 4] = V_SUP;
    b
}

/// B0h byte 4: WSNZ, WRITE SAME with zero blocks ("to the end of the
/// medium") is refused; initiators always give a length.
const WSNZ: u8 = 0x01;

/// Block Limits, from the emulator's limits. Values beyond a field's
/// width are reported as its maximum.
pub(crate) fn block_limits(limits: &Limits) -> Vec<u8> {
    let u32_of = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let mut b = vec![0u8; LONG_PAGE_LEN];
    let at = |byte: usize| byte - 4;
    b[at(4)] = WSNZ;
    b[at(5)] = u8::try_from(limits.max_compare_and_write).unwrap_or(u8::MAX);
    BigEndian::write_u16(
        &mut b[at(6)..at(8)],
        u16::try_from(limits.transfer_granularity).unwrap_or(u16::MAX),
    );
    BigEndian::write_u32(&mut b[at(8)..at(12)], u32_of(limits.max_transfer));
    BigEndian::write_u32(&mut b[at(12)..at(16)], u32_of(limits.optimal_transfer));
    // MAXIMUM PREFETCH LENGTH 0: no limit (PRE-FETCH fetches nothing).
    BigEndian::write_u32(&mut b[at(20)..at(24)], u32_of(limits.max_unmap));
    BigEndian::write_u32(&mut b[at(24)..at(28)], u32_of(limits.max_unmap_descriptors));
    // OPTIMAL UNMAP GRANULARITY and alignment not reported: any block.
    BigEndian::write_u64(&mut b[at(36)..at(44)], limits.max_write_same);
    // MAXIMUM ATOMIC TRANSFER LENGTH (0: no WRITE ATOMIC). ATOMIC
    // ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY stay 0 (any LBA and
    // length), and so do the two atomic boundary fields: no boundaries.
    BigEndian::write_u32(&mut b[at(44)..at(48)], u32_of(limits.max_atomic_transfer));
    b
}

/// B1h byte 8: VBULS, VERIFY with a byte check of an unmapped block
/// compares its (zero or stale) contents instead of failing.
const VBULS: u8 = 0x01;

/// B1h byte 7, WABEREQ (bits 7-6) 01b: after a BLOCK ERASE, reads
/// succeed (and return zeros) before any write. WACEREQ (bits 5-4) stays
/// 00b: CRYPTOGRAPHIC ERASE is not supported.
const WABEREQ_READS_SUCCEED: u8 = 0x40;

/// Block Device Characteristics: a non-rotating medium (MEDIUM ROTATION
/// RATE 1), form factor not reported, not zoned; WABEREQ says what reads
/// return after SANITIZE BLOCK ERASE, when the unit offers it.
pub(crate) fn block_device_characteristics(caps: &Capabilities) -> Vec<u8> {
    let mut b = vec![0u8; LONG_PAGE_LEN];
    BigEndian::write_u16(&mut b[0..2], 0x0001);
    if caps.block_erase() {
        b[7 - 4] = WABEREQ_READS_SUCCEED;
    }
    b[8 - 4] = VBULS;
    b
}

/// B2h byte 5 bits.
const LBPU: u8 = 0x80;
const LBPWS: u8 = 0x40;
const LBPWS10: u8 = 0x20;
/// LBPRZ field (bits 4-2) value 001b: deallocated blocks read as zeros.
const LBPRZ_ZEROES: u8 = 0x04;
/// PROVISIONING TYPE 010b: thin provisioned.
const THIN_PROVISIONED: u8 = 0x02;

/// Logical Block Provisioning: thin provisioned with UNMAP and WRITE SAME
/// (10/16) unmapping when the device can unmap, fully provisioned
/// otherwise. Agrees with READ CAPACITY(16)'s LBPME and LBPRZ.
pub(crate) fn logical_block_provisioning(caps: &Capabilities) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    if caps.unmap {
        b[1] = LBPU | LBPWS | LBPWS10;
        if caps.unmap_reads_zeroes {
            b[1] |= LBPRZ_ZEROES;
        }
        b[2] = THIN_PROVISIONED;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn page(emu: &crate::Emulator<VecDevice>, code: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 255];
        let resp = emu.execute(&[0x12, 1, code, 0, 255, 0], &mut buf);
        buf.truncate(resp.data_in_len.unwrap());
        assert_eq!(&buf[..2], &[0x00, code]);
        assert_eq!(usize::from(BigEndian::read_u16(&buf[2..4])) + 4, buf.len());
        buf
    }

    #[test]
    fn extended_inquiry_page() {
        let emu = emulator(VecDevice::new(512, 8));
        let b = page(&emu, 0x86);
        assert_eq!(b.len(), 64);
        assert_eq!(b[4], 0, "no protection: SPT, GRD_CHK, APP_CHK, REF_CHK");
        assert_eq!(b[5], 0x07, "HEADSUP ORDSUP SIMPSUP");
        assert_eq!(b[6], 0x01, "V_SUP only");
        assert!(b[7..].iter().all(|&x| x == 0));
    }

    #[test]
    fn block_limits_page_without_unmap() {
        let emu = emulator(VecDevice::new(512, 8));
        let b = page(&emu, 0xB0);
        assert_eq!(b.len(), 64);
        assert_eq!(b[4], 0x01, "WSNZ");
        assert_eq!(b[5], 16, "MAXIMUM COMPARE AND WRITE LENGTH");
        assert_eq!(BigEndian::read_u16(&b[6..8]), 8, "granularity: 4 KiB");
        assert_eq!(BigEndian::read_u32(&b[8..12]), 2048, "1 MiB");
        assert_eq!(BigEndian::read_u32(&b[12..16]), 2048);
        assert_eq!(BigEndian::read_u32(&b[16..20]), 0);
        assert_eq!(BigEndian::read_u32(&b[20..24]), 0, "no unmap");
        assert_eq!(BigEndian::read_u32(&b[24..28]), 0, "no unmap");
        assert_eq!(BigEndian::read_u64(&b[36..44]), 1 << 21);
        assert!(b[44..].iter().all(|&x| x == 0), "no atomic writes");
    }

    #[test]
    fn block_limits_page_reports_atomic_writes_within_the_transfer_limit() {
        // Declared blocks per atomic write, bytes per command, reported.
        for (atomic, max_io, reported) in [
            (64, 1 << 20, 64),
            (u64::MAX, 1 << 20, 2048),
            (4096, 1 << 20, 2048),
            (8, 2048, 4),
        ] {
            let emu = emulator(VecDevice::new(512, 8).with_atomic_writes(atomic))
                .with_max_io_bytes(max_io);
            let b = page(&emu, 0xB0);
            assert_eq!(
                BigEndian::read_u32(&b[44..48]),
                reported,
                "MAXIMUM ATOMIC TRANSFER LENGTH for {atomic}"
            );
            assert_eq!(BigEndian::read_u32(&b[48..52]), 0, "ATOMIC ALIGNMENT");
            assert_eq!(BigEndian::read_u32(&b[52..56]), 0, "GRANULARITY");
            assert_eq!(BigEndian::read_u32(&b[56..60]), 0, "WITH ATOMIC BOUNDARY");
            assert_eq!(BigEndian::read_u32(&b[60..64]), 0, "MAXIMUM BOUNDARY SIZE");
        }
    }

    #[test]
    fn block_limits_page_with_unmap_and_configured_transfer() {
        let emu = emulator(VecDevice::new(4096, 8).with_unmap()).with_max_io_bytes(512 * 1024);
        let b = page(&emu, 0xB0);
        assert_eq!(BigEndian::read_u16(&b[6..8]), 1);
        assert_eq!(BigEndian::read_u32(&b[8..12]), 128);
        assert_eq!(BigEndian::read_u32(&b[20..24]), 1 << 17);
        assert_eq!(BigEndian::read_u32(&b[24..28]), 256);
        assert_eq!(BigEndian::read_u64(&b[36..44]), 1 << 18);
    }

    #[test]
    fn block_device_characteristics_page() {
        let emu = emulator(VecDevice::new(512, 8));
        let b = page(&emu, 0xB1);
        assert_eq!(b.len(), 64);
        assert_eq!(
            &b[4..8],
            &[0x00, 0x01, 0x00, 0x00],
            "non-rotating, form factor 0"
        );
        assert_eq!(b[7], 0x00, "no BLOCK ERASE: WABEREQ 0, WACEREQ 0");
        assert_eq!(b[8], 0x01, "VBULS, not zoned");
        // Unmapped blocks reading as zeros make BLOCK ERASE possible:
        // reads after it succeed.
        let b = page(&emulator(VecDevice::new(512, 8).with_unmap()), 0xB1);
        assert_eq!(b[7], 0x40, "WABEREQ 01b, WACEREQ 0");
        let b = page(
            &emulator(VecDevice::new(512, 8).with_unmap_keeping_data()),
            0xB1,
        );
        assert_eq!(b[7], 0x00, "unmapped blocks keep data: no BLOCK ERASE");
    }

    #[test]
    fn logical_block_provisioning_page_matches_read_capacity() {
        let rc16 = [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
        for (dev, byte5, byte6, lbp) in [
            (VecDevice::new(512, 8), 0x00, 0x00, 0x00),
            (VecDevice::new(512, 8).with_unmap(), 0xE4, 0x02, 0xC0),
            (
                VecDevice::new(512, 8).with_unmap_keeping_data(),
                0xE0,
                0x02,
                0x80,
            ),
        ] {
            let emu = emulator(dev);
            let b = page(&emu, 0xB2);
            assert_eq!(b, [0x00, 0xB2, 0x00, 0x04, 0x00, byte5, byte6, 0x00]);
            let mut cap = vec![0u8; 32];
            emu.execute(&rc16, &mut cap);
            assert_eq!(cap[14], lbp, "LBPME/LBPRZ");
        }
    }
}
