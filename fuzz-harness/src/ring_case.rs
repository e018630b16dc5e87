//! Arbitrary bytes as the kernel's half of the shared area: the mailbox
//! fields, the command ring and the entries' offsets, counts and iovecs.
//! The ring must hand out only commands whose CDB and buffers lie inside
//! the map, never panic, never loop, and complete whatever it handed out,
//! in any order.
//!
//! Layout: `flags(2) head(2) cmdr_size_sel(1) mailbox_tweak(1) order_seed(1)`
//! then the ring bytes.

use tcmu_core::sim::{SimConfig, SimKernel};
use tcmu_core::{Reply, Ring, RingEntry};

use crate::input::Input;

/// Ring sizes the cases choose from (the kernel's is 8 MiB minus the mailbox).
const RING_SIZES: [u32; 4] = [256, 1024, 4096 - 128, 8192];

/// Upper bound on entries walked per case: a ring of N bytes holds at most
/// N / 8 entries, so a correct walk ends long before this.
const MAX_STEPS: usize = 4096;

/// Run one case; panics when an invariant breaks.
pub fn run_ring_case(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    let flags = u16::from_le_bytes([input.u8(), input.u8()]);
    let head = u16::from_le_bytes([input.u8(), input.u8()]) as u32;
    let cmdr_size = RING_SIZES[input.u8() as usize % RING_SIZES.len()];
    let tweak = input.u8();
    let order_seed = input.u8();
    let kernel = SimKernel::new(SimConfig {
        cmdr_size,
        data_size: 64 * 1024,
        flags,
    });
    let ring_bytes = input.rest();
    let n = ring_bytes.len().min(cmdr_size as usize);
    let poke = |offset: u64, bytes: &[u8]| {
        kernel
            .overwrite(offset, bytes)
            .expect("nothing is handed out yet")
    };
    poke(kernel.cmdr_off(), &ring_bytes[..n]);
    // Sometimes the mailbox itself lies: cmdr_off, cmdr_size, version, tail.
    match tweak % 8 {
        1 => poke(4, &(u32::from(tweak) << 4).to_ne_bytes()),
        2 => poke(8, &(u32::from(tweak) * 1000).to_ne_bytes()),
        3 => poke(0, &u16::from(tweak).to_ne_bytes()),
        4 => poke(64, &(head.wrapping_mul(3) & !7).to_ne_bytes()),
        _ => {}
    }
    poke(12, &head.to_ne_bytes());
    let map = kernel.map();
    let Ok(mut ring) = Ring::new(map.clone()) else {
        return; // a mailbox the ring refuses: nothing may be touched
    };
    let mut held = Vec::new();
    for _ in 0..MAX_STEPS {
        match ring.next_entry() {
            Ok(Some(RingEntry::Command(mut cmd))) => {
                // Touch every byte handed out: an address outside the map
                // would fault (or trip the sanitizer) right here.
                let (cdb, data) = cmd.cdb_and_data();
                assert!(!cdb.is_empty());
                for i in 0..data.count() {
                    let seg = data.segment_mut(i);
                    let sum = seg.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                    if let Some(first) = seg.first_mut() {
                        *first = sum;
                    }
                }
                held.push(cmd);
            }
            Ok(Some(RingEntry::TaskManagement(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // Complete in an order picked by the seed (out of order when allowed).
    let mut k = order_seed as usize;
    while !held.is_empty() {
        k = k.wrapping_mul(31).wrapping_add(7);
        let cmd = held.swap_remove(k % held.len());
        if ring.complete(cmd, &Reply::good()).is_err() {
            break;
        }
    }
    assert!(ring.next_entry().is_err() || ring.in_flight() == 0);
}
