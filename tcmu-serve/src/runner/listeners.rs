//! Other processes listening for TCMU device events.
//!
//! The kernel takes the first `*_DONE` answer for a device from anyone, so
//! two answering daemons (say tcmu-runner and this runner) would race for
//! every backstore. A standalone `tcmu-serve` listens too, but only to
//! follow its own backstores' attributes, and never answers: it may run
//! beside the runner.

use std::path::Path;

/// NETLINK_GENERIC, the `Eth` column of `/proc/net/netlink`.
const NETLINK_GENERIC: u32 = 16;

/// A process with a socket in the TCM-USER `config` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its process id, when its socket was found in `/proc/*/fd`.
    pub pid: Option<u32>,
    /// Its command name (`/proc/PID/comm`).
    pub command: String,
}

/// Parse `/proc/net/netlink`: the socket inodes of generic netlink sockets
/// in multicast group `group` (1..=32; the file shows no higher groups),
/// other than the one with port id `own_port`.
pub fn group_members(proc_net_netlink: &str, group: u32, own_port: u32) -> Vec<u64> {
    if !(1..=32).contains(&group) {
        return Vec::new();
    }
    let bit = 1u32 << (group - 1);
    proc_net_netlink
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let eth: u32 = fields.get(1)?.parse().ok()?;
            let port: u32 = fields.get(2)?.parse().ok()?;
            let groups = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (eth == NETLINK_GENERIC && port != own_port && groups & bit != 0).then_some(inode)
        })
        .collect()
}

/// The processes other than this one (and other than standalone
/// `tcmu-serve`s) whose sockets are in group `group`.
pub fn others(group: u32, own_port: u32) -> Vec<Listener> {
    let Ok(table) = std::fs::read_to_string("/proc/net/netlink") else {
        return Vec::new();
    };
    let inodes = group_members(&table, group, own_port);
    if inodes.is_empty() {
        return Vec::new();
    }
    let own_pid = std::process::id();
    let mut found = Vec::new();
    for inode in inodes {
        let pid = owner_of_socket(Path::new("/proc"), inode);
        if pid == Some(own_pid) {
            continue;
        }
        let command = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
            .map_or_else(
                || "an unknown process".to_string(),
                |c| c.trim().to_string(),
            );
        if command == "tcmu-serve" && pid.is_some_and(|p| !is_runner(p)) {
            continue;
        }
        found.push(Listener { pid, command });
    }
    found
}

/// Whether process `pid` is a tcmu-serve in runner mode.
fn is_runner(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == b"runner"))
}

/// The process holding socket `inode`, from the `/proc/PID/fd` links.
fn owner_of_socket(proc: &Path, inode: u64) -> Option<u32> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
0000000000000000 0   4026531847 00000000 0        0        0     2        0        9
0000000000000000 16  812        00000004 0        0        0     2        0        22341
0000000000000000 16  900        00000004 0        0        0     2        0        22399
0000000000000000 16  901        00000002 0        0        0     2        0        22400
0000000000000000 15  902        00000004 0        0        0     2        0        22401
";

    #[test]
    fn members_of_the_group_other_than_this_socket() {
        assert_eq!(group_members(TABLE, 3, 900), [22341]);
        assert_eq!(group_members(TABLE, 3, 1), [22341, 22399]);
        assert_eq!(group_members(TABLE, 2, 1), [22400]);
        assert!(group_members(TABLE, 40, 1).is_empty(), "not shown past 32");
        assert!(group_members("garbage\nline with few fields", 3, 1).is_empty());
    }

    #[test]
    fn a_socket_of_this_process_is_found() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", a.as_raw_fd())).unwrap();
        let inode: u64 = link
            .to_str()
            .unwrap()
            .trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert_eq!(
            owner_of_socket(Path::new("/proc"), inode),
            Some(std::process::id())
        );
        assert_eq!(owner_of_socket(Path::new("/proc"), u64::MAX), None);
    }
}
