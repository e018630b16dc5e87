//! Two gateways in ceph-iscsi's layout: an `rbd` image whose backstore has
//! implicit ALUA groups is served by more than one gateway, so its writes
//! must hold the image's exclusive lock (failover mode).
//!
//! ceph-iscsi creates those groups after the backstore is enabled, that is
//! after the image is open, so the groups are looked at whenever they are
//! read (on adoption, INQUIRY and REPORT TARGET PORT GROUPS), as
//! tcmu-runner does; the first implicit group switches failover on, for
//! good. Until then a lone gateway writes as librbd lets it, which hands
//! the lock between clients cooperatively: no write is lost that way, but
//! a dead owner would stall the other gateway, which failover mode fixes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tcmu_target::{AccessType, AluaGroup, AluaObserver};

/// Whether `groups` (the backstore's, without the kernel's default group)
/// say that gateways share the image: one of them uses implicit ALUA, as
/// ceph-iscsi makes them. Groups of type `None` are active everywhere
/// (tcmu-runner's "all active"), and explicit ALUA is not offered.
pub fn gateways_share(groups: &[AluaGroup]) -> bool {
    groups.iter().any(|g| g.access_type == AccessType::Implicit)
}

/// What can be switched to failover mode: an RBD device.
pub trait Switch: Send + Sync + 'static {
    /// Switch on; `Ok(true)` if it was off.
    fn enable(&self) -> Result<bool, String>;
}

#[cfg(feature = "rbd")]
impl Switch for block_backends::FailoverSwitch {
    fn enable(&self) -> Result<bool, String> {
        block_backends::FailoverSwitch::enable(self).map_err(|e| e.to_string())
    }
}

/// An observer of `backstore`'s ALUA groups that switches `switch` on the
/// first time they say gateways share the image. A refusal (no
/// exclusive-lock feature) is logged once; the image is then served as
/// before.
pub fn observer(backstore: String, switch: impl Switch) -> AluaObserver {
    let decided = AtomicBool::new(false);
    Arc::new(move |groups: &[AluaGroup]| {
        if !gateways_share(groups) || decided.swap(true, Ordering::AcqRel) {
            return;
        }
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        match switch.enable() {
            Ok(_) => log::info!(
                "{backstore}: implicit ALUA groups ({}): another gateway serves this image; \
                 writes need its exclusive lock from now on",
                names.join(", ")
            ),
            Err(e) => log::error!(
                "{backstore}: implicit ALUA groups ({}) but no failover: {e}; \
                 served without the lock",
                names.join(", ")
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn group(name: &str, access_type: AccessType) -> AluaGroup {
        AluaGroup {
            name: name.into(),
            id: 1,
            state: 0,
            access_type,
            preferred: false,
            supported_states: 0x87,
            status: 0,
            implicit_transition_secs: 0,
            members: Vec::new(),
        }
    }

    struct Counting(Arc<AtomicUsize>, Result<bool, String>);

    impl Switch for Counting {
        fn enable(&self) -> Result<bool, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.clone()
        }
    }

    #[test]
    fn only_implicit_groups_mean_shared_gateways() {
        assert!(!gateways_share(&[]));
        assert!(!gateways_share(&[group("all", AccessType::None)]));
        assert!(!gateways_share(&[group("x", AccessType::Explicit)]));
        assert!(!gateways_share(&[group(
            "x",
            AccessType::ImplicitAndExplicit
        )]));
        assert!(gateways_share(&[
            group("ao", AccessType::Implicit),
            group("ano2", AccessType::Implicit)
        ]));
    }

    #[test]
    fn the_switch_is_tried_once_when_groups_appear() {
        for outcome in [Ok(true), Err("no exclusive-lock".to_string())] {
            let calls = Arc::new(AtomicUsize::new(0));
            let observe = observer("user_0/disk".into(), Counting(calls.clone(), outcome));
            observe(&[]);
            observe(&[group("x", AccessType::None)]);
            assert_eq!(calls.load(Ordering::SeqCst), 0, "no implicit group yet");
            let ceph_iscsi = [group("ao", AccessType::Implicit)];
            observe(&ceph_iscsi);
            observe(&ceph_iscsi);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
