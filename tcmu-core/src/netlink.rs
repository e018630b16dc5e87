//! TCMU's generic netlink channel (family `TCM-USER`, multicast group
//! `config`).
//!
//! The kernel announces device events on the group: ADDED_DEVICE when a
//! backstore is enabled, REMOVED_DEVICE when it is removed, RECONFIG_DEVICE
//! when `attrib/dev_config`, `attrib/dev_size` or
//! `attrib/emulate_write_cache` is written on an enabled backstore. A handler
//! may answer each with a `*_DONE` command ([`TcmuNetlink::reply`]).
//!
//! Whether the kernel *waits* for that answer is decided by a module-global
//! flag ([`TcmuNetlink::set_features`]) and the device's
//! `nl_reply_supported`; see there for the trap this sets.
//!
//! [`TcmuNetlink`] sends through a neli [`NlRouter`]. The router's own thread
//! reads the socket; a second thread turns the multicast messages into
//! [`DeviceEvent`]s and queues them behind a pipe, so that
//! [`TcmuNetlink::recv_event`] can wait with a timeout and a serving loop can
//! `poll` [`AsFd::as_fd`] together with its other descriptors.

use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use neli::FromBytesWithInput;
use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::err::RouterError;
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, Nlattr, NlattrBuilder};
use neli::nl::NlPayload;
use neli::router::synchronous::{NlRouter, NlRouterReceiverHandle};
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::poll::wait_readable;

use tcmu_sys::{
    TCMU_ATTR_CMD_STATUS, TCMU_ATTR_DEV_CFG, TCMU_ATTR_DEV_SIZE, TCMU_ATTR_DEVICE,
    TCMU_ATTR_DEVICE_ID, TCMU_ATTR_MINOR, TCMU_ATTR_SUPP_KERN_CMD_REPLY, TCMU_ATTR_WRITECACHE,
    TCMU_CMD_ADDED_DEVICE, TCMU_CMD_ADDED_DEVICE_DONE, TCMU_CMD_RECONFIG_DEVICE,
    TCMU_CMD_RECONFIG_DEVICE_DONE, TCMU_CMD_REMOVED_DEVICE, TCMU_CMD_REMOVED_DEVICE_DONE,
    TCMU_CMD_SET_FEATURES, TCMU_GENL_FAMILY_NAME, TCMU_GENL_MCGRP_CONFIG, TCMU_GENL_VERSION,
};

/// Errors of the TCMU netlink channel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel has no `TCM-USER` generic netlink family.
    #[error("the TCM-USER netlink family is not available (is target_core_user loaded?)")]
    FamilyAbsent,
    /// The family exists but has no `config` multicast group.
    #[error("the TCM-USER netlink family has no multicast group \"config\"")]
    GroupAbsent,
    /// The kernel answered a command with an error. `errno` is positive
    /// (`ENODEV`: no reply was awaited for that device; `EPERM`: the
    /// commands need CAP_NET_ADMIN).
    #[error("the kernel rejected {command}: {}", Errno::from_raw(*errno).desc())]
    Rejected {
        /// The command that was sent, e.g. `ADDED_DEVICE_DONE`.
        command: &'static str,
        /// Positive errno.
        errno: i32,
    },
    /// The event stream ended (the netlink socket failed or was closed).
    #[error("the TCM-USER netlink event stream is closed")]
    Closed,
    /// Any other netlink failure, as reported by neli.
    #[error("netlink: {0}")]
    Netlink(String),
    /// A system call on the event queue failed.
    #[error("netlink event queue: {0}")]
    Io(#[from] io::Error),
}

/// A change announced by RECONFIG_DEVICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `attrib/dev_config` was written (the new string, as written).
    DevConfig(String),
    /// `attrib/dev_size` was written (bytes).
    DevSize(u64),
    /// `attrib/emulate_write_cache` was written.
    WriteCache(bool),
}

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// ADDED_DEVICE: the backstore was enabled and its UIO device exists.
    Added,
    /// REMOVED_DEVICE: the backstore is being removed.
    Removed,
    /// RECONFIG_DEVICE: an attribute of an enabled backstore is changing.
    Reconfig(Change),
}

/// One device event from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// What happened.
    pub kind: EventKind,
    /// The UIO device's name: `tcm-user/<hba>/<backstore>[/<dev_config>]`.
    pub device: String,
    /// Minor number of the UIO device (`/dev/uio<minor>`).
    pub minor: u32,
    /// LIO's device index; a reply must carry it.
    pub device_id: u32,
}

/// Why a generic netlink message is not a device event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EventParseError {
    /// The generic netlink header or an attribute header is cut short or
    /// inconsistent.
    #[error("malformed generic netlink message: {0}")]
    Malformed(String),
    /// The command is not one the kernel sends as an event.
    #[error("command {0} is not a device event")]
    NotAnEvent(u8),
    /// A required attribute is absent.
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    /// An attribute's payload has the wrong size or encoding.
    #[error("attribute {0} has a malformed payload")]
    BadPayload(&'static str),
    /// A RECONFIG_DEVICE does not carry exactly one change.
    #[error("RECONFIG_DEVICE carries {0} changes, want exactly 1")]
    ChangeCount(usize),
}

impl DeviceEvent {
    /// Parse the payload of a generic netlink message (genl header plus
    /// attributes, as the kernel multicasts it). Attributes the kernel may
    /// add in the future (and its 64-bit alignment padding) are ignored.
    pub(crate) fn from_genl_payload(payload: &[u8]) -> Result<DeviceEvent, EventParseError> {
        let msg =
            Genlmsghdr::<u8, u16>::from_bytes_with_input(&mut Cursor::new(payload), payload.len())
                .map_err(|e| EventParseError::Malformed(e.to_string()))?;
        let cmd = *msg.cmd();
        if !matches!(
            cmd,
            TCMU_CMD_ADDED_DEVICE | TCMU_CMD_REMOVED_DEVICE | TCMU_CMD_RECONFIG_DEVICE
        ) {
            return Err(EventParseError::NotAnEvent(cmd));
        }
        let mut device = None;
        let mut minor = None;
        let mut device_id = None;
        let mut changes = Vec::new();
        for attr in msg.attrs().iter() {
            let data = attr.nla_payload().as_ref();
            match *attr.nla_type().nla_type() {
                TCMU_ATTR_DEVICE => device = Some(decode_string(data, "DEVICE")?),
                TCMU_ATTR_MINOR => minor = Some(decode_u32(data, "MINOR")?),
                TCMU_ATTR_DEVICE_ID => device_id = Some(decode_u32(data, "DEVICE_ID")?),
                TCMU_ATTR_DEV_CFG => {
                    changes.push(Change::DevConfig(decode_string(data, "DEV_CFG")?))
                }
                TCMU_ATTR_DEV_SIZE => changes.push(Change::DevSize(decode_u64(data, "DEV_SIZE")?)),
                TCMU_ATTR_WRITECACHE => {
                    changes.push(Change::WriteCache(decode_u8(data, "WRITECACHE")? != 0))
                }
                _ => {}
            }
        }
        let kind = match cmd {
            TCMU_CMD_ADDED_DEVICE => EventKind::Added,
            TCMU_CMD_REMOVED_DEVICE => EventKind::Removed,
            _ => {
                if changes.len() != 1 {
                    return Err(EventParseError::ChangeCount(changes.len()));
                }
                EventKind::Reconfig(changes.remove(0))
            }
        };
        Ok(DeviceEvent {
            kind,
            device: device.ok_or(EventParseError::Missing("DEVICE"))?,
            minor: minor.ok_or(EventParseError::Missing("MINOR"))?,
            device_id: device_id.ok_or(EventParseError::Missing("DEVICE_ID"))?,
        })
    }

    /// The HBA index and backstore name encoded in [`DeviceEvent::device`]
    /// (`tcm-user/<hba>/<name>/...`), to tell one's own backstores from
    /// others'.
    pub fn backstore(&self) -> Option<(u32, &str)> {
        let mut parts = self.device.splitn(4, '/');
        if parts.next()? != "tcm-user" {
            return None;
        }
        let hba = parts.next()?.parse().ok()?;
        let name = parts.next().filter(|n| !n.is_empty())?;
        Some((hba, name))
    }

    /// The `*_DONE` command that answers this event, and its name.
    fn done_command(&self) -> (u8, &'static str) {
        match self.kind {
            EventKind::Added => (TCMU_CMD_ADDED_DEVICE_DONE, "ADDED_DEVICE_DONE"),
            EventKind::Removed => (TCMU_CMD_REMOVED_DEVICE_DONE, "REMOVED_DEVICE_DONE"),
            EventKind::Reconfig(_) => (TCMU_CMD_RECONFIG_DEVICE_DONE, "RECONFIG_DEVICE_DONE"),
        }
    }
}

/// `added <device> minor=<m> id=<id>`, plus ` <change>` for reconfig.
impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            EventKind::Added => "added",
            EventKind::Removed => "removed",
            EventKind::Reconfig(_) => "reconfig",
        };
        write!(
            f,
            "{kind} {} minor={} id={}",
            self.device, self.minor, self.device_id
        )?;
        if let EventKind::Reconfig(change) = &self.kind {
            write!(f, " {change}")?;
        }
        Ok(())
    }
}

/// `dev_config=<s>`, `dev_size=<bytes>` or `write_cache=0|1`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::DevConfig(s) => write!(f, "dev_config={}", s.trim_end_matches('\n')),
            Change::DevSize(n) => write!(f, "dev_size={n}"),
            Change::WriteCache(on) => write!(f, "write_cache={}", u8::from(*on)),
        }
    }
}

// Netlink attributes are in host byte order.
fn decode_u8(data: &[u8], name: &'static str) -> Result<u8, EventParseError> {
    match data {
        [b] => Ok(*b),
        _ => Err(EventParseError::BadPayload(name)),
    }
}

fn decode_u32(data: &[u8], name: &'static str) -> Result<u32, EventParseError> {
    data.try_into()
        .map(u32::from_ne_bytes)
        .map_err(|_| EventParseError::BadPayload(name))
}

fn decode_u64(data: &[u8], name: &'static str) -> Result<u64, EventParseError> {
    data.try_into()
        .map(u64::from_ne_bytes)
        .map_err(|_| EventParseError::BadPayload(name))
}

/// A NUL-terminated string (the kernel's `nla_put_string`); a missing
/// terminator is tolerated, bytes after the first NUL are not text.
fn decode_string(data: &[u8], name: &'static str) -> Result<String, EventParseError> {
    let text = data.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8(text.to_vec()).map_err(|_| EventParseError::BadPayload(name))
}

type GenlMsg = Genlmsghdr<u8, u16>;

fn attr<P: neli::Size + neli::ToBytes>(
    kind: u16,
    payload: P,
) -> Result<Nlattr<u16, Buffer>, NetlinkError> {
    let nla_type = AttrTypeBuilder::default()
        .nla_type(kind)
        .build()
        .map_err(|e| NetlinkError::Netlink(e.to_string()))?;
    NlattrBuilder::default()
        .nla_type(nla_type)
        .nla_payload(payload)
        .build()
        .map_err(|e| NetlinkError::Netlink(e.to_string()))
}

fn genl_message(cmd: u8, attrs: Vec<Nlattr<u16, Buffer>>) -> Result<GenlMsg, NetlinkError> {
    GenlmsghdrBuilder::default()
        .cmd(cmd)
        .version(TCMU_GENL_VERSION)
        .attrs(attrs.into_iter().collect::<GenlBuffer<u16, Buffer>>())
        .build()
        .map_err(|e| NetlinkError::Netlink(e.to_string()))
}

/// SET_FEATURES with SUPP_KERN_CMD_REPLY (u8).
fn set_features_message(reply_supported: bool) -> Result<GenlMsg, NetlinkError> {
    genl_message(
        TCMU_CMD_SET_FEATURES,
        vec![attr(
            TCMU_ATTR_SUPP_KERN_CMD_REPLY,
            u8::from(reply_supported),
        )?],
    )
}

/// The `*_DONE` answer to `event`: CMD_STATUS (s32) and DEVICE_ID (u32),
/// both of which the kernel requires.
fn done_message(event: &DeviceEvent, status: i32) -> Result<GenlMsg, NetlinkError> {
    genl_message(
        event.done_command().0,
        vec![
            attr(TCMU_ATTR_CMD_STATUS, status)?,
            attr(TCMU_ATTR_DEVICE_ID, event.device_id)?,
        ],
    )
}

fn router_error<T, P>(e: RouterError<T, P>) -> NetlinkError
where
    RouterError<T, P>: fmt::Display,
{
    match e {
        RouterError::ClosedChannel => NetlinkError::Closed,
        e => NetlinkError::Netlink(e.to_string()),
    }
}

/// Whether a family lookup failed because the family does not exist (the
/// kernel answers ENOENT) rather than for another reason.
fn family_absent<T, P>(e: &RouterError<T, P>) -> bool {
    match e {
        RouterError::Nlmsgerr(err) => *err.error() == -(Errno::ENOENT as i32),
        // neli's own "was not found" when the answer has no family id.
        RouterError::Msg(_) => true,
        _ => false,
    }
}

/// A connection to the kernel's `TCM-USER` generic netlink family, joined to
/// its `config` multicast group.
///
/// Events are queued from the moment [`TcmuNetlink::connect`] returns; read
/// them with [`TcmuNetlink::recv_event`]. `as_fd()` is readable while at
/// least one event is queued, so a serving loop can poll it together with a
/// stop descriptor and then call `recv_event(Some(Duration::ZERO))`.
pub struct TcmuNetlink {
    router: NlRouter,
    family: u16,
    group: u32,
    events: Mutex<Receiver<DeviceEvent>>,
    // One byte per queued event; EOF once the reader thread has ended.
    wake: File,
}

impl TcmuNetlink {
    /// Open a generic netlink socket, resolve the `TCM-USER` family and join
    /// its `config` group.
    ///
    /// Fails with [`NetlinkError::FamilyAbsent`] when `target_core_user` is
    /// not loaded. Joining the group needs no privilege; sending
    /// ([`TcmuNetlink::set_features`], [`TcmuNetlink::reply`]) needs
    /// CAP_NET_ADMIN.
    pub fn connect() -> Result<TcmuNetlink, NetlinkError> {
        Self::connect_to(TCMU_GENL_FAMILY_NAME, TCMU_GENL_MCGRP_CONFIG)
    }

    /// [`TcmuNetlink::connect`] with another family and group (for tests
    /// against families every kernel has).
    fn connect_to(family_name: &str, group_name: &str) -> Result<TcmuNetlink, NetlinkError> {
        let (router, multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| {
                NetlinkError::Netlink(format!("cannot open a generic netlink socket: {e}"))
            })?;
        let family = router.resolve_genl_family(family_name).map_err(|e| {
            if family_absent(&e) {
                NetlinkError::FamilyAbsent
            } else {
                router_error(e)
            }
        })?;
        let group = router
            .resolve_nl_mcast_group(family_name, group_name)
            .map_err(|e| match e {
                RouterError::Msg(_) => NetlinkError::GroupAbsent,
                e if family_absent(&e) => NetlinkError::FamilyAbsent,
                e => router_error(e),
            })?;
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (tx, rx) = mpsc::channel();
        // Start draining before joining so that no event waits unread.
        std::thread::Builder::new()
            .name("tcmu-netlink".into())
            .spawn(move || forward_events(multicast, family, tx, File::from(write_end)))?;
        router
            .add_mcast_membership(Groups::new_groups(&[group]))
            .map_err(|e| NetlinkError::Netlink(format!("cannot join the config group: {e}")))?;
        log::debug!("netlink: TCM-USER family {family}, config group {group}");
        Ok(TcmuNetlink {
            router,
            family,
            group,
            events: Mutex::new(rx),
            wake: File::from(read_end),
        })
    }

    /// The `config` multicast group's number (`/proc/net/netlink` shows
    /// a socket's membership of groups 1 to 32 as a bit mask).
    pub fn group(&self) -> u32 {
        self.group
    }

    /// This socket's netlink port id (the `Pid` column of
    /// `/proc/net/netlink`).
    pub fn port_id(&self) -> u32 {
        self.router.pid()
    }

    /// Tell the kernel whether this (or any) handler answers events
    /// (SET_FEATURES with SUPP_KERN_CMD_REPLY).
    ///
    /// **Module-global trap.** The flag belongs to the `target_core_user`
    /// module, not to this socket: it outlives the process that set it and
    /// applies to every handler. While it is 1, enabling a backstore whose
    /// `nl_reply_supported` is ≥ 0 (the default) blocks in the `enable`
    /// write until an ADDED_DEVICE_DONE for it arrives — even when nobody
    /// listens — and `rmdir` and RECONFIG writes block likewise while a
    /// listener exists. The waits are uninterruptible. tcmu-runner sets the
    /// flag on start-up and never clears it. A handler that does not answer
    /// must write `nl_reply_supported=-1` into `control` before `enable`.
    /// A stuck wait is released by writing 1 to the module parameters
    /// `block_netlink` and then `reset_netlink` (the write then fails with
    /// EINTR); write `block_netlink=0` afterwards.
    pub fn set_features(&self, reply_supported: bool) -> Result<(), NetlinkError> {
        self.send_acked("SET_FEATURES", set_features_message(reply_supported)?)
    }

    /// Answer `event` with its `*_DONE` command carrying CMD_STATUS =
    /// `status` and DEVICE_ID = `event.device_id`.
    ///
    /// `status` is 0 or a negative errno. The kernel returns it from the
    /// blocked configfs write: a failed ADDED_DEVICE makes `enable` fail
    /// (and tears the ring down again), a failed RECONFIG_DEVICE vetoes the
    /// change; REMOVED_DEVICE ignores it.
    ///
    /// The kernel finds the waiting write by device id alone (from any
    /// socket). Answer only events the kernel waits for — the module flag
    /// is set ([`TcmuNetlink::set_features`]) and the device's effective
    /// `attrib/nl_reply_supported` (read after enable) is > 0 — and each at
    /// most once:
    /// - with no wait pending for the id the kernel logs an error and this
    ///   returns [`NetlinkError::Rejected`] with ENODEV;
    /// - if the device waits for a *different* command (say a late
    ///   ADDED_DEVICE_DONE while `rmdir` waits for REMOVED_DEVICE_DONE) the
    ///   kernel drops the wait without completing it and returns EINVAL:
    ///   that configfs write then blocks for good, beyond `reset_netlink`.
    pub fn reply(&self, event: &DeviceEvent, status: i32) -> Result<(), NetlinkError> {
        let (_, name) = event.done_command();
        self.send_acked(name, done_message(event, status)?)
    }

    /// Wait up to `timeout` (`None`: indefinitely) for the next device
    /// event. `Ok(None)` when the time is up. Messages that are not device
    /// events are skipped (logged at debug level). One caller waits at a
    /// time; others queue behind it. [`NetlinkError::Closed`] once the
    /// socket has failed.
    pub fn recv_event(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<DeviceEvent>, NetlinkError> {
        let events = self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if wait_readable(self.wake.as_fd(), &[], timeout)?.is_none() {
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        if (&self.wake).read(&mut byte)? == 0 {
            return Err(NetlinkError::Closed);
        }
        // The reader thread queues the event before writing its byte.
        events
            .try_recv()
            .map(Some)
            .map_err(|_| NetlinkError::Closed)
    }

    /// Send one command with NLM_F_ACK and wait for the kernel's answer.
    fn send_acked(&self, command: &'static str, msg: GenlMsg) -> Result<(), NetlinkError> {
        let mut answers: NlRouterReceiverHandle<u16, Buffer> = self
            .router
            .send(self.family, NlmF::ACK, NlPayload::Payload(msg))
            .map_err(router_error)?;
        // Read up to the ACK (or error) that ends the answer: one left
        // unread would later arrive with no one waiting for its sequence
        // number and be reported to the next request as a stray.
        loop {
            match answers.next_typed::<u16, Buffer>() {
                Some(Ok(msg)) if matches!(msg.nl_payload(), NlPayload::Ack(_)) => return Ok(()),
                Some(Ok(msg)) => log::debug!("netlink: {command} answered with {msg:?}"),
                Some(Err(RouterError::Nlmsgerr(err))) => {
                    return Err(NetlinkError::Rejected {
                        command,
                        errno: -*err.error(),
                    });
                }
                Some(Err(e)) => return Err(router_error(e)),
                None => return Err(NetlinkError::Closed),
            }
        }
    }
}

impl AsFd for TcmuNetlink {
    /// Readable while an event is queued (or once the stream has ended).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl fmt::Debug for TcmuNetlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcmuNetlink")
            .field("family", &self.family)
            .field("pid", &self.router.pid())
            .finish_non_exhaustive()
    }
}

/// The reader thread: parse what the router hands over as multicast and
/// queue the events. Ends when the router is dropped (its channel closes)
/// or the [`TcmuNetlink`] is gone.
fn forward_events(
    mut multicast: NlRouterReceiverHandle<u16, Genlmsghdr<u8, u16>>,
    family: u16,
    events: Sender<DeviceEvent>,
    mut wake: File,
) {
    loop {
        // Untyped payloads: a malformed message must not end the stream.
        let msg = match multicast.next_typed::<u16, Buffer>() {
            Some(Ok(msg)) => msg,
            Some(Err(RouterError::ClosedChannel)) | None => return,
            Some(Err(e)) => {
                log::debug!("netlink: multicast stream ended: {e}");
                return;
            }
        };
        if *msg.nl_type() != family {
            log::debug!("netlink: skipping message of type {}", msg.nl_type());
            continue;
        }
        let Some(payload) = msg.get_payload() else {
            continue;
        };
        match DeviceEvent::from_genl_payload(payload.as_ref()) {
            Ok(event) => {
                log::debug!("netlink: event {event}");
                if events.send(event).is_err() || wake.write_all(&[1]).is_err() {
                    return;
                }
            }
            Err(e) => log::debug!("netlink: skipping message: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    use super::*;
    use neli::ToBytes;
    use proptest::prelude::*;

    fn encode(msg: &GenlMsg) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        msg.to_bytes(&mut out).unwrap();
        out.into_inner()
    }

    /// A kernel-style event: DEVICE, MINOR, DEVICE_ID, then `extra`.
    fn kernel_event(cmd: u8, extra: Vec<Nlattr<u16, Buffer>>) -> Vec<u8> {
        let mut attrs = vec![
            attr(TCMU_ATTR_DEVICE, &b"tcm-user/3/disk0/tcmu-rs/mem\0"[..]).unwrap(),
            attr(TCMU_ATTR_MINOR, 7u32).unwrap(),
            attr(TCMU_ATTR_DEVICE_ID, 42u32).unwrap(),
        ];
        attrs.extend(extra);
        encode(&genl_message(cmd, attrs).unwrap())
    }

    fn parse(bytes: &[u8]) -> Result<DeviceEvent, EventParseError> {
        DeviceEvent::from_genl_payload(bytes)
    }

    #[test]
    fn parses_added() {
        let ev = parse(&kernel_event(TCMU_CMD_ADDED_DEVICE, vec![])).unwrap();
        assert_eq!(
            ev,
            DeviceEvent {
                kind: EventKind::Added,
                device: "tcm-user/3/disk0/tcmu-rs/mem".into(),
                minor: 7,
                device_id: 42,
            }
        );
        assert_eq!(
            ev.to_string(),
            "added tcm-user/3/disk0/tcmu-rs/mem minor=7 id=42"
        );
        assert_eq!(ev.backstore(), Some((3, "disk0")));
    }

    #[test]
    fn parses_removed() {
        let ev = parse(&kernel_event(TCMU_CMD_REMOVED_DEVICE, vec![])).unwrap();
        assert_eq!(ev.kind, EventKind::Removed);
        assert!(ev.to_string().starts_with("removed tcm-user/3/disk0/"));
    }

    #[test]
    fn parses_each_reconfig_change() {
        let cases = [
            (
                attr(TCMU_ATTR_DEV_SIZE, 1u64 << 33).unwrap(),
                Change::DevSize(1 << 33),
                "dev_size=8589934592",
            ),
            (
                attr(TCMU_ATTR_DEV_CFG, &b"tcmu-rs/file/x\n\0"[..]).unwrap(),
                Change::DevConfig("tcmu-rs/file/x\n".into()),
                "dev_config=tcmu-rs/file/x",
            ),
            (
                attr(TCMU_ATTR_WRITECACHE, 1u8).unwrap(),
                Change::WriteCache(true),
                "write_cache=1",
            ),
            (
                attr(TCMU_ATTR_WRITECACHE, 0u8).unwrap(),
                Change::WriteCache(false),
                "write_cache=0",
            ),
        ];
        for (a, change, text) in cases {
            let ev = parse(&kernel_event(TCMU_CMD_RECONFIG_DEVICE, vec![a])).unwrap();
            assert_eq!(ev.kind, EventKind::Reconfig(change));
            assert!(ev.to_string().ends_with(&format!("id=42 {text}")), "{ev}");
        }
    }

    #[test]
    fn skips_padding_and_unknown_attributes() {
        // nla_put_u64_64bit may put a PAD (3) attribute before DEV_SIZE.
        let extra = vec![
            attr(3, &[][..]).unwrap(),
            attr(TCMU_ATTR_DEV_SIZE, 4096u64).unwrap(),
            attr(200, 5u32).unwrap(),
        ];
        let ev = parse(&kernel_event(TCMU_CMD_RECONFIG_DEVICE, extra)).unwrap();
        assert_eq!(ev.kind, EventKind::Reconfig(Change::DevSize(4096)));
    }

    #[test]
    fn rejects_reconfig_without_exactly_one_change() {
        assert_eq!(
            parse(&kernel_event(TCMU_CMD_RECONFIG_DEVICE, vec![])),
            Err(EventParseError::ChangeCount(0))
        );
        let two = vec![
            attr(TCMU_ATTR_DEV_SIZE, 4096u64).unwrap(),
            attr(TCMU_ATTR_WRITECACHE, 1u8).unwrap(),
        ];
        assert_eq!(
            parse(&kernel_event(TCMU_CMD_RECONFIG_DEVICE, two)),
            Err(EventParseError::ChangeCount(2))
        );
    }

    #[test]
    fn rejects_commands_that_are_not_events() {
        for cmd in [
            0,
            TCMU_CMD_ADDED_DEVICE_DONE,
            TCMU_CMD_SET_FEATURES,
            TCMU_CMD_SET_FEATURES + 1,
        ] {
            assert_eq!(
                parse(&kernel_event(cmd, vec![])),
                Err(EventParseError::NotAnEvent(cmd))
            );
        }
    }

    #[test]
    fn rejects_missing_attributes() {
        let only_device = encode(
            &genl_message(
                TCMU_CMD_ADDED_DEVICE,
                vec![attr(TCMU_ATTR_DEVICE, &b"tcm-user/0/a\0"[..]).unwrap()],
            )
            .unwrap(),
        );
        assert_eq!(parse(&only_device), Err(EventParseError::Missing("MINOR")));
        let no_id = encode(
            &genl_message(
                TCMU_CMD_REMOVED_DEVICE,
                vec![
                    attr(TCMU_ATTR_DEVICE, &b"tcm-user/0/a\0"[..]).unwrap(),
                    attr(TCMU_ATTR_MINOR, 1u32).unwrap(),
                ],
            )
            .unwrap(),
        );
        assert_eq!(parse(&no_id), Err(EventParseError::Missing("DEVICE_ID")));
    }

    #[test]
    fn rejects_wrong_sized_or_non_utf8_payloads() {
        let short_minor = encode(
            &genl_message(
                TCMU_CMD_ADDED_DEVICE,
                vec![attr(TCMU_ATTR_MINOR, 1u16).unwrap()],
            )
            .unwrap(),
        );
        assert_eq!(
            parse(&short_minor),
            Err(EventParseError::BadPayload("MINOR"))
        );
        let short_size = kernel_event(
            TCMU_CMD_RECONFIG_DEVICE,
            vec![attr(TCMU_ATTR_DEV_SIZE, 1u32).unwrap()],
        );
        assert_eq!(
            parse(&short_size),
            Err(EventParseError::BadPayload("DEV_SIZE"))
        );
        let bad_text = encode(
            &genl_message(
                TCMU_CMD_ADDED_DEVICE,
                vec![attr(TCMU_ATTR_DEVICE, &[0xff, 0xfe, 0][..]).unwrap()],
            )
            .unwrap(),
        );
        assert_eq!(parse(&bad_text), Err(EventParseError::BadPayload("DEVICE")));
    }

    #[test]
    fn tolerates_a_string_without_terminator() {
        let bytes = encode(
            &genl_message(
                TCMU_CMD_ADDED_DEVICE,
                vec![
                    attr(TCMU_ATTR_DEVICE, &b"tcm-user/1/x"[..]).unwrap(),
                    attr(TCMU_ATTR_MINOR, 0u32).unwrap(),
                    attr(TCMU_ATTR_DEVICE_ID, 9u32).unwrap(),
                ],
            )
            .unwrap(),
        );
        assert_eq!(parse(&bytes).unwrap().device, "tcm-user/1/x");
    }

    #[test]
    fn rejects_truncated_messages() {
        let full = kernel_event(TCMU_CMD_ADDED_DEVICE, vec![]);
        assert!(matches!(parse(&[]), Err(EventParseError::Malformed(_))));
        assert!(matches!(
            parse(&full[..3]),
            Err(EventParseError::Malformed(_))
        ));
        // Cut inside an attribute: the attribute header claims more bytes.
        assert!(parse(&full[..full.len() - 5]).is_err());
    }

    #[test]
    fn set_features_wire_format() {
        for (on, byte) in [(true, 1u8), (false, 0u8)] {
            let bytes = encode(&set_features_message(on).unwrap());
            // genlmsghdr: cmd, version, reserved u16.
            assert_eq!(
                &bytes[..4],
                &[TCMU_CMD_SET_FEATURES, TCMU_GENL_VERSION, 0, 0]
            );
            // nlattr: len u16 = 5 (4 header + 1 payload), type u16 = 9, padded to 8.
            let mut want = Vec::new();
            want.extend_from_slice(&5u16.to_ne_bytes());
            want.extend_from_slice(&TCMU_ATTR_SUPP_KERN_CMD_REPLY.to_ne_bytes());
            want.extend_from_slice(&[byte, 0, 0, 0]);
            assert_eq!(&bytes[4..], &want[..]);
        }
    }

    #[test]
    fn done_wire_format_matches_the_event() {
        let mut ev = DeviceEvent {
            kind: EventKind::Added,
            device: "tcm-user/0/a".into(),
            minor: 0,
            device_id: 0x0102_0304,
        };
        let kinds = [
            (EventKind::Added, TCMU_CMD_ADDED_DEVICE_DONE),
            (EventKind::Removed, TCMU_CMD_REMOVED_DEVICE_DONE),
            (
                EventKind::Reconfig(Change::DevSize(1)),
                TCMU_CMD_RECONFIG_DEVICE_DONE,
            ),
        ];
        for (kind, cmd) in kinds {
            ev.kind = kind;
            let bytes = encode(&done_message(&ev, -22).unwrap());
            let mut want = vec![cmd, TCMU_GENL_VERSION, 0, 0];
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&TCMU_ATTR_CMD_STATUS.to_ne_bytes());
            want.extend_from_slice(&(-22i32).to_ne_bytes());
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&TCMU_ATTR_DEVICE_ID.to_ne_bytes());
            want.extend_from_slice(&0x0102_0304u32.to_ne_bytes());
            assert_eq!(bytes, want);
        }
    }

    #[test]
    fn backstore_of_odd_names() {
        let ev = |device: &str| DeviceEvent {
            kind: EventKind::Added,
            device: device.into(),
            minor: 0,
            device_id: 0,
        };
        // dev_config may itself contain slashes.
        assert_eq!(
            ev("tcm-user/12/lun.a/qcow//tmp/x").backstore(),
            Some((12, "lun.a"))
        );
        assert_eq!(ev("tcm-user/0/plain").backstore(), Some((0, "plain")));
        assert_eq!(ev("tcm-user/x/name").backstore(), None);
        assert_eq!(ev("tcm-user/0").backstore(), None);
        assert_eq!(ev("tcm-user/0/").backstore(), None);
        assert_eq!(ev("other/0/name").backstore(), None);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            NetlinkError::FamilyAbsent.to_string(),
            "the TCM-USER netlink family is not available (is target_core_user loaded?)"
        );
        let e = NetlinkError::Rejected {
            command: "ADDED_DEVICE_DONE",
            errno: Errno::ENODEV as i32,
        };
        assert_eq!(
            e.to_string(),
            "the kernel rejected ADDED_DEVICE_DONE: No such device"
        );
    }

    // The plumbing against nlctrl, the generic netlink family every kernel
    // has (TCM-USER itself is exercised in the VM suite).
    const CTRL: &str = "nlctrl";
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_CMD_NEWMCAST_GRP: u8 = 7;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;

    #[test]
    fn missing_family_is_reported_clearly() {
        let err = TcmuNetlink::connect_to("no-such-family", "config").unwrap_err();
        assert!(matches!(err, NetlinkError::FamilyAbsent), "{err:?}");
    }

    #[test]
    fn missing_group_is_reported_clearly() {
        let err = TcmuNetlink::connect_to(CTRL, "no-such-group").unwrap_err();
        assert!(matches!(err, NetlinkError::GroupAbsent), "{err:?}");
    }

    #[test]
    fn recv_event_times_out_and_fd_stays_quiet() {
        let nl = TcmuNetlink::connect_to(CTRL, "notify").unwrap();
        let t0 = Instant::now();
        assert_eq!(
            nl.recv_event(Some(Duration::from_millis(200))).unwrap(),
            None
        );
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(nl.recv_event(Some(Duration::ZERO)).unwrap(), None);
        let mut fds = [PollFd::new(nl.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0);
    }

    #[test]
    fn acked_command_succeeds_after_a_data_answer() {
        let nl = TcmuNetlink::connect_to(CTRL, "notify").unwrap();
        // GETFAMILY answers with a data message, then the ACK.
        for _ in 0..3 {
            let msg = genl_message(
                CTRL_CMD_GETFAMILY,
                vec![attr(CTRL_ATTR_FAMILY_NAME, "nlctrl").unwrap()],
            )
            .unwrap();
            nl.send_acked("GETFAMILY", msg).unwrap();
        }
    }

    #[test]
    fn rejected_command_carries_the_errno() {
        let nl = TcmuNetlink::connect_to(CTRL, "notify").unwrap();
        // nlctrl has no handler for this command.
        let msg = genl_message(CTRL_CMD_NEWMCAST_GRP, vec![]).unwrap();
        match nl.send_acked("NEWMCAST_GRP", msg) {
            Err(NetlinkError::Rejected { command, errno }) => {
                assert_eq!(command, "NEWMCAST_GRP");
                assert_eq!(errno, Errno::EOPNOTSUPP as i32);
            }
            other => panic!("want Rejected, got {other:?}"),
        }
        // The socket still works afterwards.
        let msg = genl_message(
            CTRL_CMD_GETFAMILY,
            vec![attr(CTRL_ATTR_FAMILY_NAME, "nlctrl").unwrap()],
        )
        .unwrap();
        nl.send_acked("GETFAMILY", msg).unwrap();
    }

    #[test]
    fn handle_is_shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<TcmuNetlink>();
    }

    proptest! {
        // Whatever arrives on the group, parsing never panics.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        // Valid events survive mutation of any single byte without panicking.
        #[test]
        fn parsing_mutated_events_never_panics(pos in 0usize..64, val in any::<u8>(), size in any::<u64>()) {
            let mut bytes = kernel_event(
                TCMU_CMD_RECONFIG_DEVICE,
                vec![attr(TCMU_ATTR_DEV_SIZE, size).unwrap()],
            );
            let i = pos % bytes.len();
            bytes[i] = val;
            let _ = parse(&bytes);
        }

        #[test]
        fn dev_size_round_trips(size in any::<u64>(), id in any::<u32>(), minor in any::<u32>()) {
            let bytes = encode(&genl_message(TCMU_CMD_RECONFIG_DEVICE, vec![
                attr(TCMU_ATTR_DEVICE, &b"tcm-user/0/p\0"[..]).unwrap(),
                attr(TCMU_ATTR_MINOR, minor).unwrap(),
                attr(TCMU_ATTR_DEVICE_ID, id).unwrap(),
                attr(TCMU_ATTR_DEV_SIZE, size).unwrap(),
            ]).unwrap());
            let ev = parse(&bytes).unwrap();
            prop_assert_eq!(ev.kind, EventKind::Reconfig(Change::DevSize(size)));
            prop_assert_eq!(ev.device_id, id);
            prop_assert_eq!(ev.minor, minor);
        }
    }
}
