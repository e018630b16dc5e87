//! Write the fuzz seeds to `<dir>/cdb_parser/` and `<dir>/parameter_list/`
//! (default `fuzz/seeds`, relative to the workspace root).
//!
//! ```text
//! cargo run -p fuzz-harness --example write_seeds [-- DIR]
//! ```

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds"));
    for (target, seeds) in [
        ("cdb_parser", fuzz_harness::seeds::cdb_parser()),
        ("parameter_list", fuzz_harness::seeds::parameter_list()),
    ] {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for seed in seeds {
            std::fs::write(target_dir.join(seed.name), &seed.bytes)?;
        }
        println!("wrote {}", target_dir.display());
    }
    Ok(())
}
