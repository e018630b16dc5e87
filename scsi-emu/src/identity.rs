//! The identity a logical unit reports in INQUIRY and its VPD pages.

/// Vendor identification used when none is given.
pub const DEFAULT_VENDOR: &str = "TCMU-RS";

/// Longest unit serial number reported. VPD 0x83 carries the serial in a
/// T10 vendor ID designator after the 8-byte vendor field, and a
/// designator's length is one byte: 255 - 8.
pub const MAX_SERIAL_LEN: usize = 247;

/// How a logical unit identifies itself.
///
/// All strings are reported as printable ASCII: other characters are
/// replaced by `_`, and overlong values are cut to the field width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunIdentity {
    /// T10 vendor identification: at most 8 ASCII characters, space padded
    /// on the wire.
    pub vendor: String,
    /// Product identification: at most 16 characters, space padded.
    pub product: String,
    /// Product revision level: at most 4 characters, space padded.
    pub revision: String,
    /// Unit serial number (VPD page 0x80); also the source of the NAA
    /// designator. At most [`MAX_SERIAL_LEN`] characters are used.
    pub serial: String,
}

impl LunIdentity {
    /// Vendor [`DEFAULT_VENDOR`], the given product (usually the device's
    /// [`product_name`](crate::BlockDevice::product_name)), this crate's
    /// major.minor version as revision, and the given serial.
    pub fn new(serial: impl Into<String>, product: impl Into<String>) -> Self {
        LunIdentity {
            vendor: DEFAULT_VENDOR.to_string(),
            product: product.into(),
            revision: format!(
                "{}.{}",
                env!("CARGO_PKG_VERSION_MAJOR"),
                env!("CARGO_PKG_VERSION_MINOR")
            ),
            serial: serial.into(),
        }
    }

    /// [`LunIdentity::new`] with the product name `device` reports.
    pub fn for_device<D: crate::BlockDevice + ?Sized>(
        serial: impl Into<String>,
        device: &D,
    ) -> Self {
        Self::new(serial, device.product_name())
    }

    /// The 8-byte NAA designator of VPD page 0x83: NAA type 3 (locally
    /// assigned) in the top nibble and, in the low 60 bits, the FNV-1a
    /// 64-bit hash of the serial. The same serial always gives the same
    /// designator, so the host sees the same disk across restarts.
    pub fn naa(&self) -> [u8; 8] {
        const NAA_LOCALLY_ASSIGNED: u64 = 0x3 << 60;
        const LOW_60_BITS: u64 = (1 << 60) - 1;
        let id = NAA_LOCALLY_ASSIGNED | (fnv1a_64(self.serial.as_bytes()) & LOW_60_BITS);
        id.to_be_bytes()
    }

    /// The serial as reported on the wire (sanitized and cut to
    /// [`MAX_SERIAL_LEN`]).
    pub(crate) fn serial_bytes(&self) -> Vec<u8> {
        ascii(&self.serial, MAX_SERIAL_LEN)
    }
}

/// FNV-1a, 64-bit variant.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// `s` as printable ASCII, at most `max` bytes. INQUIRY and VPD ASCII
/// fields allow only 20h-7Eh; anything else becomes `_`.
pub(crate) fn ascii(s: &str, max: usize) -> Vec<u8> {
    s.chars()
        .take(max)
        .map(|c| match c {
            ' '..='~' => c as u8,
            _ => b'_',
        })
        .collect()
}

/// `s` as printable ASCII, cut or space padded to exactly `width` bytes.
pub(crate) fn ascii_padded(s: &str, width: usize) -> Vec<u8> {
    let mut field = ascii(s, width);
    field.resize(width, b' ');
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let id = LunIdentity::new("abc", "ramdisk");
        assert_eq!(id.vendor, "TCMU-RS");
        assert_eq!(id.product, "ramdisk");
        assert_eq!(id.serial, "abc");
        assert!(id.revision.len() <= 4);
        assert!(id.revision.contains('.'));
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn naa_is_type_3_and_stable() {
        let a = LunIdentity::new("serial-1", "x");
        let b = LunIdentity::new("serial-1", "other product");
        let c = LunIdentity::new("serial-2", "x");
        assert_eq!(a.naa()[0] >> 4, 0x3);
        assert_eq!(a.naa(), b.naa());
        assert_ne!(a.naa(), c.naa());
        let expected = (0x3 << 60) | (fnv1a_64(b"serial-1") & ((1 << 60) - 1));
        assert_eq!(u64::from_be_bytes(a.naa()), expected);
    }

    #[test]
    fn ascii_fields_are_sanitized_cut_and_padded() {
        assert_eq!(ascii_padded("ab", 4), b"ab  ");
        assert_eq!(ascii_padded("abcdef", 4), b"abcd");
        assert_eq!(ascii_padded("é\tx", 4), b"__x ");
        let long = "s".repeat(300);
        assert_eq!(
            LunIdentity::new(long, "p").serial_bytes().len(),
            MAX_SERIAL_LEN
        );
    }
}
