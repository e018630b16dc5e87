//! The fuzz targets' twin under proptest: the same harness functions, fed
//! by random and by structured inputs, so `cargo test` exercises every
//! invariant without cargo-fuzz.

use fuzz_harness::{
    CdbCase, CdbCommand, GEOMETRIES, ParameterListCase, ParameterListCommand, run_cdb_case,
    run_parameter_list_case, seeds,
};
use proptest::prelude::*;
use scsi_emu::ScsiStatus;

/// Operation codes a disk may implement (SPC-5, SBC-4), so that random
/// CDBs reach command code and not only the unknown-opcode path.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x04, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1D, 0x1E, 0x25, 0x28, 0x2A,
    0x2E, 0x2F, 0x34, 0x35, 0x37, 0x3B, 0x3C, 0x41, 0x42, 0x48, 0x4C, 0x4D, 0x55, 0x56, 0x57, 0x5A,
    0x5E, 0x5F, 0x7F, 0x83, 0x84, 0x88, 0x89, 0x8A, 0x8B, 0x8E, 0x8F, 0x90, 0x91, 0x93, 0x9C, 0x9E,
    0xA0, 0xA3, 0xA8, 0xAA, 0xAE, 0xAF, 0xB7,
];

/// The CDB length the opcode's group implies.
fn group_len(op: u8) -> usize {
    match op >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 32,
    }
}

fn cdb_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all.
        proptest::collection::vec(any::<u8>(), 0..=32),
        // A known opcode, its group's length, mostly small field values so
        // that LBAs and lengths land inside the device and the buffer.
        (
            proptest::sample::select(OPCODES),
            proptest::collection::vec(prop_oneof![3 => 0u8..4, 1 => any::<u8>()], 31),
            any::<bool>(),
        )
            .prop_map(|(op, rest, exact)| {
                let mut cdb = vec![op];
                cdb.extend(rest);
                if exact {
                    cdb.truncate(group_len(op));
                }
                cdb
            }),
    ]
}

fn command_strategy() -> impl Strategy<Value = CdbCommand> {
    (
        cdb_strategy(),
        prop_oneof![0u16..600, Just(512), Just(4096), any::<u16>()],
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(cdb, buffer_len, segmentation, data)| CdbCommand {
            cdb,
            buffer_len,
            segmentation,
            data,
        })
}

fn cdb_case_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (
            0..GEOMETRIES.len() as u8,
            proptest::collection::vec(command_strategy(), 1..4)
        )
            .prop_map(|(geometry, commands)| CdbCase { geometry, commands }.to_bytes()),
    ]
}

fn parameter_list_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (
            proptest::sample::select(&ParameterListCommand::ALL[..]),
            any::<(u8, u8, u8, u8, u8)>(),
            proptest::collection::vec(prop_oneof![3 => 0u8..16, 1 => any::<u8>()], 0..96),
        )
            .prop_map(
                |(command, (flags, count, lba, geometry, segmentation), payload)| {
                    ParameterListCase {
                        command,
                        flags,
                        count,
                        lba,
                        geometry,
                        segmentation,
                        payload,
                    }
                    .to_bytes()
                }
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn cdb_parser_invariants_hold(bytes in cdb_case_strategy()) {
        run_cdb_case(&bytes);
    }

    #[test]
    fn parameter_list_invariants_hold(bytes in parameter_list_strategy()) {
        run_parameter_list_case(&bytes);
    }

    #[test]
    fn cdb_case_bytes_round_trip(
        geometry in any::<u8>(),
        commands in proptest::collection::vec(command_strategy(), 0..8),
    ) {
        let case = CdbCase { geometry, commands };
        prop_assert_eq!(CdbCase::from_bytes(&case.to_bytes()), case);
    }
}

#[test]
fn structured_cases_reach_command_code() {
    // Over a fixed sweep of every parameter-list command, some commands
    // must succeed: otherwise the harness only ever tests error paths.
    let mut good = 0;
    let mut total = 0;
    for command in ParameterListCommand::ALL {
        for flags in [0u8, 1, 2, 8] {
            let case = ParameterListCase {
                command,
                flags,
                count: 2,
                lba: 3,
                geometry: 2,
                segmentation: 1,
                payload: b"structured".to_vec(),
            };
            for executed in run_parameter_list_case(&case.to_bytes()) {
                total += 1;
                good += usize::from(executed.response.status == ScsiStatus::Good);
            }
        }
    }
    assert!(good * 3 > total, "{good} of {total} commands ended GOOD");
}

#[test]
fn cdb_seeds_of_supported_commands_succeed() {
    for seed in seeds::cdb_parser() {
        let executed = run_cdb_case(&seed.bytes);
        assert!(!executed.is_empty(), "{}", seed.name);
        if seed.all_good {
            for e in &executed {
                assert_eq!(
                    e.response.status,
                    ScsiStatus::Good,
                    "seed {}: {:02x?} -> {:?}",
                    seed.name,
                    e.cdb,
                    e.response
                );
            }
        }
    }
}

#[test]
fn parameter_list_seeds_run() {
    let seeds = seeds::parameter_list();
    // One seed per command at least.
    for command in ParameterListCommand::ALL {
        assert!(
            seeds.iter().any(|s| s.bytes[0] == command as u8),
            "no seed for {command:?}"
        );
    }
    for seed in seeds {
        assert!(
            run_parameter_list_case(&seed.bytes).len() >= 4,
            "{}",
            seed.name
        );
    }
}

#[test]
fn checked_in_seed_files_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for (target, seeds) in [
        ("cdb_parser", seeds::cdb_parser()),
        ("parameter_list", seeds::parameter_list()),
    ] {
        let target_dir = dir.join(target);
        let mut on_disk: Vec<String> = std::fs::read_dir(&target_dir)
            .unwrap_or_else(|e| panic!("{}: {e}", target_dir.display()))
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut names: Vec<String> = seeds.iter().map(|s| s.name.to_string()).collect();
        names.sort();
        assert_eq!(
            on_disk, names,
            "fuzz/seeds/{target} is stale: cargo run -p fuzz-harness --example write_seeds"
        );
        for seed in seeds {
            let bytes = std::fs::read(target_dir.join(seed.name)).unwrap();
            assert_eq!(
                bytes, seed.bytes,
                "fuzz/seeds/{target}/{} is stale: cargo run -p fuzz-harness --example write_seeds",
                seed.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The ring fuzz target's twin: arbitrary mailbox and ring bytes.
    #[test]
    fn ring_case_invariants_hold(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_harness::run_ring_case(&bytes);
    }

    /// Entry-shaped garbage: valid headers with arbitrary bodies reach the
    /// command parser more often than uniform noise does.
    #[test]
    fn ring_case_with_plausible_headers(
        head in (0u16..128).prop_map(|h| h * 8),
        entries in proptest::collection::vec((1u32..40, 0u8..4, proptest::collection::vec(any::<u8>(), 0..120)), 1..12),
    ) {
        let mut bytes = vec![0x03, 0x00]; // flags: OOOC | READ_LEN
        bytes.extend_from_slice(&head.to_le_bytes());
        bytes.extend_from_slice(&[1, 0, 0]); // 1 KiB ring, honest mailbox
        for (len8, op, body) in entries {
            let len = len8 * 8;
            bytes.extend_from_slice(&(len | u32::from(op)).to_le_bytes());
            let mut rest = body;
            rest.resize(len as usize - 4, 0);
            bytes.extend_from_slice(&rest);
        }
        fuzz_harness::run_ring_case(&bytes);
    }
}
