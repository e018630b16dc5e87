//! qcow2 images as disks, through the `imago` crate.
//!
//! [`QcowDevice`] serves the virtual disk of an existing qcow2 image
//! (versions 2 and 3): what tcmu-runner serves for a `qcow/PATH`
//! configuration. The image is never created or converted here; make it
//! with `qemu-img create -f qcow2`.
//!
//! - The disk is as large as the image's virtual size, which must be a
//!   whole, non-zero number of blocks.
//! - A file that is not a qcow2 image (a raw image, a VMDK, an empty
//!   file...) is refused, naming what it is.
//! - A backing file named in the image header is opened read-only, as
//!   QEMU would (relative names are relative to the image); unallocated
//!   clusters read from it, writes go to the image. An external data file
//!   named in the header is opened too.
//! - Images with the dirty bit set (left by a QEMU that crashed with lazy
//!   refcounts) or with unknown incompatible features are refused;
//!   `qemu-img check -r all` repairs the former.
//!
//! Nothing locks the image against other programs: serving an image that
//! QEMU also has open corrupts it, exactly as two QEMUs without locking
//! would.

mod device;
mod error;
mod open;
mod options;
mod probe;
#[cfg(test)]
mod tests;

pub use device::QcowDevice;
pub use error::QcowError;
pub use options::QcowOptions;
