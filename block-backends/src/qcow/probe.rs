//! What an image file is, from its first bytes: qcow2, or what else, so
//! that a wrong file is refused with a message that says what it is.

/// Bytes [`identify`] looks at (VDI's signature is the furthest out).
pub(super) const PROBE_LEN: usize = 0x44;

/// The qcow and qcow2 magic, "QFI\xfb".
const QCOW_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Image formats recognised by a signature at the start of the file.
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"QED\0", "a QED image"),
    (b"KDMV", "a VMDK image"),
    (b"# Disk DescriptorFile", "a VMDK descriptor"),
    (b"vhdxfile", "a VHDX image"),
    (b"conectix", "a VHD image"),
    (b"LUKS\xba\xbe", "a LUKS volume"),
];

/// VDI's signature, little-endian at byte 0x40.
const VDI_SIGNATURE: [u8; 4] = 0xbeda_107fu32.to_le_bytes();

/// What the start of a file says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identified {
    /// A qcow2 image of a version imago reads (2 or 3).
    Qcow2 {
        /// 2 or 3.
        version: u32,
        /// The virtual size in bytes, as the header says.
        size: u64,
    },
    /// Anything else: what it is, as a noun phrase ("a raw image ...").
    Other(String),
}

/// Identify a file from its first bytes, `head` (at most [`PROBE_LEN`]
/// of them; fewer when the file is shorter).
pub(super) fn identify(head: &[u8]) -> Identified {
    if head.is_empty() {
        return Identified::Other("an empty file".into());
    }
    if let Some(rest) = head.strip_prefix(QCOW_MAGIC) {
        let Some(version) = rest.get(..4) else {
            return Identified::Other(format!(
                "a file of {} bytes, too short for a qcow2 header",
                head.len()
            ));
        };
        let version = u32::from_be_bytes(version.try_into().unwrap_or_default());
        return match version {
            2 | 3 => match head.get(24..32) {
                // The virtual size, big-endian at byte 24.
                Some(size) => Identified::Qcow2 {
                    version,
                    size: u64::from_be_bytes(size.try_into().unwrap_or_default()),
                },
                None => Identified::Other(format!(
                    "a file of {} bytes, too short for a qcow2 header",
                    head.len()
                )),
            },
            1 => Identified::Other("a qcow (version 1) image, not qcow2".into()),
            v => Identified::Other(format!("a qcow2 image of unsupported version {v}")),
        };
    }
    if let Some((_, what)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return Identified::Other((*what).into());
    }
    if head.get(0x40..0x44) == Some(&VDI_SIGNATURE[..]) {
        return Identified::Other("a VDI image".into());
    }
    // What QEMU would probe as raw: no format of its own.
    Identified::Other("a raw image (no image format header)".into())
}
