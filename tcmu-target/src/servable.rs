//! What a target can serve: a synchronous device, or an asynchronous one
//! wrapped in [`AsyncDevice`].

use std::sync::Arc;

use scsi_emu::{
    AsyncBlockDevice, AsyncEmulator, BlockDevice, Blocking, CopyRegistry, Emulator, LunIdentity,
    PortGroupSource,
};
use tcmu_core::AsyncCommandHandler;

/// A device a [`Target`](crate::Target) can serve: every
/// [`BlockDevice`], and every [`AsyncBlockDevice`] wrapped in
/// [`AsyncDevice`]. The methods are the target's own business.
pub trait Servable: Send + 'static {
    /// The logical unit that serves it.
    #[doc(hidden)]
    type Unit: Unit;
    /// Block size and number of blocks.
    #[doc(hidden)]
    fn geometry(&self) -> (u32, u64);
    /// The product name for INQUIRY.
    #[doc(hidden)]
    fn product(&self) -> String;
    /// The unit over the device.
    #[doc(hidden)]
    fn into_unit(
        self,
        identity: LunIdentity,
        options: UnitOptions,
    ) -> std::io::Result<Arc<Self::Unit>>;
}

/// How the unit over a device is set up.
#[doc(hidden)]
pub struct UnitOptions {
    /// The largest data transfer of one command.
    pub max_io_bytes: u32,
    /// EXTENDED COPY between the units of this process.
    pub registry: Option<CopyRegistry>,
    /// Where ALUA's target port groups come from.
    pub port_groups: Option<Arc<dyn PortGroupSource>>,
}

/// A logical unit a target serves: it executes the ring's commands, and
/// its emulator takes the kernel's attribute changes.
#[doc(hidden)]
pub trait Unit: AsyncCommandHandler + 'static {
    /// The device as the synchronous emulator sees it.
    type Device: BlockDevice;
    fn emulator(&self) -> &Emulator<Self::Device>;
}

impl<D: BlockDevice + 'static> Unit for Emulator<D> {
    type Device = D;
    fn emulator(&self) -> &Emulator<D> {
        self
    }
}

impl<D: AsyncBlockDevice> Unit for AsyncEmulator<D> {
    type Device = Blocking<D>;
    fn emulator(&self) -> &Emulator<Blocking<D>> {
        AsyncEmulator::emulator(self)
    }
}

impl<D: BlockDevice + 'static> Servable for D {
    type Unit = Emulator<D>;
    fn geometry(&self) -> (u32, u64) {
        (self.block_size(), self.num_blocks())
    }
    fn product(&self) -> String {
        self.product_name().to_string()
    }
    fn into_unit(
        self,
        identity: LunIdentity,
        options: UnitOptions,
    ) -> std::io::Result<Arc<Emulator<D>>> {
        let mut emulator = Emulator::new(self, identity).with_max_io_bytes(options.max_io_bytes);
        if let Some(source) = options.port_groups {
            emulator = emulator.with_port_groups(source);
        }
        if let Some(registry) = options.registry {
            emulator = emulator.with_copy_registry(registry);
        }
        Ok(Arc::new(emulator))
    }
}

/// An [`AsyncBlockDevice`] to serve: commands waiting for it hold no
/// thread, so the initiator's queue depth reaches the device.
///
/// ```no_run
/// # use scsi_emu::{AsyncBlockDevice, BlockError};
/// # struct Remote;
/// # impl AsyncBlockDevice for Remote {
/// #     fn block_size(&self) -> u32 { 512 }
/// #     fn num_blocks(&self) -> u64 { 8 }
/// #     async fn read(&self, _: u64, _: &mut [u8]) -> Result<(), BlockError> { Ok(()) }
/// #     async fn write(&self, _: u64, _: &[u8]) -> Result<(), BlockError> { Ok(()) }
/// # }
/// use tcmu_target::{AsyncDevice, Target};
///
/// let target = Target::builder(AsyncDevice(Remote)).name("remote").start()?;
/// # Ok::<(), tcmu_target::TargetError>(())
/// ```
#[derive(Debug)]
pub struct AsyncDevice<D>(pub D);

impl<D: AsyncBlockDevice> Servable for AsyncDevice<D> {
    type Unit = AsyncEmulator<D>;
    fn geometry(&self) -> (u32, u64) {
        (self.0.block_size(), self.0.num_blocks())
    }
    fn product(&self) -> String {
        self.0.product_name().to_string()
    }
    fn into_unit(
        self,
        identity: LunIdentity,
        options: UnitOptions,
    ) -> std::io::Result<Arc<AsyncEmulator<D>>> {
        let mut emulator =
            AsyncEmulator::new(self.0, identity)?.with_max_io_bytes(options.max_io_bytes);
        if let Some(source) = options.port_groups {
            emulator = emulator.with_port_groups(source);
        }
        if let Some(registry) = options.registry {
            emulator = emulator.with_copy_registry(registry);
        }
        Ok(Arc::new(emulator))
    }
}
