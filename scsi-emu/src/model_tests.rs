//! A model test: random sequences of WRITE, READ, UNMAP, WRITE SAME,
//! COMPARE AND WRITE, VERIFY and WRITE ATOMIC against the emulator over a
//! device that unmaps to zeros and writes up to [`ATOMIC_BLOCKS`] blocks
//! atomically, checked against a plain byte array.

use proptest::prelude::*;
use scsi_sense_codes::{AdditionalSense, SenseKey};

use crate::ScsiResponse;
use crate::testutil::*;

const BLOCKS: u64 = 32;
/// The MAXIMUM ATOMIC TRANSFER LENGTH of the units under test.
const ATOMIC_BLOCKS: u64 = 4;

/// One command of a sequence. LBAs and lengths may run past the end.
#[derive(Debug, Clone)]
enum Op {
    Write {
        lba: u64,
        blocks: u64,
        seed: u8,
        sixteen: bool,
    },
    Read {
        lba: u64,
        blocks: u64,
        sixteen: bool,
    },
    Unmap {
        extents: Vec<(u64, u64)>,
    },
    WriteSame {
        lba: u64,
        blocks: u64,
        /// `None`: a block of zeros; `Some(seed)`: a pattern.
        pattern: Option<u8>,
        unmap: bool,
        ndob: bool,
    },
    CompareAndWrite {
        lba: u64,
        blocks: u64,
        /// Byte of the compare data to corrupt, if any.
        corrupt: Option<usize>,
        seed: u8,
    },
    Verify {
        lba: u64,
        blocks: u64,
        corrupt: Option<usize>,
    },
    WriteAtomic {
        lba: u64,
        blocks: u64,
        seed: u8,
    },
}

fn lba() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..BLOCKS, 1 => BLOCKS - 2..BLOCKS + 2, 1 => Just(u64::MAX - 1)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (lba(), 0u64..6, any::<u8>(), any::<bool>()).prop_map(|(lba, blocks, seed, sixteen)| {
            Op::Write {
                lba,
                blocks,
                seed,
                sixteen,
            }
        }),
        (lba(), 0u64..6, any::<bool>()).prop_map(|(lba, blocks, sixteen)| Op::Read {
            lba,
            blocks,
            sixteen
        }),
        proptest::collection::vec((lba(), 0u64..6), 0..4).prop_map(|extents| Op::Unmap { extents }),
        (
            lba(),
            1u64..8,
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(lba, blocks, pattern, unmap, ndob)| Op::WriteSame {
                lba,
                blocks,
                pattern,
                unmap,
                ndob,
            }),
        (
            lba(),
            0u64..4,
            proptest::option::of(0usize..4 * 512),
            any::<u8>()
        )
            .prop_map(|(lba, blocks, corrupt, seed)| Op::CompareAndWrite {
                lba,
                blocks,
                corrupt,
                seed,
            }),
        (lba(), 0u64..6, proptest::option::of(0usize..6 * 512)).prop_map(
            |(lba, blocks, corrupt)| Op::Verify {
                lba,
                blocks,
                corrupt
            }
        ),
        (lba(), 0u64..6, any::<u8>()).prop_map(|(lba, blocks, seed)| Op::WriteAtomic {
            lba,
            blocks,
            seed
        }),
    ]
}

/// The expected state of the medium.
struct Model {
    bs: usize,
    bytes: Vec<u8>,
}

impl Model {
    fn in_range(&self, lba: u64, blocks: u64) -> bool {
        lba.checked_add(blocks).is_some_and(|end| end <= BLOCKS)
    }

    fn range(&self, lba: u64, blocks: u64) -> std::ops::Range<usize> {
        lba as usize * self.bs..(lba + blocks) as usize * self.bs
    }
}

/// READ or WRITE (`write`) of `blocks` at `lba`: the 16-byte CDB when asked
/// for or when the LBA needs it, else the 10-byte one.
fn rw(write: bool, sixteen: bool, lba: u64, blocks: u64) -> Vec<u8> {
    if sixteen || lba > u64::from(u32::MAX) {
        rw16(write, 0, lba, blocks as u32)
    } else {
        rw10(write, 0, lba as u32, blocks as u16)
    }
}

#[track_caller]
fn assert_out_of_range(resp: &ScsiResponse) {
    assert_illegal(resp, AdditionalSense::LBA_OUT_OF_RANGE);
}

#[track_caller]
fn assert_miscompare_at(resp: &ScsiResponse, offset: usize) {
    assert_check(
        resp,
        SenseKey::Miscompare,
        AdditionalSense::MISCOMPARE_DURING_VERIFY,
    );
    assert_eq!(resp.sense.unwrap().information, Some(offset as u64));
}

/// Run `op` on the emulator and the model and compare the outcomes.
fn step(emu: &impl Executes, model: &mut Model, op: &Op) {
    let bs = model.bs;
    match *op {
        Op::Write {
            lba,
            blocks,
            seed,
            sixteen,
        } => {
            let mut data = pattern(blocks as usize * bs, seed);
            let resp = emu.run(&rw(true, sixteen, lba, blocks), &mut data);
            if model.in_range(lba, blocks) {
                assert_eq!(resp, ScsiResponse::good());
                let r = model.range(lba, blocks);
                model.bytes[r].copy_from_slice(&data);
            } else {
                assert_out_of_range(&resp);
            }
        }
        Op::Read {
            lba,
            blocks,
            sixteen,
        } => {
            let mut buf = vec![0xEEu8; blocks as usize * bs];
            let resp = emu.run(&rw(false, sixteen, lba, blocks), &mut buf);
            if model.in_range(lba, blocks) {
                assert_eq!(resp, ScsiResponse::data_in(buf.len()));
                assert_eq!(buf, model.bytes[model.range(lba, blocks)]);
            } else {
                assert_out_of_range(&resp);
            }
        }
        Op::Unmap { ref extents } => {
            let mut p = vec![0u8; 8];
            for &(lba, blocks) in extents {
                p.extend_from_slice(&lba.to_be_bytes());
                p.extend_from_slice(&(blocks as u32).to_be_bytes());
                p.extend_from_slice(&[0; 4]);
            }
            let len = p.len();
            p[0..2].copy_from_slice(&((len - 2) as u16).to_be_bytes());
            p[2..4].copy_from_slice(&((len - 8) as u16).to_be_bytes());
            let l = (len as u16).to_be_bytes();
            let resp = emu.run(&[0x42, 0, 0, 0, 0, 0, 0, l[0], l[1], 0], &mut p);
            if extents.iter().all(|&(lba, n)| model.in_range(lba, n)) {
                assert_eq!(resp, ScsiResponse::good());
                for &(lba, n) in extents {
                    let r = model.range(lba, n);
                    model.bytes[r].fill(0);
                }
            } else {
                // Validated before anything is unmapped: no change.
                assert_out_of_range(&resp);
            }
        }
        Op::WriteSame {
            lba,
            blocks,
            pattern: pat,
            unmap,
            ndob,
        } => {
            let block = match pat {
                Some(seed) if !ndob => pattern(bs, seed),
                _ => vec![0u8; bs],
            };
            let mut cdb = vec![0u8; 16];
            cdb[0] = 0x93;
            cdb[1] = if unmap { 0x08 } else { 0 } | if ndob { 0x01 } else { 0 };
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
            let mut data = if ndob { Vec::new() } else { block.clone() };
            let resp = emu.run(&cdb, &mut data);
            if model.in_range(lba, blocks) {
                assert_eq!(resp, ScsiResponse::good());
                for b in lba..lba + blocks {
                    let r = model.range(b, 1);
                    model.bytes[r].copy_from_slice(&block);
                }
            } else {
                assert_out_of_range(&resp);
            }
        }
        Op::CompareAndWrite {
            lba,
            blocks,
            corrupt,
            seed,
        } => {
            let len = blocks as usize * bs;
            let in_range = model.in_range(lba, blocks);
            let mut compare = if in_range {
                model.bytes[model.range(lba, blocks)].to_vec()
            } else {
                vec![0u8; len]
            };
            let corrupt = corrupt.filter(|&c| c < len);
            if let Some(c) = corrupt {
                compare[c] ^= 0x80;
            }
            let new = pattern(len, seed);
            let mut data = [compare, new.clone()].concat();
            let mut cdb = vec![0u8; 16];
            cdb[0] = 0x89;
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[13] = blocks as u8;
            let resp = emu.run(&cdb, &mut data);
            if !in_range {
                assert_out_of_range(&resp);
            } else if blocks == 0 {
                assert_eq!(resp, ScsiResponse::good());
            } else if let Some(c) = corrupt {
                assert_miscompare_at(&resp, c);
            } else {
                assert_eq!(resp, ScsiResponse::good());
                let r = model.range(lba, blocks);
                model.bytes[r].copy_from_slice(&new);
            }
        }
        Op::Verify {
            lba,
            blocks,
            corrupt,
        } => {
            let len = blocks as usize * bs;
            let in_range = model.in_range(lba, blocks);
            let mut data = if in_range {
                model.bytes[model.range(lba, blocks)].to_vec()
            } else {
                vec![0u8; len]
            };
            let corrupt = corrupt.filter(|&c| c < len);
            if let Some(c) = corrupt {
                data[c] ^= 0x01;
            }
            let mut cdb = vec![0u8; 16];
            cdb[0] = 0x8F;
            cdb[1] = 0x02; // BYTCHK 01b
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
            let resp = emu.run(&cdb, &mut data);
            if !in_range {
                assert_out_of_range(&resp);
            } else if let Some(c) = corrupt {
                assert_miscompare_at(&resp, c);
            } else {
                assert_eq!(resp, ScsiResponse::good());
            }
        }
        Op::WriteAtomic { lba, blocks, seed } => {
            let mut data = pattern(blocks as usize * bs, seed);
            let mut cdb = vec![0u8; 16];
            cdb[0] = 0x9C;
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[12..14].copy_from_slice(&(blocks as u16).to_be_bytes());
            let resp = emu.run(&cdb, &mut data);
            if blocks > ATOMIC_BLOCKS {
                assert_invalid_field(&resp, 12, 7);
            } else if model.in_range(lba, blocks) {
                assert_eq!(resp, ScsiResponse::good());
                let r = model.range(lba, blocks);
                model.bytes[r].copy_from_slice(&data);
            } else {
                assert_out_of_range(&resp);
            }
        }
    }
}

/// The device of the model tests.
fn device(bs: usize) -> VecDevice {
    VecDevice::new(bs as u32, BLOCKS)
        .with_unmap()
        .with_atomic_writes(ATOMIC_BLOCKS)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn emulator_matches_a_byte_array(
        bs in proptest::sample::select(&[512usize, 1024][..]),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let emu = emulator(device(bs));
        let mut model = Model { bs, bytes: emu.contents() };
        for op in &ops {
            step(&emu, &mut model, op);
            prop_assert!(emu.contents() == model.bytes, "after {:?}", op);
        }
    }

    /// The same sequences through the asynchronous emulator, over a device
    /// whose every call suspends once.
    #[test]
    fn async_emulator_matches_a_byte_array(
        bs in proptest::sample::select(&[512usize, 1024][..]),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let emu = async_emulator(device(bs));
        let mut model = Model { bs, bytes: emu.contents() };
        for op in &ops {
            step(&emu, &mut model, op);
            prop_assert!(emu.contents() == model.bytes, "after {:?}", op);
        }
    }
}
