//! Seed inputs for the fuzz targets: valid commands a disk answers every
//! day, so the fuzzer starts from inputs that reach the command code.
//!
//! The files under `fuzz/seeds/` are these, written by
//! `cargo run -p fuzz-harness --example write_seeds`; a test keeps them in
//! step.

use crate::cdb_case::{CdbCase, CdbCommand};
use crate::parameter_list::{ParameterListCase, ParameterListCommand};

/// One seed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// File name.
    pub name: &'static str,
    /// The input bytes.
    pub bytes: Vec<u8>,
    /// Whether every command of a `cdb_parser` seed must end in GOOD;
    /// checked by the tests.
    pub all_good: bool,
}

/// A command with a data-in buffer of `len` bytes.
fn data_in(cdb: &[u8], len: u16) -> CdbCommand {
    CdbCommand {
        cdb: cdb.to_vec(),
        buffer_len: len,
        segmentation: 0,
        data: Vec::new(),
    }
}

/// A command sending `data` (split into two segments, to cover that too).
fn data_out(cdb: &[u8], data: &[u8]) -> CdbCommand {
    CdbCommand {
        cdb: cdb.to_vec(),
        buffer_len: data.len() as u16,
        segmentation: 1,
        data: data.to_vec(),
    }
}

fn cdb_seed(name: &'static str, all_good: bool, commands: Vec<CdbCommand>) -> Seed {
    Seed {
        name,
        // Geometry 0: 64 blocks of 512 bytes.
        bytes: CdbCase {
            geometry: 0,
            commands,
        }
        .to_bytes(),
        all_good,
    }
}

/// Seeds of the `cdb_parser` target.
pub fn cdb_parser() -> Vec<Seed> {
    let block: Vec<u8> = (0..=255u8).chain(0..=255).collect();
    // The first 255 bytes go in the input; the buffer is one block.
    let write = |cdb: &[u8]| CdbCommand {
        cdb: cdb.to_vec(),
        buffer_len: 512,
        segmentation: 2,
        data: block[..255].to_vec(),
    };
    let unmap_list = [
        0x00, 0x16, 0x00, 0x10, 0, 0, 0, 0, // header: one descriptor
        0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x04, 0, 0, 0, 0, // LBA 8, 4 blocks
    ];
    let caching_page = [
        0, 0x1A, 0, 0, 0, 0, 0, 0, // MODE SELECT(10) header
        0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, // caching page, WCE set
    ];
    vec![
        cdb_seed(
            "test_unit_ready",
            true,
            vec![data_in(&[0x00, 0, 0, 0, 0, 0], 0)],
        ),
        cdb_seed("inquiry", true, vec![data_in(&[0x12, 0, 0, 0, 96, 0], 96)]),
        cdb_seed(
            "inquiry_vpd",
            true,
            vec![
                data_in(&[0x12, 1, 0x00, 0, 255, 0], 255),
                data_in(&[0x12, 1, 0x80, 0, 255, 0], 255),
                data_in(&[0x12, 1, 0x83, 0, 255, 0], 255),
            ],
        ),
        cdb_seed(
            "read_capacity",
            true,
            vec![
                data_in(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
                data_in(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32),
            ],
        ),
        cdb_seed(
            "write_read_6_10",
            true,
            vec![
                write(&[0x0A, 0, 0, 1, 1, 0]),
                data_in(&[0x08, 0, 0, 1, 1, 0], 512),
                write(&[0x2A, 0x08, 0, 0, 0, 2, 0, 0, 1, 0]),
                data_in(&[0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0], 512),
            ],
        ),
        cdb_seed(
            "write_read_12_16",
            true,
            vec![
                write(&[0xAA, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0]),
                data_in(&[0xA8, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0], 512),
                write(&[0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 63, 0, 0, 0, 1, 0, 0]),
                data_in(&[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 63, 0, 0, 0, 1, 0, 0], 512),
            ],
        ),
        cdb_seed(
            "write_atomic",
            true,
            vec![
                write(&[0x9C, 0x08, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0]),
                data_in(&[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0], 512),
            ],
        ),
        cdb_seed(
            "verify_prefetch_defects",
            true,
            vec![
                data_in(&[0xAF, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0], 0),
                data_in(&[0x34, 0x02, 0, 0, 0, 5, 0, 0, 2, 0], 0),
                data_in(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0], 0),
                data_in(&[0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0], 32),
                data_in(&[0xB7, 0x18, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32),
            ],
        ),
        cdb_seed(
            "orwrite_and_write_and_verify_12",
            true,
            vec![
                write(&[0x8B, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0]),
                write(&[0xAE, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0]),
            ],
        ),
        cdb_seed(
            "receive_copy_operating_parameters",
            true,
            vec![data_in(
                &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
                256,
            )],
        ),
        cdb_seed(
            "mode_sense",
            true,
            vec![
                data_in(&[0x1A, 0, 0x3F, 0, 255, 0], 255),
                data_in(&[0x5A, 0, 0x3F, 0, 0, 0, 0, 0x01, 0x00, 0], 256),
            ],
        ),
        cdb_seed(
            "synchronize_cache",
            true,
            vec![
                data_in(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0),
                data_in(&[0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0),
            ],
        ),
        cdb_seed(
            "unmap",
            true,
            vec![data_out(
                &[0x42, 0, 0, 0, 0, 0, 0, 0, unmap_list.len() as u8, 0],
                &unmap_list,
            )],
        ),
        cdb_seed(
            "mode_select_caching",
            true,
            vec![data_out(
                &[0x55, 0x10, 0, 0, 0, 0, 0, 0, caching_page.len() as u8, 0],
                &caching_page,
            )],
        ),
    ]
}

fn list_seed(
    name: &'static str,
    command: ParameterListCommand,
    flags: u8,
    count: u8,
    payload: &[u8],
) -> Seed {
    Seed {
        name,
        bytes: ParameterListCase {
            command,
            flags,
            count,
            lba: 4,
            geometry: 0,
            segmentation: 1,
            payload: payload.to_vec(),
        }
        .to_bytes(),
        all_good: false,
    }
}

/// Seeds of the `parameter_list` target: one per command, mostly valid.
pub fn parameter_list() -> Vec<Seed> {
    use ParameterListCommand as C;
    let unmap_list = [
        0x00, 0x16, 0x00, 0x10, 0, 0, 0, 0, // header: one descriptor
        0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x04, 0, 0, 0, 0, // LBA 8, 4 blocks
    ];
    let mode_select_6 = [
        0, 0, 0, 0, // header
        0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, // caching page, WCE set
    ];
    let mut mode_select_10 = vec![0; 4];
    mode_select_10.extend_from_slice(&mode_select_6);
    let register = [0, 0, 0, 0, 0, 0, 0, 1]; // reservation key 1
    vec![
        list_seed("unmap", C::Unmap, 0, 0, &unmap_list),
        list_seed(
            "unmap_descriptors",
            C::UnmapDescriptors,
            0,
            2,
            &[8, 4, 20, 1],
        ),
        list_seed("mode_select_6", C::ModeSelect6, 0, 0, &mode_select_6),
        list_seed("mode_select_10", C::ModeSelect10, 0, 0, &mode_select_10),
        list_seed(
            "mode_select_6_page",
            C::ModeSelect6Page,
            0,
            0,
            &[0, 0, 0x04],
        ),
        list_seed(
            "mode_select_10_page",
            C::ModeSelect10Page,
            0,
            1,
            &[0, 0, 0x04],
        ),
        list_seed("compare_and_write", C::CompareAndWrite, 0, 0, b"seed"),
        list_seed(
            "compare_and_write_miscompare",
            C::CompareAndWrite,
            1,
            1,
            b"seed",
        ),
        list_seed("write_same_10", C::WriteSame10, 0, 4, b"pattern"),
        list_seed("orwrite", C::OrWrite, 0x08, 3, b"or bits"),
        list_seed(
            "sanitize_overwrite",
            C::SanitizeOverwrite,
            0,
            0,
            &[0x01, 0, 0, 4, 0xDE, 0xAD, 0xBE, 0xEF],
        ),
        list_seed("write_same_16_unmap", C::WriteSame16, 0x02, 4, b"pattern"),
        list_seed("extended_copy", C::ExtendedCopy, 0, 0, &[0; 16]),
        list_seed(
            "extended_copy_segments",
            C::ExtendedCopySegments,
            0,
            0,
            &[2, 20, 3],
        ),
        list_seed(
            "persistent_reserve_out",
            C::PersistentReserveOut,
            1,
            5,
            &register,
        ),
        list_seed("write_read_back", C::WriteReadBack, 0, 2, b"data"),
        list_seed("verify_bytes", C::VerifyBytes, 0, 2, b"data"),
        list_seed("log_select", C::LogSelect, 0x02, 0x40, &[]),
        list_seed("send_diagnostic", C::SendDiagnostic, 0x04, 0, &[]),
        list_seed("format_unit", C::FormatUnit, 0, 0, &[]),
    ]
}
