//! INQUIRY: standard data and the vital product data pages (SPC-5 6.7,
//! 7.7; the block device pages of SBC-4 6.6 are built in
//! [`vpd`](crate::vpd)).

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::cdb::{Cdb, invalid_field};
use crate::data_buffer::DataBuffer;
use crate::identity::{LunIdentity, ascii_padded};
use crate::lun::Lun;
use crate::port_groups::LocalPort;
use crate::response::{ScsiResponse, send_data_in};
use crate::vpd;

/// PERIPHERAL QUALIFIER 0 (connected) and DEVICE TYPE 0 (direct access).
const PERIPHERAL_DIRECT_ACCESS: u8 = 0x00;
/// VERSION: SPC-4. Linux treats anything above SPC-2 alike (READ
/// CAPACITY(16) first, VPD pages read from the supported-pages list).
const VERSION_SPC4: u8 = 0x06;
/// HISUP (hierarchical LUNs) with RESPONSE DATA FORMAT 2.
const HISUP_RDF2: u8 = 0x10 | 0x02;
/// CMDQUE: full task management; Linux only queues commands when set.
const CMDQUE: u8 = 0x02;
/// Byte 5, 3PC: the unit is a copy manager (EXTENDED COPY), for copies
/// within itself at least.
const THIRD_PARTY_COPY: u8 = 0x08;
/// Byte 5, TPGS 01b: asymmetric access with implicit transitions only.
const TPGS_IMPLICIT: u8 = 0x10;
/// Length of the standard data we return: through the last of the eight
/// VERSION DESCRIPTOR fields (bytes 58-73).
const STANDARD_LEN: usize = 74;
/// Where the VERSION DESCRIPTOR fields start.
const VERSION_DESCRIPTORS_AT: usize = 58;
/// The standards claimed, in the order SPC-5 asks for (architecture,
/// command sets; the transport's descriptor belongs to the fabric, which
/// the handler does not know): SAM-5, SPC-4 and SBC-3, each with no
/// version claimed. Initiators and conformance suites read SBC-3 here as
/// "the Block Limits page is the long one" (SBC-3 6.6.3).
const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];

/// A supported VPD page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VpdPage {
    SupportedPages,
    UnitSerialNumber,
    DeviceIdentification,
    ExtendedInquiry,
    BlockLimits,
    BlockDeviceCharacteristics,
    LogicalBlockProvisioning,
}

impl VpdPage {
    /// Every supported page, in ascending page-code order (the order page
    /// 0x00 must list them in).
    const ALL: [VpdPage; 7] = [
        VpdPage::SupportedPages,
        VpdPage::UnitSerialNumber,
        VpdPage::DeviceIdentification,
        VpdPage::ExtendedInquiry,
        VpdPage::BlockLimits,
        VpdPage::BlockDeviceCharacteristics,
        VpdPage::LogicalBlockProvisioning,
    ];

    fn code(self) -> u8 {
        match self {
            VpdPage::SupportedPages => 0x00,
            VpdPage::UnitSerialNumber => 0x80,
            VpdPage::DeviceIdentification => 0x83,
            VpdPage::ExtendedInquiry => 0x86,
            VpdPage::BlockLimits => 0xB0,
            VpdPage::BlockDeviceCharacteristics => 0xB1,
            VpdPage::LogicalBlockProvisioning => 0xB2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// A decoded INQUIRY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inquiry {
    /// `None`: standard INQUIRY data.
    page: Option<VpdPage>,
    allocation_length: usize,
}

impl Inquiry {
    const EVPD: u8 = 0x01;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let page_code = cdb.byte(2);
        let page = if cdb.byte(1) & Self::EVPD == 0 {
            // A page code without EVPD is an error (SPC-5 6.7.1).
            if page_code != 0 {
                return Err(invalid_field(2, 7));
            }
            None
        } else {
            Some(VpdPage::from_code(page_code).ok_or_else(|| invalid_field(2, 7))?)
        };
        Ok(Inquiry {
            page,
            allocation_length: usize::from(cdb.be16(3)),
        })
    }
}

pub(crate) fn inquiry<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &Inquiry,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let identity = lun.identity();
    let identity = &identity;
    // Asked again every time: an administrator moves ports and changes
    // states while the unit serves.
    let ports = lun.current_port_groups();
    let local_port = ports
        .as_ref()
        .filter(|p| p.asymmetric())
        .and_then(|p| p.local_port);
    let payload = match cmd.page {
        None => standard_data(identity, local_port.is_some()),
        Some(page) => {
            let body = match page {
                VpdPage::SupportedPages => supported_pages(),
                VpdPage::UnitSerialNumber => identity.serial_bytes(),
                VpdPage::DeviceIdentification => device_identification(identity, local_port),
                VpdPage::ExtendedInquiry => vpd::extended_inquiry(),
                VpdPage::BlockLimits => vpd::block_limits(&lun.limits),
                VpdPage::BlockDeviceCharacteristics => vpd::block_device_characteristics(&lun.caps),
                VpdPage::LogicalBlockProvisioning => vpd::logical_block_provisioning(&lun.caps),
            };
            vpd_page(page, body)
        }
    };
    send_data_in(data, &payload, cmd.allocation_length)
}

fn standard_data(identity: &LunIdentity, asymmetric: bool) -> Vec<u8> {
    let mut b = vec![0u8; STANDARD_LEN];
    b[0] = PERIPHERAL_DIRECT_ACCESS;
    b[2] = VERSION_SPC4;
    b[3] = HISUP_RDF2;
    // ADDITIONAL LENGTH: bytes after byte 4.
    b[4] = (STANDARD_LEN - 5) as u8;
    // Byte 5: no SCCS, ACC or PROTECT; 3PC; TPGS 01b (implicit only)
    // while the unit reports asymmetric access.
    b[5] = THIRD_PARTY_COPY | if asymmetric { TPGS_IMPLICIT } else { 0 };
    b[7] = CMDQUE;
    b[8..16].copy_from_slice(&ascii_padded(&identity.vendor, 8));
    b[16..32].copy_from_slice(&ascii_padded(&identity.product, 16));
    b[32..36].copy_from_slice(&ascii_padded(&identity.revision, 4));
    for (i, code) in VERSION_DESCRIPTORS.iter().enumerate() {
        let at = VERSION_DESCRIPTORS_AT + 2 * i;
        BigEndian::write_u16(&mut b[at..at + 2], *code);
    }
    b
}

/// A VPD page: the 4-byte header, then `body`. Bodies are bounded (the
/// serial is capped), so the 16-bit PAGE LENGTH always fits.
fn vpd_page(page: VpdPage, body: Vec<u8>) -> Vec<u8> {
    let mut b = vec![PERIPHERAL_DIRECT_ACCESS, page.code(), 0, 0];
    BigEndian::write_u16(&mut b[2..4], u16::try_from(body.len()).unwrap_or(u16::MAX));
    b.extend_from_slice(&body);
    b
}

fn supported_pages() -> Vec<u8> {
    VpdPage::ALL.iter().map(|p| p.code()).collect()
}

/// Designation descriptor fields (SPC-5 7.7.6.1).
const CODE_SET_BINARY: u8 = 0x1;
const CODE_SET_ASCII: u8 = 0x2;
/// ASSOCIATION 0 (the logical unit) with the given DESIGNATOR TYPE.
const LU_T10_VENDOR_ID: u8 = 0x1;
const LU_NAA: u8 = 0x3;
/// ASSOCIATION 1 (the target port) with DESIGNATOR TYPE 4 (relative
/// target port) and 5 (target port group).
const PORT_RELATIVE: u8 = 0x14;
const PORT_GROUP: u8 = 0x15;
/// PIV: the PROTOCOL IDENTIFIER field is valid.
const PIV: u8 = 0x80;

/// VPD 0x83: an NAA designator (what Linux uses for the disk's WWN) and a
/// T10 vendor ID designator (vendor + serial, readable by people); with
/// asymmetric access also the port the command came through and its
/// group, which is how an initiator tells its paths' groups apart.
fn device_identification(identity: &LunIdentity, local_port: Option<LocalPort>) -> Vec<u8> {
    let mut body = Vec::new();
    push_designator(&mut body, None, CODE_SET_BINARY, LU_NAA, &identity.naa());
    let mut t10 = ascii_padded(&identity.vendor, 8);
    t10.extend_from_slice(&identity.serial_bytes());
    push_designator(&mut body, None, CODE_SET_ASCII, LU_T10_VENDOR_ID, &t10);
    if let Some(port) = local_port {
        let [hi, lo] = port.relative_port.to_be_bytes();
        push_designator(
            &mut body,
            port.protocol,
            CODE_SET_BINARY,
            PORT_RELATIVE,
            &[0, 0, hi, lo],
        );
        let [hi, lo] = port.group_id.to_be_bytes();
        push_designator(
            &mut body,
            port.protocol,
            CODE_SET_BINARY,
            PORT_GROUP,
            &[0, 0, hi, lo],
        );
    }
    body
}

/// One designation descriptor. Designators of the logical unit carry no
/// protocol; a port's names its transport's when it is known.
fn push_designator(
    out: &mut Vec<u8>,
    protocol: Option<u8>,
    code_set: u8,
    assoc_and_type: u8,
    designator: &[u8],
) {
    let (protocol, piv) = match protocol {
        Some(p) => ((p & 0x0F) << 4, PIV),
        None => (0, 0),
    };
    let len = u8::try_from(designator.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[protocol | code_set, piv | assoc_and_type, 0, len]);
    out.extend_from_slice(&designator[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::MAX_SERIAL_LEN;
    use crate::testutil::*;
    use crate::{Emulator, LunIdentity};

    fn cdb(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
        let a = alloc.to_be_bytes();
        [0x12, u8::from(evpd), page, a[0], a[1], 0]
    }

    fn run(emu: &Emulator<VecDevice>, cdb: [u8; 6], buf_len: usize) -> (ScsiResponse, Vec<u8>) {
        let mut buf = vec![0xEEu8; buf_len];
        let resp = emu.execute(&cdb, &mut buf);
        let n = resp.data_in_len.unwrap_or(0);
        buf.truncate(n);
        (resp, buf)
    }

    #[test]
    fn standard_data_layout() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, cdb(false, 0, 255), 255);
        assert_eq!(resp, ScsiResponse::data_in(74));
        assert_eq!(b[0], 0x00, "connected direct-access device");
        assert_eq!(b[1], 0x00, "not removable");
        assert_eq!(b[2], 0x06);
        assert_eq!(b[3] & 0x0F, 2, "response data format");
        assert_ne!(b[3] & 0x10, 0, "HISUP");
        assert_eq!(usize::from(b[4]) + 5, b.len(), "additional length");
        assert_ne!(b[7] & 0x02, 0, "CMDQUE");
        assert_eq!(&b[8..16], b"TCMU-RS ");
        assert_eq!(&b[16..32], b"vec disk        ");
        assert_eq!(&b[32..36], b"0.1 ");
        // SAM-5, SPC-4 and SBC-3, then unused descriptors.
        assert_eq!(b[58..64], [0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0]);
        assert!(b[64..74].iter().all(|&x| x == 0));
        assert!(b[36..58].iter().all(|&x| x == 0));
    }

    #[test]
    fn identity_strings_are_cut_and_sanitized() {
        let mut id = LunIdentity::new("s", "a product name that is too long");
        id.vendor = "VENDOR-TOO-LONG".into();
        id.revision = "r\u{e9}v99".into();
        let emu = Emulator::new(VecDevice::new(512, 8), id);
        let (_, b) = run(&emu, cdb(false, 0, 36), 36);
        assert_eq!(&b[8..16], b"VENDOR-T");
        assert_eq!(&b[16..32], b"a product name t");
        assert_eq!(&b[32..36], b"r_v9");
    }

    #[test]
    fn standard_data_is_truncated_to_allocation_length() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, cdb(false, 0, 5), 64);
        assert_eq!(resp, ScsiResponse::data_in(5));
        assert_eq!(b[4], 69, "length field describes the full data");
        let (resp, _) = run(&emu, cdb(false, 0, 0), 64);
        assert_eq!(resp, ScsiResponse::data_in(0));
        // A buffer smaller than the allocation length caps the transfer.
        let (resp, _) = run(&emu, cdb(false, 0, 96), 10);
        assert_eq!(resp, ScsiResponse::data_in(10));
    }

    #[test]
    fn page_code_without_evpd_is_invalid() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, _) = run(&emu, cdb(false, 0x80, 255), 255);
        assert_invalid_field(&resp, 2, 7);
    }

    #[test]
    fn unknown_vpd_page_is_invalid() {
        let emu = emulator(VecDevice::new(512, 8));
        for page in [0x01, 0x81, 0x87, 0x89, 0xB3, 0xB9, 0xFF] {
            let (resp, _) = run(&emu, cdb(true, page, 255), 255);
            assert_invalid_field(&resp, 2, 7);
        }
    }

    #[test]
    fn vpd_supported_pages() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, cdb(true, 0x00, 255), 255);
        assert_eq!(resp, ScsiResponse::data_in(11));
        assert_eq!(
            b,
            [
                0x00, 0x00, 0x00, 0x07, 0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2
            ]
        );
        // Every listed page answers, with its own page code and a length
        // that matches.
        for &page in &b[4..] {
            let (resp, p) = run(&emu, cdb(true, page, 1024), 1024);
            assert_eq!(resp.status, ScsiStatus::Good, "{page:#x}");
            assert_eq!(p[1], page);
            assert_eq!(usize::from(BigEndian::read_u16(&p[2..4])) + 4, p.len());
        }
    }

    #[test]
    fn third_party_copy_but_no_protection_claimed() {
        let emu = emulator(VecDevice::new(512, 8));
        let (_, b) = run(&emu, cdb(false, 0, 36), 36);
        assert_eq!(b[5], 0x08, "3PC; SCCS, ACC, TPGS, PROTECT clear");
    }

    #[test]
    fn vpd_unit_serial_number() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, cdb(true, 0x80, 255), 255);
        assert_eq!(resp, ScsiResponse::data_in(10));
        assert_eq!(&b[..4], &[0x00, 0x80, 0x00, 0x06]);
        assert_eq!(&b[4..], b"SN0001");
    }

    #[test]
    fn vpd_device_identification() {
        let emu = emulator(VecDevice::new(512, 8));
        let naa = LunIdentity::new("SN0001", "x").naa();
        let (resp, b) = run(&emu, cdb(true, 0x83, 255), 255);
        // Header 4 + NAA (4 + 8) + T10 (4 + 8 + 6).
        assert_eq!(resp, ScsiResponse::data_in(34));
        assert_eq!(&b[..4], &[0x00, 0x83, 0x00, 30]);
        let naa_desc = &b[4..16];
        assert_eq!(&naa_desc[..4], &[0x01, 0x03, 0x00, 0x08]);
        assert_eq!(&naa_desc[4..], &naa);
        assert_eq!(naa_desc[4] >> 4, 3);
        let t10 = &b[16..];
        assert_eq!(&t10[..4], &[0x02, 0x01, 0x00, 14]);
        assert_eq!(&t10[4..], b"TCMU-RS SN0001");
    }

    #[test]
    fn vpd_pages_are_truncated_to_allocation_length() {
        let emu = emulator(VecDevice::new(512, 8));
        let (resp, b) = run(&emu, cdb(true, 0x83, 4), 255);
        assert_eq!(resp, ScsiResponse::data_in(4));
        assert_eq!(b, [0x00, 0x83, 0x00, 30]);
        let (resp, _) = run(&emu, cdb(true, 0x80, 2), 255);
        assert_eq!(resp, ScsiResponse::data_in(2));
    }

    #[test]
    fn long_serial_fits_the_designator() {
        let id = LunIdentity::new("x".repeat(400), "p");
        let emu = Emulator::new(VecDevice::new(512, 8), id);
        let (_, b) = run(&emu, cdb(true, 0x80, 1024), 1024);
        assert_eq!(b.len(), 4 + MAX_SERIAL_LEN);
        let (_, b) = run(&emu, cdb(true, 0x83, 1024), 1024);
        let t10 = &b[16..];
        assert_eq!(usize::from(t10[3]), 255);
        assert_eq!(t10.len(), 4 + 255);
        assert_eq!(usize::from(BigEndian::read_u16(&b[2..4])) + 4, b.len());
    }

    #[test]
    fn a_serial_set_later_is_reported_in_both_pages() {
        let emu = emulator(VecDevice::new(512, 8));
        let naa_before = emu.identity().naa();
        emu.set_serial("set-by-admin");
        let (_, b) = run(&emu, cdb(true, 0x80, 255), 255);
        assert_eq!(&b[4..], b"set-by-admin");
        let naa = emu.identity().naa();
        assert_ne!(naa, naa_before, "the NAA designator follows the serial");
        let (_, b) = run(&emu, cdb(true, 0x83, 255), 255);
        assert!(
            b.windows(8).any(|w| w == naa),
            "VPD 0x83 carries the new NAA designator"
        );
    }

    struct Unreadable;
    impl crate::PortGroupSource for Unreadable {
        fn port_groups(&self) -> std::io::Result<crate::PortGroups> {
            Err(std::io::Error::other("configfs is gone"))
        }
    }

    #[test]
    fn tpgs_is_implicit_while_a_local_port_is_reported() {
        let emu = emulator(VecDevice::new(512, 8))
            .with_port_groups(crate::port_groups::two_gateways(true));
        let (_, b) = run(&emu, cdb(false, 0, 36), 36);
        assert_eq!(b[5], 0x18, "3PC and TPGS 01b");
        for source in [
            crate::port_groups::two_gateways(false),
            crate::PortGroups::default(),
        ] {
            let emu = emulator(VecDevice::new(512, 8)).with_port_groups(source);
            let (_, b) = run(&emu, cdb(false, 0, 36), 36);
            assert_eq!(b[5], 0x08, "no local port or no groups: no TPGS");
        }
        let emu = emulator(VecDevice::new(512, 8)).with_port_groups(Unreadable);
        let (resp, b) = run(&emu, cdb(false, 0, 36), 36);
        assert_eq!(resp.status, ScsiStatus::Good);
        assert_eq!(b[5], 0x08, "an unreadable source reports no TPGS");
    }

    #[test]
    fn vpd_device_identification_names_the_port_and_its_group() {
        let emu = emulator(VecDevice::new(512, 8))
            .with_port_groups(crate::port_groups::two_gateways(true));
        let (resp, b) = run(&emu, cdb(true, 0x83, 255), 255);
        // As without ALUA, then two 8-byte port designators.
        assert_eq!(resp, ScsiResponse::data_in(34 + 16));
        assert_eq!(&b[..4], &[0x00, 0x83, 0x00, 30 + 16]);
        // iSCSI (5) with PIV; target port association; types 4 and 5.
        assert_eq!(&b[34..42], &[0x51, 0x94, 0, 4, 0, 0, 0, 1]);
        assert_eq!(&b[42..50], &[0x51, 0x95, 0, 4, 0, 0, 0, 1]);
        let emu = emulator(VecDevice::new(512, 8))
            .with_port_groups(crate::port_groups::two_gateways(false));
        let (resp, _) = run(&emu, cdb(true, 0x83, 255), 255);
        assert_eq!(
            resp,
            ScsiResponse::data_in(34),
            "no local port, no designators"
        );
    }
}
