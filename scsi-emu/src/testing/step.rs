//! The steps the conformance check generates, and their strategies.
//! Addresses are relative (from the start, or back from the current end)
//! so a sequence stays meaningful while it is shrunk or the device resized.

use proptest::prelude::*;

/// An address: `Start(n)` is block `n`, `End(k)` is `k` blocks before
/// the end (so `End(1)` is the last block).
#[derive(Debug, Clone, Copy)]
pub(super) enum Lba {
    Start(u64),
    End(u64),
}

impl Lba {
    pub(super) fn resolve(self, blocks: u64) -> u64 {
        match self {
            Lba::Start(n) => n,
            Lba::End(k) => blocks.saturating_sub(k),
        }
    }
}

/// A READ or a WRITE, alone or among others in flight.
#[derive(Debug, Clone)]
pub(super) enum Io {
    Write {
        at: Lba,
        blocks: u32,
        seed: u8,
        fua: bool,
    },
    Read {
        at: Lba,
        blocks: u32,
    },
}

/// One step of a generated sequence.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Io(Io),
    /// Submitted together, in flight at once, on few blocks so they overlap.
    Together(Vec<Io>),
    Flush,
    Unmap(Vec<(Lba, u32)>),
    /// `fill` 0 is a block of zeros.
    WriteSame {
        at: Lba,
        blocks: u32,
        fill: u8,
        unmap: bool,
    },
    /// Compare with what the blocks hold (read just before), or with that
    /// changed at byte `miscompare`.
    CompareAndWrite {
        at: Lba,
        blocks: u8,
        seed: u8,
        miscompare: Option<u16>,
    },
    Resize {
        grow: bool,
        by: u8,
    },
    /// Turn the write cache on or off (MODE SELECT of the caching page):
    /// off, every write reaches the device with FUA.
    WriteCache(bool),
}

fn lba(window: u64) -> impl Strategy<Value = Lba> {
    prop_oneof![
        6 => (0..window).prop_map(Lba::Start),
        1 => (1..4u64).prop_map(Lba::End),
    ]
}

/// Mostly a few blocks; now and then enough for a buffer of several
/// pages (ring segments), which takes the device's vectored paths.
fn length() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 1..5u32, 1 => 5..24u32]
}

fn io(at: BoxedStrategy<Lba>) -> impl Strategy<Value = Io> {
    prop_oneof![
        (at.clone(), length(), any::<u8>(), any::<bool>()).prop_map(|(at, blocks, seed, fua)| {
            Io::Write {
                at,
                blocks,
                seed,
                fua,
            }
        }),
        (at, length()).prop_map(|(at, blocks)| Io::Read { at, blocks }),
    ]
}

/// Sequences of up to `max_steps` steps on the first `window` blocks and
/// the last few.
pub(super) fn steps(window: u64, max_steps: usize) -> impl Strategy<Value = Vec<Step>> {
    let window = window.max(1);
    let near = lba(window).boxed();
    // Concurrent commands on a few blocks, so they overlap.
    let crowded = (0..window.min(6)).prop_map(Lba::Start).boxed();
    let step = prop_oneof![
        6 => io(near.clone()).prop_map(Step::Io),
        3 => proptest::collection::vec(io(crowded), 2..8).prop_map(Step::Together),
        1 => Just(Step::Flush),
        2 => proptest::collection::vec((near.clone(), 1..5u32), 1..4).prop_map(Step::Unmap),
        2 => (near.clone(), 1..6u32, prop_oneof![Just(0u8), any::<u8>()], any::<bool>())
            .prop_map(|(at, blocks, fill, unmap)| Step::WriteSame { at, blocks, fill, unmap }),
        2 => (near, 1..3u8, any::<u8>(), proptest::option::weighted(0.3, any::<u16>()))
            .prop_map(|(at, blocks, seed, miscompare)| Step::CompareAndWrite {
                at,
                blocks,
                seed,
                miscompare,
            }),
        2 => (any::<bool>(), 1..8u8).prop_map(|(grow, by)| Step::Resize { grow, by }),
        1 => any::<bool>().prop_map(Step::WriteCache),
    ];
    proptest::collection::vec(step, 1..max_steps.max(2))
}
