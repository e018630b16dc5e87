//! Raw CDBs with arbitrary, possibly scattered data buffers against a small
//! emulated disk; see `fuzz_harness::CdbCase` for the input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::run_cdb_case(data);
});
