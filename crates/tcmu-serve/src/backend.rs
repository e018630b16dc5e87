//! `--backend` specifications.

use std::sync::Arc;

use block_backends::MemoryDevice;
use scsi_emu::BlockDevice;

/// A parsed `--backend` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// `mem`: a sparse RAM disk.
    Memory,
}

impl BackendSpec {
    /// Parse a `--backend` value.
    pub fn parse(text: &str) -> Result<BackendSpec, String> {
        match text {
            "mem" | "memory" => Ok(BackendSpec::Memory),
            _ => Err(format!("unknown backend {text:?} (supported: mem)")),
        }
    }

    /// The handler part of the backstore's `dev_config` (no ':' allowed).
    pub fn dev_config(&self) -> String {
        match self {
            BackendSpec::Memory => "tcmu-rs/mem".to_string(),
        }
    }

    /// Whether the backend needs `--size`.
    pub fn needs_size(&self) -> bool {
        matches!(self, BackendSpec::Memory)
    }

    /// Open the device with `size` bytes of `block_size`-byte blocks.
    pub fn open(&self, size: u64, block_size: u32) -> Result<Arc<dyn BlockDevice>, String> {
        match self {
            BackendSpec::Memory => {
                let dev = MemoryDevice::new(block_size, size / block_size as u64)
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(dev))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_backends_only() {
        assert_eq!(BackendSpec::parse("mem"), Ok(BackendSpec::Memory));
        assert!(
            BackendSpec::parse("floppy")
                .unwrap_err()
                .contains("unknown backend")
        );
    }

    #[test]
    fn memory_backend_has_the_requested_geometry() {
        let dev = BackendSpec::Memory.open(1 << 20, 4096).unwrap();
        assert_eq!(dev.block_size(), 4096);
        assert_eq!(dev.num_blocks(), 256);
    }
}
