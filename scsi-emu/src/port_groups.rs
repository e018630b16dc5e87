//! Asymmetric logical unit access (ALUA, SPC-5 5.16): the target port
//! groups a logical unit is reachable through, their access states, and
//! the port the commands arrive at.
//!
//! The emulator does not decide any of it: a [`PortGroupSource`] tells,
//! again for every command that reports it (INQUIRY, REPORT TARGET PORT
//! GROUPS), because an administrator or a failover agent changes states
//! while the unit serves. Transitions are implicit only: SET TARGET PORT
//! GROUPS is not supported, so initiators never try to change a state.

use std::fmt;
use std::sync::Arc;

/// The asymmetric access state of a target port group (SPC-5 6.37.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// Active/optimized: every command, at full speed.
    ActiveOptimized,
    /// Active/non-optimized: every command, perhaps slower.
    ActiveNonOptimized,
    /// Standby: only the commands that report or change states.
    Standby,
    /// Unavailable: only reports.
    Unavailable,
    /// Logical block dependent.
    LbaDependent,
    /// Offline: the ports cannot be reached.
    Offline,
    /// Transitioning between two other states.
    Transitioning,
}

impl AccessState {
    /// The ASYMMETRIC ACCESS STATE code.
    pub fn code(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 0x0,
            AccessState::ActiveNonOptimized => 0x1,
            AccessState::Standby => 0x2,
            AccessState::Unavailable => 0x3,
            AccessState::LbaDependent => 0x4,
            AccessState::Offline => 0xE,
            AccessState::Transitioning => 0xF,
        }
    }

    /// The state with ASYMMETRIC ACCESS STATE `code`; `None` for a
    /// reserved code.
    pub fn from_code(code: u8) -> Option<AccessState> {
        Some(match code {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            0x4 => AccessState::LbaDependent,
            0xE => AccessState::Offline,
            0xF => AccessState::Transitioning,
            _ => return None,
        })
    }
}

impl fmt::Display for AccessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessState::ActiveOptimized => "active/optimized",
            AccessState::ActiveNonOptimized => "active/non-optimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::LbaDependent => "logical block dependent",
            AccessState::Offline => "offline",
            AccessState::Transitioning => "transitioning",
        })
    }
}

/// The states a group may be in, as REPORT TARGET PORT GROUPS lists them
/// (the T_SUP ... AO_SUP bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SupportedStates {
    /// T_SUP: transitioning.
    pub transitioning: bool,
    /// O_SUP: offline.
    pub offline: bool,
    /// LBD_SUP: logical block dependent.
    pub lba_dependent: bool,
    /// U_SUP: unavailable.
    pub unavailable: bool,
    /// S_SUP: standby.
    pub standby: bool,
    /// AN_SUP: active/non-optimized.
    pub active_non_optimized: bool,
    /// AO_SUP: active/optimized.
    pub active_optimized: bool,
}

impl SupportedStates {
    /// The states from their byte in a target port group descriptor.
    pub fn from_byte(b: u8) -> SupportedStates {
        SupportedStates {
            transitioning: b & 0x80 != 0,
            offline: b & 0x40 != 0,
            lba_dependent: b & 0x10 != 0,
            unavailable: b & 0x08 != 0,
            standby: b & 0x04 != 0,
            active_non_optimized: b & 0x02 != 0,
            active_optimized: b & 0x01 != 0,
        }
    }

    /// Their byte in a target port group descriptor.
    pub fn byte(self) -> u8 {
        [
            (self.transitioning, 0x80),
            (self.offline, 0x40),
            (self.lba_dependent, 0x10),
            (self.unavailable, 0x08),
            (self.standby, 0x04),
            (self.active_non_optimized, 0x02),
            (self.active_optimized, 0x01),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |b, (_, bit)| b | bit)
    }
}

/// Why a group is in its state (the STATUS CODE of its descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransitionCause {
    /// No transition reported.
    #[default]
    None,
    /// Changed by SET TARGET PORT GROUPS.
    Explicit,
    /// Changed by the target itself.
    Implicit,
}

impl TransitionCause {
    fn code(self) -> u8 {
        match self {
            TransitionCause::None => 0,
            TransitionCause::Explicit => 1,
            TransitionCause::Implicit => 2,
        }
    }
}

/// A target port group: ports that share one access state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPortGroup {
    /// TARGET PORT GROUP identifier.
    pub id: u16,
    /// Its asymmetric access state.
    pub state: AccessState,
    /// PREF: the group is the preferred way to the unit.
    pub preferred: bool,
    /// The states it supports.
    pub supported: SupportedStates,
    /// Why it is in its state.
    pub cause: TransitionCause,
    /// The relative target port identifiers of its ports.
    pub relative_ports: Vec<u16>,
}

/// The port commands arrive at: what VPD page 0x83 reports as the
/// relative target port and target port group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPort {
    /// Its relative target port identifier.
    pub relative_port: u16,
    /// The target port group it belongs to.
    pub group_id: u16,
    /// The SCSI transport's PROTOCOL IDENTIFIER (SPC-5 7.6.1; 5 is
    /// iSCSI), when known: the designators then say so (PIV).
    pub protocol: Option<u8>,
}

/// Everything the unit reports about asymmetric access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortGroups {
    /// Every target port group of the unit, in the order reported.
    pub groups: Vec<TargetPortGroup>,
    /// The port commands arrive at. Without one the unit reports no
    /// asymmetric access (TPGS 00b): an initiator could not tell which
    /// group its path belongs to.
    pub local_port: Option<LocalPort>,
    /// IMPLICIT TRANSITION TIME: how long, in seconds, an implicit
    /// transition may take (capped at 255 on the wire).
    pub implicit_transition_secs: u32,
}

impl PortGroups {
    /// Whether the unit reports asymmetric access (TPGS 01b, implicit).
    pub fn asymmetric(&self) -> bool {
        self.local_port.is_some() && !self.groups.is_empty()
    }
}

/// Tells the emulator the current port groups; asked again for every
/// command that reports them. It is called on the threads that execute
/// commands, so it should answer quickly.
pub trait PortGroupSource: Send + Sync + 'static {
    /// The current groups. An error fails REPORT TARGET PORT GROUPS with
    /// a HARDWARE ERROR and makes INQUIRY report no asymmetric access.
    fn port_groups(&self) -> std::io::Result<PortGroups>;
}

/// Fixed groups, for a configuration nobody changes and for tests.
impl PortGroupSource for PortGroups {
    fn port_groups(&self) -> std::io::Result<PortGroups> {
        Ok(self.clone())
    }
}

impl<S: PortGroupSource + ?Sized> PortGroupSource for Arc<S> {
    fn port_groups(&self) -> std::io::Result<PortGroups> {
        (**self).port_groups()
    }
}

/// The source's groups, or `None` (logged) when it cannot tell.
pub(crate) fn current(source: &dyn PortGroupSource) -> Option<PortGroups> {
    match source.port_groups() {
        Ok(groups) => Some(groups),
        Err(e) => {
            log::warn!("cannot read the target port groups: {e}");
            None
        }
    }
}

/// The fields of one target port group descriptor (SPC-5 6.37.2).
pub(crate) fn push_descriptor(out: &mut Vec<u8>, group: &TargetPortGroup) {
    let ports = &group.relative_ports[..group.relative_ports.len().min(usize::from(u8::MAX))];
    out.push(u8::from(group.preferred) << 7 | group.state.code());
    out.push(group.supported.byte());
    out.extend_from_slice(&group.id.to_be_bytes());
    out.push(0);
    out.push(group.cause.code());
    out.push(0);
    out.push(ports.len() as u8);
    for port in ports {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&port.to_be_bytes());
    }
}

/// Port groups as gateway 1 of two reports them: its own port 1 in
/// group 1 (active/optimized), the other gateway's port 2 in group 2
/// (active/non-optimized); with or without the local port.
#[cfg(test)]
pub(crate) fn two_gateways(local: bool) -> PortGroups {
    let group = |id: u16, state| TargetPortGroup {
        id,
        state,
        preferred: false,
        supported: SupportedStates::from_byte(0x87),
        cause: TransitionCause::None,
        relative_ports: vec![id],
    };
    PortGroups {
        groups: vec![
            group(1, AccessState::ActiveOptimized),
            group(2, AccessState::ActiveNonOptimized),
        ],
        local_port: local.then_some(LocalPort {
            relative_port: 1,
            group_id: 1,
            protocol: Some(5),
        }),
        implicit_transition_secs: 45,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_state_codes_round_trip() {
        for code in 0..=0xFF {
            if let Some(state) = AccessState::from_code(code) {
                assert_eq!(state.code(), code);
            }
        }
        assert_eq!(AccessState::from_code(5), None);
        assert_eq!(
            AccessState::from_code(0xF),
            Some(AccessState::Transitioning)
        );
    }

    #[test]
    fn supported_states_byte_round_trips() {
        for b in 0..=0xFFu8 {
            assert_eq!(SupportedStates::from_byte(b).byte(), b & !0x20);
        }
    }

    #[test]
    fn descriptor_layout() {
        let mut out = Vec::new();
        push_descriptor(
            &mut out,
            &TargetPortGroup {
                id: 0x0102,
                state: AccessState::ActiveNonOptimized,
                preferred: true,
                supported: SupportedStates::from_byte(0x87),
                cause: TransitionCause::Implicit,
                relative_ports: vec![1, 0x0203],
            },
        );
        assert_eq!(
            out,
            [
                0x81, 0x87, 0x01, 0x02, 0, 2, 0, 2, 0, 0, 0, 1, 0, 0, 0x02, 0x03
            ]
        );
    }

    #[test]
    fn asymmetric_needs_a_local_port_and_groups() {
        let mut groups = PortGroups::default();
        assert!(!groups.asymmetric());
        groups.local_port = Some(LocalPort {
            relative_port: 1,
            group_id: 1,
            protocol: None,
        });
        assert!(!groups.asymmetric());
        groups.groups.push(TargetPortGroup {
            id: 1,
            state: AccessState::ActiveOptimized,
            preferred: false,
            supported: SupportedStates::default(),
            cause: TransitionCause::None,
            relative_ports: vec![1],
        });
        assert!(groups.asymmetric());
    }
}
