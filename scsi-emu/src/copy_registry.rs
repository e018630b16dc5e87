//! The logical units one process serves, by NAA designator: how EXTENDED
//! COPY sent to one unit finds the other units its CSCD descriptors name
//! (a unit finds itself without a registry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::block_error::BlockError;

/// What the copy manager needs from a logical unit: its geometry, its
/// state, and block I/O that honours the unit's write cache setting and
/// range locks, as its own WRITE would.
pub(crate) trait CopyTarget: Send + Sync {
    fn block_size(&self) -> u32;
    fn num_blocks(&self) -> u64;
    fn read_only(&self) -> bool;
    /// START STOP UNIT stopped the unit: no medium access.
    fn stopped(&self) -> bool;
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write under the unit's range lock (COMPARE AND WRITE stays atomic).
    fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;
}

/// A registered logical unit: a process-unique id (to tell two units
/// apart, and to unregister only one's own entry) and its handle.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) id: u64,
    pub(crate) target: Arc<dyn CopyTarget>,
}

/// The logical units of one process that EXTENDED COPY may copy between,
/// keyed by the 8-byte NAA designator each reports in VPD page 83h
/// ([`LunIdentity::naa`](crate::LunIdentity::naa)).
///
/// Every unit copies within itself without a registry (its own designator
/// names itself); a registry is for copies between units. Cloning is cheap
/// and every clone is the same registry. Give one to every
/// [`Emulator`](crate::Emulator) (with
/// [`with_copy_registry`](crate::Emulator::with_copy_registry)) or
/// `tcmu_target::Target` (with `TargetBuilder::copy_registry`)
/// that should take part: each registers itself and is removed again when
/// it is dropped. EXTENDED COPY(LID1) sent to a registered unit may name
/// any registered unit as source or destination.
#[derive(Clone, Default)]
pub struct CopyRegistry {
    units: Arc<Mutex<HashMap<[u8; 8], Registered>>>,
}

/// Source of [`Registered::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl CopyRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many logical units are registered.
    pub fn len(&self) -> usize {
        self.units().len()
    }

    /// Whether no logical unit is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a logical unit with this NAA designator is registered.
    pub fn contains(&self, naa: &[u8; 8]) -> bool {
        self.units().contains_key(naa)
    }

    fn units(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 8], Registered>> {
        // Inserts and removals are single steps: never inconsistent.
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register `target` under `naa`; returns its id. A unit already
    /// registered under the same designator (two units with one serial)
    /// is replaced: the designator names the newest.
    pub(crate) fn register(&self, naa: [u8; 8], target: Arc<dyn CopyTarget>) -> u64 {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.units().insert(naa, Registered { id, target }) {
            log::warn!(
                "copy registry: NAA {naa:02x?} registered twice (entry {} replaced)",
                old.id
            );
        }
        id
    }

    /// Remove the entry `id` registered under `naa`, if it is still there.
    pub(crate) fn unregister(&self, naa: &[u8; 8], id: u64) {
        let mut units = self.units();
        if units.get(naa).is_some_and(|r| r.id == id) {
            units.remove(naa);
        }
    }

    /// The unit registered under `naa`.
    pub(crate) fn lookup(&self, naa: &[u8; 8]) -> Option<Registered> {
        self.units().get(naa).cloned()
    }
}

impl std::fmt::Debug for CopyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut naas: Vec<[u8; 8]> = self.units().keys().copied().collect();
        naas.sort_unstable();
        f.debug_struct("CopyRegistry")
            .field("units", &naas)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{Emulator, LunIdentity};

    #[test]
    fn registry_is_send_sync_and_shared_between_clones() {
        fn check<T: Send + Sync + Clone>() {}
        check::<CopyRegistry>();
        let registry = CopyRegistry::new();
        let clone = registry.clone();
        let emu = emulator(VecDevice::new(512, 8)).with_copy_registry(registry.clone());
        let naa = emu.identity().naa();
        assert!(clone.contains(&naa));
        assert_eq!(clone.len(), 1);
        drop(emu);
        assert!(registry.is_empty(), "dropping the unit unregisters it");
    }

    #[test]
    fn a_replaced_entry_is_not_removed_by_the_old_unit() {
        let registry = CopyRegistry::new();
        let id = LunIdentity::new("same", "x");
        let first =
            Emulator::new(VecDevice::new(512, 8), id.clone()).with_copy_registry(registry.clone());
        let second =
            Emulator::new(VecDevice::new(512, 16), id.clone()).with_copy_registry(registry.clone());
        drop(first);
        let found = registry.lookup(&id.naa()).expect("second still registered");
        assert_eq!(found.target.num_blocks(), 16);
        drop(second);
        assert!(registry.is_empty());
    }
}
