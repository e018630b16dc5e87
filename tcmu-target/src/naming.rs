//! Names the kernel needs that a target makes up or reads back: the UIO
//! minor, the unit serial, the tcm_loop WWNs.

use std::path::Path;

/// The minor number of a UIO device node (`/dev/uio<minor>`).
pub(crate) fn uio_minor(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix("uio")?
        .parse()
        .ok()
}

/// A unit serial number: a random UUID from the kernel.
pub(crate) fn new_serial() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("tcmurs-{}", std::process::id()))
}

/// A tcm_loop WWN (`naa.5` + 15 hex digits) derived from the serial.
pub(crate) fn loop_wwn(serial: &str, salt: u8) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in serial.bytes().chain([salt]) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("naa.5{:015x}", h & 0x0fff_ffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uio_minors_come_from_the_node_name() {
        assert_eq!(uio_minor(Path::new("/dev/uio12")), Some(12));
        assert_eq!(uio_minor(Path::new("/dev/uio")), None);
        assert_eq!(uio_minor(Path::new("/dev/sda")), None);
    }

    #[test]
    fn wwns_are_well_formed_and_distinct() {
        let a = loop_wwn("serial", 0);
        let b = loop_wwn("serial", 1);
        assert_ne!(a, b);
        assert!(a.starts_with("naa.5") && a.len() == 20, "{a}");
    }
}
