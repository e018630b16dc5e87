//! Arbitrary bytes as the mailbox and command ring of the simulated
//! kernel; see `fuzz_harness::run_ring_case` for the input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::run_ring_case(data);
});
