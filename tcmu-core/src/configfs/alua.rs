//! ALUA target port groups of a backstore as configfs shows them: each
//! `alua/<group>/` directory of a backstore is one group of target ports
//! sharing an asymmetric access state, and its `members` attribute names
//! the fabric LUNs (target ports) that belong to it.
//!
//! Only reading: this is what a handler needs to answer REPORT TARGET PORT
//! GROUPS the way the kernel configured the groups.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::attribute::io_err;
use super::error::ConfigfsError;

/// The group the kernel creates for every backstore; it holds the ports
/// nobody put elsewhere and is not something an administrator configured.
const DEFAULT_GROUP: &str = "default_tg_pt_gp";

/// configfs attributes are at most a page; anything far larger is not one.
const MAX_ATTR_BYTES: u64 = 64 * 1024;

/// More groups than this is not a sane configuration (the id is 16 bits,
/// but REPORT TARGET PORT GROUPS answers must stay small).
const MAX_GROUPS: usize = 256;

/// Member ports kept per group.
const MAX_MEMBERS: usize = 1024;

/// The `alua_support_*` attributes and their bits in the supported-states
/// byte of a REPORT TARGET PORT GROUPS descriptor.
const SUPPORT_BITS: [(&str, u8); 7] = [
    ("alua_support_transitioning", 0x80),
    ("alua_support_offline", 0x40),
    ("alua_support_lba_dependent", 0x10),
    ("alua_support_unavailable", 0x08),
    ("alua_support_standby", 0x04),
    ("alua_support_active_nonoptimized", 0x02),
    ("alua_support_active_optimized", 0x01),
];

/// One ALUA target port group of a backstore (`alua/<group>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AluaGroup {
    /// The directory name, e.g. `ao`.
    pub name: String,
    /// The target port group id (`tg_pt_gp_id`).
    pub id: u16,
    /// The asymmetric access state (`alua_access_state`): 0 active/optimized,
    /// 1 active/non-optimized, 2 standby, 3 unavailable, 4 LBA-dependent,
    /// 14 offline, 15 transitioning.
    pub state: u8,
    /// How the state may change (`alua_access_type`).
    pub access_type: AccessType,
    /// Whether the group is a preferred target port group (`preferred`).
    pub preferred: bool,
    /// The supported-states byte of a REPORT TARGET PORT GROUPS descriptor
    /// (T 0x80, O 0x40, LBD 0x10, U 0x08, S 0x04, AN 0x02, AO 0x01), from
    /// the `alua_support_*` attributes.
    pub supported_states: u8,
    /// The REPORT TARGET PORT GROUPS status code (`alua_access_status`):
    /// 0 none, 1 altered by SET TARGET PORT GROUPS, 2 altered by an implicit
    /// transition.
    pub status: u8,
    /// Seconds an implicit transition may take (`implicit_trans_secs`).
    pub implicit_transition_secs: u32,
    /// The fabric LUNs in the group, in the order `members` lists them.
    pub members: Vec<AluaMember>,
}

/// Which ALUA state changes a group allows (`alua_access_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessType {
    /// No asymmetric access.
    None,
    /// Only the target changes states.
    Implicit,
    /// Only SET TARGET PORT GROUPS changes states.
    Explicit,
    /// Both.
    ImplicitAndExplicit,
}

/// A fabric LUN (target port) in a target port group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AluaMember {
    /// The fabric name as `members` writes it, e.g. `iSCSI`.
    pub fabric: String,
    /// The target portal group's WWN, e.g. an IQN.
    pub wwn: String,
    /// The target portal group tag (`tpgt_<n>`).
    pub tpg_tag: u16,
    /// The LUN directory name, e.g. `lun_0`.
    pub lun: String,
    /// The relative target port identifier
    /// (`statistics/scsi_port/indx`); `None` when unreadable.
    pub relative_port: Option<u16>,
    /// The SCSI transport protocol identifier
    /// (`statistics/scsi_transport/proto_id`); `None` when unreadable.
    pub protocol: Option<u8>,
    /// Whether the target portal group is enabled: its `enable` reads 1,
    /// or its fabric has no such attribute (tcm_loop); false when the TPG
    /// is gone or unreadable.
    pub enabled: bool,
}

/// The target port groups of the backstore at `backstore_dir`, under the
/// configfs target root `root`: sorted by id, without the kernel's default
/// group and without groups whose id was never set.
pub(super) fn read_groups(
    backstore_dir: &Path,
    root: &Path,
) -> Result<Vec<AluaGroup>, ConfigfsError> {
    let alua = backstore_dir.join("alua");
    let entries = match std::fs::read_dir(&alua) {
        Ok(entries) => entries,
        // Kernels without ALUA support and fake trees have no `alua/`.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&alua)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(&alua))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == DEFAULT_GROUP || !path.is_dir() {
            continue;
        }
        dirs.push(path);
    }
    // Sorted first, so the groups kept past the cap do not depend on the
    // directory order.
    dirs.sort();
    if dirs.len() > MAX_GROUPS {
        log::warn!(
            "{}: {} target port groups; reading only the first {MAX_GROUPS}",
            alua.display(),
            dirs.len()
        );
        dirs.truncate(MAX_GROUPS);
    }
    let mut groups = Vec::new();
    for dir in dirs {
        if let Some(group) = read_group(&dir, root)? {
            groups.push(group);
        }
    }
    groups.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.name.cmp(&b.name)));
    Ok(groups)
}

/// One group; `None` when its id was never set (the kernel does not use it).
fn read_group(dir: &Path, root: &Path) -> Result<Option<AluaGroup>, ConfigfsError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let id_path = dir.join("tg_pt_gp_id");
    let id_text = read_value(&id_path)?;
    if id_text.is_empty() {
        log::debug!("{}: no id set, skipping the group", dir.display());
        return Ok(None);
    }
    let id = parse_number(&id_path, &id_text)?;
    let mut supported_states = 0;
    for (file, bit) in SUPPORT_BITS {
        if read_flag(&dir.join(file))? {
            supported_states |= bit;
        }
    }
    let members_path = dir.join("members");
    let members_text = read_text(&members_path)?;
    Ok(Some(AluaGroup {
        name,
        id,
        state: read_number(&dir.join("alua_access_state"))?,
        access_type: read_access_type(&dir.join("alua_access_type"))?,
        preferred: read_flag(&dir.join("preferred"))?,
        supported_states,
        status: status_code(&read_value(&dir.join("alua_access_status"))?),
        implicit_transition_secs: read_number(&dir.join("implicit_trans_secs"))?,
        members: parse_members(&members_path, &members_text, root),
    }))
}

/// The members listed in `text` (the `members` attribute at `path`), each
/// with what the fabric's configfs tree says about its port.
fn parse_members(path: &Path, text: &str, root: &Path) -> Vec<AluaMember> {
    let mut members = Vec::new();
    // The kernel ends every entry with "\n" and a NUL byte.
    for piece in text.split(['\n', '\0']).map(str::trim) {
        if piece.is_empty() {
            continue;
        }
        if members.len() == MAX_MEMBERS {
            log::warn!(
                "{}: more than {MAX_MEMBERS} members; ignoring the rest",
                path.display()
            );
            break;
        }
        match parse_member(piece) {
            Some((fabric, wwn, tpg_tag, lun)) => {
                members.push(describe_member(root, fabric, wwn, tpg_tag, lun));
            }
            None => log::warn!("{}: ignoring member {piece:?}", path.display()),
        }
    }
    members
}

/// `<fabric>/<wwn>/tpgt_<tag>/<lun>`; every name must be usable as a
/// single path component, since they are joined into paths below `root`.
fn parse_member(piece: &str) -> Option<(&str, &str, u16, &str)> {
    let mut parts = piece.split('/');
    let fabric = parts.next().filter(|p| is_component(p))?;
    let wwn = parts.next().filter(|p| is_component(p))?;
    let tpg_tag = parts.next()?.strip_prefix("tpgt_")?.parse().ok()?;
    let lun = parts.next().filter(|p| is_component(p))?;
    if parts.next().is_some() {
        return None;
    }
    Some((fabric, wwn, tpg_tag, lun))
}

fn is_component(name: &str) -> bool {
    !matches!(name, "" | "." | "..")
}

/// A member with its port's relative id, protocol and TPG state; what
/// cannot be read stays unknown rather than failing the whole group (a
/// fabric module may be gone or a LUN half-removed).
fn describe_member(root: &Path, fabric: &str, wwn: &str, tpg_tag: u16, lun: &str) -> AluaMember {
    let tpg = fabric_dir(root, fabric)
        .join(wwn)
        .join(format!("tpgt_{tpg_tag}"));
    let lun_dir = tpg.join("lun").join(lun);
    let relative_port = read_value(&lun_dir.join("statistics/scsi_port/indx"))
        .ok()
        .and_then(|t| t.parse::<u16>().ok())
        // Relative port 0 is reserved.
        .filter(|&p| p != 0);
    let protocol = read_value(&lun_dir.join("statistics/scsi_transport/proto_id"))
        .ok()
        .and_then(|t| t.parse().ok());
    // A fabric that has no enabling of TPGs (tcm_loop, vhost) serves
    // every TPG it has.
    let enable = tpg.join("enable");
    let enabled = match read_value(&enable) {
        Ok(t) => t == "1",
        Err(_) => tpg.is_dir() && !enable.exists(),
    };
    AluaMember {
        fabric: fabric.to_string(),
        wwn: wwn.to_string(),
        tpg_tag,
        lun: lun.to_string(),
        relative_port,
        protocol,
        enabled,
    }
}

/// The fabric's configfs directory: `members` writes the fabric's name
/// ("iSCSI"), which may differ in case from its directory ("iscsi").
fn fabric_dir(root: &Path, fabric: &str) -> PathBuf {
    let as_written = root.join(fabric);
    if as_written.is_dir() {
        return as_written;
    }
    root.join(fabric.to_ascii_lowercase())
}

/// The RTPG status code for an `alua_access_status` text.
fn status_code(text: &str) -> u8 {
    match text {
        "Altered by Explicit STPG" => 1,
        "Altered by Implicit ALUA" => 2,
        _ => 0,
    }
}

fn read_access_type(path: &Path) -> Result<AccessType, ConfigfsError> {
    let text = read_value(path)?;
    match text.as_str() {
        "None" => Ok(AccessType::None),
        "Implicit" => Ok(AccessType::Implicit),
        "Explicit" => Ok(AccessType::Explicit),
        "Implicit and Explicit" => Ok(AccessType::ImplicitAndExplicit),
        _ => Err(invalid(path, format!("not an ALUA access type: {text:?}"))),
    }
}

fn read_flag(path: &Path) -> Result<bool, ConfigfsError> {
    match read_value(path)?.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        text => Err(invalid(path, format!("not 0 or 1: {text:?}"))),
    }
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Result<T, ConfigfsError> {
    parse_number(path, &read_value(path)?)
}

fn parse_number<T: std::str::FromStr>(path: &Path, text: &str) -> Result<T, ConfigfsError> {
    text.parse()
        .map_err(|_| invalid(path, format!("not a valid number: {text:?}")))
}

/// The attribute at `path`, without surrounding whitespace and NULs.
fn read_value(path: &Path) -> Result<String, ConfigfsError> {
    let text = read_text(path)?;
    Ok(text
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string())
}

/// The attribute at `path`, refused when larger than any attribute can be.
fn read_text(path: &Path) -> Result<String, ConfigfsError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.take(MAX_ATTR_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_ATTR_BYTES {
        return Err(invalid(path, format!("larger than {MAX_ATTR_BYTES} bytes")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn invalid(path: &Path, message: String) -> ConfigfsError {
    ConfigfsError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configfs::UserBackstore;

    /// Group attribute values, as the kernel shows a fresh group.
    struct Group<'a> {
        name: &'a str,
        id: &'a str,
        state: &'a str,
        access_type: &'a str,
        members: &'a str,
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fake_group(backstore: &Path, g: &Group) {
        let dir = backstore.join("alua").join(g.name);
        write(&dir.join("tg_pt_gp_id"), &format!("{}\n", g.id));
        write(&dir.join("alua_access_state"), &format!("{}\n", g.state));
        write(
            &dir.join("alua_access_type"),
            &format!("{}\n", g.access_type),
        );
        write(&dir.join("alua_access_status"), "None\n");
        write(&dir.join("preferred"), "0\n");
        write(&dir.join("implicit_trans_secs"), "0\n");
        for (file, _) in SUPPORT_BITS {
            // The kernel's defaults: everything but LBA-dependent (0xcf).
            let on = file != "alua_support_lba_dependent";
            write(&dir.join(file), if on { "1\n" } else { "0\n" });
        }
        write(&dir.join("members"), g.members);
    }

    /// A fabric LUN with its statistics and its TPG's `enable`.
    fn fake_lun(root: &Path, tpg: &str, lun: &str, indx: &str, proto: &str, enable: &str) {
        let tpg = root.join(tpg);
        write(&tpg.join("enable"), &format!("{enable}\n"));
        let lun = tpg.join("lun").join(lun);
        write(&lun.join("statistics/scsi_port/indx"), &format!("{indx}\n"));
        write(
            &lun.join("statistics/scsi_transport/proto_id"),
            &format!("{proto}\n"),
        );
    }

    const IQN: &str = "iqn.2003-01.org.x:gw";

    /// The backstore `user_0/disk` with the default group, `ao`, `ano2`
    /// and a group whose id was never set.
    fn fake_tree(root: &Path) -> UserBackstore {
        let backstore = UserBackstore::new(root, 0, "disk");
        let dir = backstore.dir();
        fake_group(
            dir,
            &Group {
                name: DEFAULT_GROUP,
                id: "0",
                state: "0",
                access_type: "Implicit",
                members: "",
            },
        );
        fake_group(
            dir,
            &Group {
                name: "ao",
                id: "1",
                state: "0",
                access_type: "Implicit",
                members: &format!("iSCSI/{IQN}/tpgt_1/lun_0\n\0"),
            },
        );
        fake_group(
            dir,
            &Group {
                name: "ano2",
                id: "2",
                state: "1",
                access_type: "Implicit and Explicit",
                members: &format!("iSCSI/{IQN}/tpgt_2/lun_0\n\0"),
            },
        );
        fake_group(
            dir,
            &Group {
                name: "unset",
                id: "",
                state: "0",
                access_type: "Implicit",
                members: "",
            },
        );
        fake_lun(root, &format!("iscsi/{IQN}/tpgt_1"), "lun_0", "1", "5", "1");
        fake_lun(root, &format!("iscsi/{IQN}/tpgt_2"), "lun_0", "2", "5", "0");
        backstore
    }

    fn member(tpg_tag: u16, relative_port: Option<u16>, enabled: bool) -> AluaMember {
        AluaMember {
            fabric: "iSCSI".to_string(),
            wwn: IQN.to_string(),
            tpg_tag,
            lun: "lun_0".to_string(),
            relative_port,
            protocol: Some(5),
            enabled,
        }
    }

    #[test]
    fn groups_are_read_with_their_members_sorted_by_id() {
        let tmp = tempfile::tempdir().unwrap();
        let backstore = fake_tree(tmp.path());
        let group = |name: &str, id, state, access_type, members| AluaGroup {
            name: name.to_string(),
            id,
            state,
            access_type,
            preferred: false,
            supported_states: 0xcf,
            status: 0,
            implicit_transition_secs: 0,
            members,
        };
        assert_eq!(
            backstore.alua_groups().unwrap(),
            [
                group(
                    "ao",
                    1,
                    0,
                    AccessType::Implicit,
                    vec![member(1, Some(1), true)]
                ),
                group(
                    "ano2",
                    2,
                    1,
                    AccessType::ImplicitAndExplicit,
                    vec![member(2, Some(2), false)]
                ),
            ]
        );
    }

    #[test]
    fn a_backstore_without_an_alua_dir_has_no_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let backstore = UserBackstore::new(tmp.path(), 0, "disk");
        std::fs::create_dir_all(backstore.dir()).unwrap();
        assert_eq!(backstore.alua_groups().unwrap(), []);
    }

    #[test]
    fn garbage_in_members_is_skipped_and_good_entries_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let backstore = fake_tree(root);
        let members = format!(
            "garbage\n\0iSCSI/{IQN}/tpgt_x/lun_0\n\0../{IQN}/tpgt_1/lun_0\n\0\
             iSCSI/{IQN}/tpgt_1/lun_0/extra\n\0\n\0iSCSI/{IQN}/tpgt_1/lun_0\n\0\
             loopback/naa.5001405abcdef001/tpgt_1/lun_0\n\0"
        );
        write(&backstore.dir().join("alua/ao/members"), &members);
        fake_lun(
            root,
            "loopback/naa.5001405abcdef001/tpgt_1",
            "lun_0",
            "3",
            "9",
            "1",
        );
        let groups = backstore.alua_groups().unwrap();
        let loopback = AluaMember {
            fabric: "loopback".to_string(),
            wwn: "naa.5001405abcdef001".to_string(),
            tpg_tag: 1,
            lun: "lun_0".to_string(),
            relative_port: Some(3),
            protocol: Some(9),
            enabled: true,
        };
        assert_eq!(groups[0].members, [member(1, Some(1), true), loopback]);
    }

    #[test]
    fn a_missing_port_statistic_leaves_the_relative_port_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let backstore = fake_tree(root);
        std::fs::remove_file(root.join(format!(
            "iscsi/{IQN}/tpgt_1/lun/lun_0/statistics/scsi_port/indx"
        )))
        .unwrap();
        let groups = backstore.alua_groups().unwrap();
        assert_eq!(groups[0].members, [member(1, None, true)]);
    }

    #[test]
    fn a_tpg_without_enable_is_enabled_and_a_missing_tpg_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let backstore = fake_tree(root);
        // tcm_loop's TPGs have no `enable`: they always serve.
        std::fs::remove_file(root.join(format!("iscsi/{IQN}/tpgt_2/enable"))).unwrap();
        let groups = backstore.alua_groups().unwrap();
        assert!(groups[1].members[0].enabled, "{groups:?}");
        std::fs::remove_dir_all(root.join(format!("iscsi/{IQN}/tpgt_2"))).unwrap();
        let groups = backstore.alua_groups().unwrap();
        assert!(!groups[1].members[0].enabled, "{groups:?}");
    }

    #[test]
    fn a_bad_access_state_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let backstore = fake_tree(tmp.path());
        write(
            &backstore.dir().join("alua/ano2/alua_access_state"),
            "active\n",
        );
        let err = backstore.alua_groups().unwrap_err().to_string();
        assert!(
            err.contains("alua/ano2/alua_access_state") && err.contains("active"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_status_reads_as_no_status() {
        assert_eq!(status_code("Altered by Explicit STPG"), 1);
        assert_eq!(status_code("Altered by Implicit ALUA"), 2);
        assert_eq!(status_code("None"), 0);
        assert_eq!(status_code("something else"), 0);
    }
}
