//! TCMU ring mechanics and device lifecycle.
//!
//! - [`Ring`] walks the command ring of a mapped TCMU device, hands out
//!   [`Command`]s and writes their completions (also out of order).
//! - [`uio`] finds and maps the UIO device of a backstore and waits for and
//!   sends its notifications.
//! - [`configfs`] creates, enables, exports and removes backstores.
//! - [`server`] runs the loop that ties a ring to a [`CommandHandler`]
//!   (answers before returning) or an [`AsyncCommandHandler`] (completes
//!   each [`PendingCommand`] when its work is done, from any thread).
//! - `sim` (feature `test-utils`) is an in-process simulated kernel.
//!
//! All unsafe code of this crate lives in its `mem` module (the crate
//! denies `unsafe_code` everywhere else), whose rules [`SharedMap`] and
//! [`DataSegments`] document.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod bitmap;
#[cfg(feature = "control")]
pub mod configfs;
mod dropped;
mod handler;
mod layout;
#[allow(unsafe_code)] // the one module that touches the shared area
mod mem;
#[cfg(feature = "control")]
pub mod netlink;
mod pending;
pub mod poll;
pub mod ring;
pub mod server;
#[cfg(feature = "test-utils")]
pub mod sim;
mod spin_policy;
pub mod uio;
mod work_queue;

pub use handler::{AsyncCommandHandler, CommandHandler};
pub use mem::{AccessError, DataSegments, Lent, OutOfBounds, Region, SharedMap};
pub use pending::PendingCommand;
pub use ring::{Command, Reply, Ring, RingEntry, RingError, TaskManagement};
pub use server::serve;
