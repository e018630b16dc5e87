//! A custom device in 30 lines: a RAM disk whose bytes are XOR-ed with a
//! key ("encrypted") on their way in and out. Run as root; stop with ^C.
use block_backends::MemoryDevice;
use scsi_emu::{BlockDevice, BlockError};
use tcmu_target::Target;

/// The wrapped device and the key.
struct XorDisk<D>(D, u8);

#[rustfmt::skip]
impl<D: BlockDevice> BlockDevice for XorDisk<D> {
    fn block_size(&self) -> u32 { self.0.block_size() }
    fn num_blocks(&self) -> u64 { self.0.num_blocks() }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read(lba, buf)?;
        buf.iter_mut().for_each(|b| *b ^= self.1);
        Ok(())
    }
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.write(lba, &buf.iter().map(|b| b ^ self.1).collect::<Vec<u8>>())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let disk = XorDisk(MemoryDevice::new(512, 1 << 18)?, 0x5A); // 128 MiB
    let target = Target::builder(disk).name("xor-disk").start()?;
    println!("ready: {}", target.disk().unwrap().display());
    target.wait_for_signal()?;
    Ok(target.shutdown()?)
}
