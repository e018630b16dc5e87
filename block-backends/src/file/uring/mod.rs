//! The file device on io_uring: [`UringFileDevice`], an
//! [`AsyncBlockDevice`](scsi_emu::AsyncBlockDevice) over the same opened
//! file as [`FileDevice`](super::FileDevice), whose requests wait for the
//! kernel's completions instead of holding threads.

mod cursor;
mod device;
mod pool;
mod ring;
mod slots;
#[cfg(test)]
mod tests;

pub use device::UringFileDevice;
