//! What a file is taken for, and how refusals read. The device itself is
//! tested against QEMU's own tools in tests/qcow.rs.

use std::path::PathBuf;

use super::error::QcowError;
use super::probe::{Identified, PROBE_LEN, identify};

/// The first bytes of a qcow2 header of `version` and virtual `size`.
fn qcow2_head(version: u32, size: u64) -> Vec<u8> {
    let mut head = vec![0u8; PROBE_LEN];
    head[..4].copy_from_slice(b"QFI\xfb");
    head[4..8].copy_from_slice(&version.to_be_bytes());
    head[24..32].copy_from_slice(&size.to_be_bytes());
    head
}

fn other(head: &[u8]) -> String {
    match identify(head) {
        Identified::Other(what) => what,
        qcow2 => panic!("taken for {qcow2:?}"),
    }
}

#[test]
fn qcow2_versions_2_and_3_are_recognised_with_their_size() {
    for version in [2, 3] {
        assert_eq!(
            identify(&qcow2_head(version, 1 << 30)),
            Identified::Qcow2 {
                version,
                size: 1 << 30
            }
        );
    }
    assert!(other(&qcow2_head(1, 512)).contains("qcow (version 1)"));
    assert!(other(&qcow2_head(4, 512)).contains("unsupported version 4"));
    assert!(other(&qcow2_head(3, 512)[..31]).contains("too short"));
    assert!(other(b"QFI").contains("raw image"));
}

#[test]
fn other_formats_are_named() {
    let with = |prefix: &[u8]| {
        let mut head = prefix.to_vec();
        head.resize(PROBE_LEN, 0);
        other(&head)
    };
    assert_eq!(with(b"KDMV"), "a VMDK image");
    assert_eq!(with(b"QED\0"), "a QED image");
    assert_eq!(with(b"vhdxfile"), "a VHDX image");
    assert_eq!(with(b"conectix"), "a VHD image");
    assert_eq!(with(b"LUKS\xba\xbe"), "a LUKS volume");
    let mut vdi = vec![0u8; PROBE_LEN];
    vdi[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
    assert_eq!(other(&vdi), "a VDI image");
    assert_eq!(other(&[]), "an empty file");
    assert_eq!(
        other(&[0; PROBE_LEN]),
        "a raw image (no image format header)"
    );
    assert_eq!(other(&[0xff; 3]), "a raw image (no image format header)");
}

#[test]
fn refusals_name_the_image_on_one_line() {
    let path = PathBuf::from("/srv/disk.img");
    let messages = [
        QcowError::NotQcow2 {
            path: path.clone(),
            what: "a raw image (no image format header)".into(),
        }
        .to_string(),
        QcowError::UnusableSize {
            path: path.clone(),
            size: 5120,
            block_size: 4096,
        }
        .to_string(),
        QcowError::UnusableSize {
            path: path.clone(),
            size: 0,
            block_size: 512,
        }
        .to_string(),
        QcowError::NotFound(path.clone()).to_string(),
    ];
    assert_eq!(
        messages[0],
        "/srv/disk.img is not a qcow2 image: it is a raw image (no image format header)"
    );
    assert_eq!(
        messages[1],
        "/srv/disk.img: the image's virtual size 5120 bytes is not a multiple of the block size 4096"
    );
    assert_eq!(messages[2], "/srv/disk.img: the image's virtual size is 0");
    assert_eq!(messages[3], "/srv/disk.img does not exist");
}
