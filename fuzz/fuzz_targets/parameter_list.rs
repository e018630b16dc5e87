//! Arbitrary parameter lists (UNMAP, MODE SELECT, COMPARE AND WRITE,
//! WRITE SAME, EXTENDED COPY, ...) behind well-formed CDBs; see
//! `fuzz_harness::ParameterListCase` for the input layout.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::run_parameter_list_case(data);
});
