//! ALUA as LIO's configfs holds it: the backstore's target port groups
//! (`alua/<group>/`), their states and member LUNs, read again whenever
//! the emulator reports them.
//!
//! A TCMU command carries no target port, so the port commands arrive at
//! is taken to be the one member LUN whose TPG is enabled: that is how
//! ceph-iscsi lays gateways out (every gateway's TPG exists on every
//! gateway, only the local one enabled) and what tcmu-runner assumes. A
//! backstore exported through two enabled TPGs of one kernel reports the
//! first of them (lowest group id) on both paths.

use scsi_emu::{
    AccessState, LocalPort, PortGroupSource, PortGroups, SupportedStates, TargetPortGroup,
    TransitionCause,
};
use std::sync::Arc;

use tcmu_core::configfs::{AluaGroup, UserBackstore};

/// Told the backstore's ALUA groups whenever they are read (on adoption,
/// and on every INQUIRY and REPORT TARGET PORT GROUPS): how a handler
/// learns that another gateway serves the same image, since ceph-iscsi
/// creates the groups after the device is open.
pub type AluaObserver = Arc<dyn Fn(&[AluaGroup]) + Send + Sync>;

/// The port groups of one backstore, from configfs.
#[derive(Clone)]
pub(crate) struct ConfigfsPortGroups {
    backstore: UserBackstore,
    observer: Option<AluaObserver>,
}

impl ConfigfsPortGroups {
    pub(crate) fn new(backstore: UserBackstore) -> Self {
        ConfigfsPortGroups {
            backstore,
            observer: None,
        }
    }

    /// The same, telling `observer` what every read found.
    pub(crate) fn observed(backstore: UserBackstore, observer: AluaObserver) -> Self {
        ConfigfsPortGroups {
            backstore,
            observer: Some(observer),
        }
    }

    /// Reads the groups now, telling the observer.
    pub(crate) fn read(&self) -> std::io::Result<Vec<AluaGroup>> {
        let groups = self
            .backstore
            .alua_groups()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(observer) = &self.observer {
            observer(&groups);
        }
        Ok(groups)
    }
}

impl std::fmt::Debug for ConfigfsPortGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigfsPortGroups")
            .field("backstore", &self.backstore)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl PortGroupSource for ConfigfsPortGroups {
    fn port_groups(&self) -> std::io::Result<PortGroups> {
        Ok(port_groups(&self.read()?))
    }
}

/// What the emulator reports for `groups` (sorted by id, as read).
fn port_groups(groups: &[AluaGroup]) -> PortGroups {
    let local = groups.iter().find_map(|g| {
        g.members
            .iter()
            .find_map(|m| match (m.enabled, m.relative_port) {
                (true, Some(port)) => Some((g, port, m.protocol)),
                _ => None,
            })
    });
    PortGroups {
        groups: groups.iter().map(target_port_group).collect(),
        local_port: local.map(|(g, relative_port, protocol)| LocalPort {
            relative_port,
            group_id: g.id,
            protocol,
        }),
        // The transition time of the group the initiator talks to.
        implicit_transition_secs: local
            .map(|(g, _, _)| g.implicit_transition_secs)
            .unwrap_or(0),
    }
}

fn target_port_group(g: &AluaGroup) -> TargetPortGroup {
    TargetPortGroup {
        id: g.id,
        // LIO accepts only valid codes; anything else would be a kernel
        // this code does not know, and unavailable is the safe reading.
        state: AccessState::from_code(g.state).unwrap_or(AccessState::Unavailable),
        preferred: g.preferred,
        supported: SupportedStates::from_byte(g.supported_states),
        cause: match g.status {
            1 => TransitionCause::Explicit,
            2 => TransitionCause::Implicit,
            _ => TransitionCause::None,
        },
        relative_ports: g.members.iter().filter_map(|m| m.relative_port).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcmu_core::configfs::{AccessType, AluaMember};

    fn member(tag: u16, port: Option<u16>, enabled: bool) -> AluaMember {
        AluaMember {
            fabric: "iSCSI".into(),
            wwn: "iqn.2026-12.org.example:gw".into(),
            tpg_tag: tag,
            lun: "lun_0".into(),
            relative_port: port,
            protocol: Some(5),
            enabled,
        }
    }

    fn group(name: &str, id: u16, state: u8, members: Vec<AluaMember>) -> AluaGroup {
        AluaGroup {
            name: name.into(),
            id,
            state,
            access_type: AccessType::Implicit,
            preferred: false,
            supported_states: 0x87,
            status: 0,
            implicit_transition_secs: 45,
            members,
        }
    }

    #[test]
    fn the_enabled_member_is_the_local_port() {
        // Gateway 2 of ceph-iscsi's layout: its own TPG 2 is enabled.
        let groups = [
            group("ao", 1, 0, vec![member(1, Some(1), false)]),
            group("ano2", 2, 1, vec![member(2, Some(2), true)]),
        ];
        let ports = port_groups(&groups);
        assert_eq!(
            ports.local_port,
            Some(LocalPort {
                relative_port: 2,
                group_id: 2,
                protocol: Some(5)
            })
        );
        assert!(ports.asymmetric());
        assert_eq!(ports.implicit_transition_secs, 45);
        assert_eq!(ports.groups.len(), 2);
        assert_eq!(ports.groups[0].state, AccessState::ActiveOptimized);
        assert_eq!(ports.groups[0].relative_ports, [1]);
        assert_eq!(ports.groups[1].state, AccessState::ActiveNonOptimized);
        assert_eq!(ports.groups[1].supported.byte(), 0x87);
    }

    #[test]
    fn no_enabled_member_means_no_local_port() {
        let groups = [group("ao", 1, 0, vec![member(1, Some(1), false)])];
        let ports = port_groups(&groups);
        assert_eq!(ports.local_port, None);
        assert!(!ports.asymmetric());
        // A member whose port id cannot be read is not reported either.
        let groups = [group("ao", 1, 0, vec![member(1, None, true)])];
        let ports = port_groups(&groups);
        assert_eq!(ports.local_port, None);
        assert!(ports.groups[0].relative_ports.is_empty());
    }

    #[test]
    fn unknown_state_codes_read_as_unavailable() {
        let ports = port_groups(&[group("x", 3, 9, vec![])]);
        assert_eq!(ports.groups[0].state, AccessState::Unavailable);
    }
}
