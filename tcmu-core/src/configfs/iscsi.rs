//! The iSCSI export: an LIO target with one TPG (tag 1 unless told), LUN 0
//! and one portal, with CHAP or without authentication, and optionally
//! the ALUA groups of a gateway among several; created in order and
//! removed in reverse. Gateways of one kernel share the target, each with
//! a TPG of its own.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::attribute::{io_err, mkdir, rmdir, write_attr};
use super::chap::{IscsiAuth, check_chap_value};
use super::error::ConfigfsError;
use super::gateway_alua::GatewayAlua;
use super::iqn::check_iqn;
use super::portal::{check_portal, portal_dir_name};

/// What to create: an iSCSI target with one TPG, LUN 0 and one portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiConfig {
    /// The target name, `iqn.YYYY-MM.reversed.domain[:anything]`.
    pub iqn: String,
    /// The address and port the target listens on.
    pub portal: SocketAddr,
    /// Who may log in.
    pub auth: IscsiAuth,
    /// The TPG's tag (1 unless several gateways share the target).
    pub tpg_tag: u16,
    /// The ALUA groups of a gateway among several, when it is one.
    pub alua: Option<GatewayAlua>,
}

impl IscsiConfig {
    /// Check the name, the portal and the CHAP credentials; the error is
    /// one line naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        check_iqn(&self.iqn)?;
        check_portal(&self.portal)?;
        if self.tpg_tag == 0 {
            return Err("invalid TPG tag 0: tags start at 1".into());
        }
        if let Some(alua) = &self.alua {
            alua.validate(self.tpg_tag)?;
        }
        if let IscsiAuth::Chap { user, password } = &self.auth {
            check_chap_value("CHAP user", user, 1)?;
            check_chap_value("CHAP password", password, 12)?;
        }
        Ok(())
    }

    /// `iscsi://ADDR:PORT/IQN/0`: where initiators find LUN 0.
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/0", self.portal, self.iqn)
    }
}

/// The configfs operations an export performs; a trait so that tests can
/// stand in for the kernel's automatic directories.
trait Tree: Send + Sync + std::fmt::Debug {
    fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError>;
    fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError>;
    fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError>;
    fn unlink(&self, link: &Path) -> Result<(), ConfigfsError>;
}

/// The real configfs.
#[derive(Debug)]
struct Kernel;

impl Tree for Kernel {
    fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError> {
        mkdir(path)
    }
    fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError> {
        rmdir(path)
    }
    fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError> {
        write_attr(path, value)
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError> {
        log::debug!("configfs: ln -s {} {}", target.display(), link.display());
        std::os::unix::fs::symlink(target, link).map_err(io_err(link))
    }
    fn unlink(&self, link: &Path) -> Result<(), ConfigfsError> {
        log::debug!("configfs: rm {}", link.display());
        match std::fs::remove_file(link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io_err(link)),
        }
    }
}

/// Which parts of an iSCSI export exist (and are removed on teardown).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct IscsiParts {
    target: bool,
    tpg: bool,
    lun: bool,
    link: bool,
    portal: bool,
    enabled: bool,
    /// The LUN was put in an ALUA group.
    alua_member: bool,
}

/// An LIO iSCSI target exporting one backstore as LUN 0 of TPG 1 on one
/// portal. Removed (disable, portal, LUN link, LUN, TPG, target) by
/// [`remove`](Self::remove) or on drop.
#[derive(Debug)]
pub struct IscsiExport {
    tree: Box<dyn Tree>,
    target_dir: PathBuf,
    tpg_dir: PathBuf,
    lun_dir: PathBuf,
    link: PathBuf,
    np_dir: PathBuf,
    url: String,
    parts: IscsiParts,
    /// The ALUA groups made (or found) in the backstore, removed last.
    alua_groups: Vec<PathBuf>,
    removed: bool,
}

impl IscsiExport {
    /// Create target `config.iqn` under `root` (normally [`TARGET_ROOT`](super::TARGET_ROOT);
    /// load `iscsi_target_mod` first) with TPG `config.tpg_tag` in demo
    /// mode (`generate_node_acls=1`, writable), LUN 0 linked to
    /// `backstore_dir`, the LUN in its ALUA group if `config.alua` says
    /// (the groups are made in the backstore), a portal on
    /// `config.portal`, CHAP if asked for, and enable it. The target may
    /// exist (another gateway's), its TPG must not. On error nothing is
    /// left behind.
    pub fn create(
        root: &Path,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> Result<IscsiExport, ConfigfsError> {
        Self::create_in(Box::new(Kernel), root, backstore_dir, config)
    }

    fn create_in(
        tree: Box<dyn Tree>,
        root: &Path,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> Result<IscsiExport, ConfigfsError> {
        let fabric = root.join("iscsi");
        let target_dir = fabric.join(&config.iqn);
        if let Err(why) = config.validate() {
            return Err(ConfigfsError::Io {
                path: target_dir,
                source: io::Error::new(io::ErrorKind::InvalidInput, why),
            });
        }
        let mut export = Self::at(tree, target_dir, backstore_dir, config);
        if export.tpg_dir.symlink_metadata().is_ok() {
            return Err(ConfigfsError::Io {
                path: export.tpg_dir.clone(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "an iSCSI target with this name and TPG already exists",
                ),
            });
        }
        // Removed again when the last TPG is, whoever made it.
        export.parts.target = true;
        if export.target_dir.symlink_metadata().is_err() {
            if !fabric.exists() {
                export.tree.mkdir(&fabric)?;
            }
            export.tree.mkdir(&export.target_dir)?;
        }
        export.tree.mkdir(&export.tpg_dir)?;
        export.parts.tpg = true;
        export.tree.mkdir(&export.lun_dir)?;
        export.parts.lun = true;
        export.tree.symlink(backstore_dir, &export.link)?;
        export.parts.link = true;
        if let Some(alua) = &config.alua {
            export.join_alua_group(backstore_dir, alua, config.tpg_tag)?;
        }
        export.tree.mkdir(&export.np_dir)?;
        export.parts.portal = true;
        let attrib = export.tpg_dir.join("attrib");
        let chap = match &config.auth {
            IscsiAuth::None => None,
            IscsiAuth::Chap { user, password } => Some((user, password)),
        };
        let authentication = if chap.is_some() { "1" } else { "0" };
        export
            .tree
            .write(&attrib.join("authentication"), authentication)?;
        export.tree.write(&attrib.join("generate_node_acls"), "1")?;
        export.tree.write(&attrib.join("cache_dynamic_acls"), "1")?;
        export
            .tree
            .write(&attrib.join("demo_mode_write_protect"), "0")?;
        if let Some((user, password)) = chap {
            // Initiators without an explicit ACL (generate_node_acls=1)
            // authenticate against the TPG's own credentials.
            let auth = export.tpg_dir.join("auth");
            export.tree.write(&auth.join("userid"), user)?;
            export.tree.write(&auth.join("password"), password)?;
        }
        export.tree.write(&export.tpg_dir.join("enable"), "1")?;
        export.parts.enabled = true;
        Ok(export)
    }

    /// Make (or reuse) the gateway groups in the backstore and put the LUN
    /// in its own.
    fn join_alua_group(
        &mut self,
        backstore_dir: &Path,
        alua: &GatewayAlua,
        tag: u16,
    ) -> Result<(), ConfigfsError> {
        for group in alua.groups() {
            let dir = backstore_dir.join("alua").join(&group.name);
            if dir.symlink_metadata().is_err() {
                self.tree.mkdir(&dir)?;
            }
            self.alua_groups.push(dir.clone());
            // The kernel takes an id once; a group left by an earlier run
            // has it already.
            let id = std::fs::read_to_string(dir.join("tg_pt_gp_id")).unwrap_or_default();
            if id.trim() != group.id.to_string() {
                self.tree
                    .write(&dir.join("tg_pt_gp_id"), &group.id.to_string())?;
            }
            for (name, value) in alua.attributes(&group) {
                self.tree.write(&dir.join(name), &value)?;
            }
        }
        let own = alua.group_of(tag).unwrap_or_default();
        self.tree.write(&self.lun_dir.join("alua_tg_pt_gp"), &own)?;
        self.parts.alua_member = true;
        Ok(())
    }

    fn at(
        tree: Box<dyn Tree>,
        target_dir: PathBuf,
        backstore_dir: &Path,
        config: &IscsiConfig,
    ) -> IscsiExport {
        let tpg_dir = target_dir.join(format!("tpgt_{}", config.tpg_tag));
        let lun_dir = tpg_dir.join("lun/lun_0");
        IscsiExport {
            tree,
            link: lun_dir.join(backstore_dir.file_name().unwrap_or_default()),
            np_dir: tpg_dir.join("np").join(portal_dir_name(&config.portal)),
            target_dir,
            tpg_dir,
            lun_dir,
            url: config.url(),
            parts: IscsiParts::default(),
            alua_groups: Vec::new(),
            removed: false,
        }
    }

    /// Find target `config.iqn` if its LUN 0 links `backstore_dir` (left
    /// behind by a handler of this backstore that died), to remove it
    /// before creating it afresh. Its portals are all removed with it.
    pub fn find(root: &Path, backstore_dir: &Path, config: &IscsiConfig) -> Option<IscsiExport> {
        let target_dir = root.join("iscsi").join(&config.iqn);
        let mut export = Self::at(Box::new(Kernel), target_dir, backstore_dir, config);
        let ours = std::fs::canonicalize(backstore_dir).ok()?;
        let link = std::fs::read_dir(&export.lun_dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                    && std::fs::canonicalize(p).is_ok_and(|t| t == ours)
            })?;
        export.link = link;
        export.parts = IscsiParts {
            target: true,
            tpg: true,
            lun: true,
            link: true,
            portal: false,
            alua_member: false,
            enabled: std::fs::read_to_string(export.tpg_dir.join("enable"))
                .is_ok_and(|t| t.trim() == "1"),
        };
        Some(export)
    }

    /// `iscsi://ADDR:PORT/IQN/0`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The target's configfs directory.
    pub fn target_dir(&self) -> &Path {
        &self.target_dir
    }

    /// Disable the TPG, then remove the portal, the LUN link, the LUN, the
    /// TPG, the target when no other gateway's TPG is left in it, and the
    /// ALUA groups made in the backstore.
    pub fn remove(mut self) -> Result<(), ConfigfsError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), ConfigfsError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let tree = &self.tree;
        if self.parts.enabled {
            // Fails while sessions cannot be released; removing the TPG
            // below ends them anyway.
            if let Err(e) = tree.write(&self.tpg_dir.join("enable"), "0") {
                log::warn!("disabling the iSCSI TPG: {e}");
            }
            self.parts.enabled = false;
        }
        if self.parts.portal {
            tree.rmdir(&self.np_dir)?;
        } else if self.parts.tpg {
            // A target found after a crash: remove whatever portals it has.
            if let Ok(entries) = std::fs::read_dir(self.tpg_dir.join("np")) {
                for entry in entries.flatten() {
                    tree.rmdir(&entry.path())?;
                }
            }
        }
        self.parts.portal = false;
        if self.parts.link {
            tree.unlink(&self.link)?;
            self.parts.link = false;
        }
        if self.parts.lun {
            tree.rmdir(&self.lun_dir)?;
            self.parts.lun = false;
        }
        if self.parts.tpg {
            tree.rmdir(&self.tpg_dir)?;
            self.parts.tpg = false;
        }
        if self.parts.target {
            if !self.other_tpgs_left() {
                tree.rmdir(&self.target_dir)?;
            }
            self.parts.target = false;
        }
        // The LUN left its group with it; the groups go last.
        self.parts.alua_member = false;
        for dir in std::mem::take(&mut self.alua_groups).iter().rev() {
            if dir.symlink_metadata().is_ok() {
                tree.rmdir(dir)?;
            }
        }
        Ok(())
    }
}

impl IscsiExport {
    /// Whether another gateway's TPG is still in the target.
    fn other_tpgs_left(&self) -> bool {
        std::fs::read_dir(&self.target_dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("tpgt_"))
        })
    }
}

impl Drop for IscsiExport {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            log::error!("cleanup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn config(auth: IscsiAuth) -> IscsiConfig {
        IscsiConfig {
            iqn: "iqn.2026-11.org.tcmu-rs:d".into(),
            portal: "127.0.0.1:3260".parse().unwrap(),
            auth,
            tpg_tag: 1,
            alua: None,
        }
    }

    fn chap() -> IscsiAuth {
        IscsiAuth::Chap {
            user: "alice".into(),
            password: "s3cret-s3cret".into(),
        }
    }

    #[test]
    fn config_checks_credentials_and_hides_the_password() {
        let c = config(chap());
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:d/0"
        );
        let shown = format!("{c:?}");
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
        for (user, password, why) in [
            ("", "s3cret-s3cret", "user is empty"),
            ("alice", "short", "shorter than 12"),
            ("alice", "has a space!!", "printable ASCII"),
            ("al\nice", "s3cret-s3cret", "printable ASCII"),
            ("alice", "NULLNULLNULLNULL", "NULL"),
            ("alice", &"p".repeat(256), "longer than 255"),
        ] {
            let c = config(IscsiAuth::Chap {
                user: user.into(),
                password: password.into(),
            });
            let err = c.validate().unwrap_err();
            assert!(err.contains(why), "{user:?}/{password:?}: {err}");
        }
        let mut c = config(IscsiAuth::None);
        c.portal = "[::1]:3260".parse().unwrap();
        assert_eq!(c.url(), "iscsi://[::1]:3260/iqn.2026-11.org.tcmu-rs:d/0");
    }

    /// A plain directory standing in for configfs: making a `tpgt_N`
    /// directory also makes the groups the kernel creates with it, and
    /// removing it removes them; every operation is logged relative to the
    /// root. An operation whose log line starts with `fail_at` fails.
    #[derive(Debug, Clone)]
    struct FakeTree {
        root: PathBuf,
        log: Arc<Mutex<Vec<String>>>,
        fail_at: Option<String>,
    }

    const TPG_GROUPS: [&str; 5] = ["lun", "np", "attrib", "auth", "param"];

    impl FakeTree {
        fn new(root: &Path) -> FakeTree {
            FakeTree {
                root: root.to_path_buf(),
                log: Arc::default(),
                fail_at: None,
            }
        }
        fn note(&self, op: String) -> Result<(), ConfigfsError> {
            let fail = self.fail_at.as_ref().is_some_and(|f| op.starts_with(f));
            self.log.lock().unwrap().push(op);
            if fail {
                return Err(ConfigfsError::Io {
                    path: self.root.clone(),
                    source: io::Error::other("injected failure"),
                });
            }
            Ok(())
        }
        fn rel(&self, p: &Path) -> String {
            p.strip_prefix(&self.root).unwrap().display().to_string()
        }
        fn ops(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }
        fn is_tpg(p: &Path) -> bool {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tpgt_"))
        }
    }

    impl Tree for FakeTree {
        fn mkdir(&self, path: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("mkdir {}", self.rel(path)))?;
            std::fs::create_dir(path).map_err(io_err(path))?;
            if Self::is_tpg(path) {
                for group in TPG_GROUPS {
                    std::fs::create_dir(path.join(group)).unwrap();
                }
            }
            Ok(())
        }
        fn rmdir(&self, path: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("rmdir {}", self.rel(path)))?;
            if Self::is_tpg(path) {
                for group in ["attrib", "auth", "param"] {
                    let _ = std::fs::remove_dir_all(path.join(group));
                }
                // Attributes (`enable`) go with the directory.
                for entry in std::fs::read_dir(path).unwrap().flatten() {
                    if entry.file_type().unwrap().is_file() {
                        std::fs::remove_file(entry.path()).unwrap();
                    }
                }
                for group in ["lun", "np"] {
                    // Fails (like configfs) while LUNs or portals remain.
                    rmdir(&path.join(group))?;
                }
            }
            // An ALUA group's or a LUN's attributes go with it.
            let parent = path.parent().and_then(|p| p.file_name());
            if parent.is_some_and(|n| n == "alua" || n == "lun") {
                for entry in std::fs::read_dir(path).unwrap().flatten() {
                    if entry.file_type().unwrap().is_file() {
                        std::fs::remove_file(entry.path()).unwrap();
                    }
                }
            }
            rmdir(path)
        }
        fn write(&self, path: &Path, value: &str) -> Result<(), ConfigfsError> {
            self.note(format!("write {}={value}", self.rel(path)))?;
            std::fs::write(path, value).map_err(io_err(path))
        }
        fn symlink(&self, target: &Path, link: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("ln {} -> {}", self.rel(link), self.rel(target)))?;
            std::os::unix::fs::symlink(target, link).map_err(io_err(link))
        }
        fn unlink(&self, link: &Path) -> Result<(), ConfigfsError> {
            self.note(format!("rm {}", self.rel(link)))?;
            std::fs::remove_file(link).map_err(io_err(link))
        }
    }

    /// A configfs stand-in (removed on drop), its root and a backstore in it.
    fn scratch(tag: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("cfs-iscsi-{tag}-"))
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let bs = root.join("core/user_0/d");
        std::fs::create_dir_all(&bs).unwrap();
        (tmp, root, bs)
    }

    fn targets(root: &Path) -> Vec<String> {
        std::fs::read_dir(root.join("iscsi"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    const T: &str = "iscsi/iqn.2026-11.org.tcmu-rs:d";

    fn teardown_ops() -> Vec<String> {
        [
            format!("write {T}/tpgt_1/enable=0"),
            format!("rmdir {T}/tpgt_1/np/127.0.0.1:3260"),
            format!("rm {T}/tpgt_1/lun/lun_0/d"),
            format!("rmdir {T}/tpgt_1/lun/lun_0"),
            format!("rmdir {T}/tpgt_1"),
            format!("rmdir {T}"),
        ]
        .into()
    }

    #[test]
    fn demo_mode_export_is_created_and_removed_in_order() {
        let (_tmp, root, bs) = scratch("demo");
        let tree = FakeTree::new(&root);
        let export =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(IscsiAuth::None))
                .unwrap();
        assert_eq!(
            tree.ops(),
            [
                "mkdir iscsi".to_string(),
                format!("mkdir {T}"),
                format!("mkdir {T}/tpgt_1"),
                format!("mkdir {T}/tpgt_1/lun/lun_0"),
                format!("ln {T}/tpgt_1/lun/lun_0/d -> core/user_0/d"),
                format!("mkdir {T}/tpgt_1/np/127.0.0.1:3260"),
                format!("write {T}/tpgt_1/attrib/authentication=0"),
                format!("write {T}/tpgt_1/attrib/generate_node_acls=1"),
                format!("write {T}/tpgt_1/attrib/cache_dynamic_acls=1"),
                format!("write {T}/tpgt_1/attrib/demo_mode_write_protect=0"),
                format!("write {T}/tpgt_1/enable=1"),
            ]
        );
        assert_eq!(
            export.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:d/0"
        );
        let link = root.join(T).join("tpgt_1/lun/lun_0/d");
        assert_eq!(std::fs::read_link(&link).unwrap(), bs);
        export.remove().unwrap();
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty(), "left: {:?}", targets(&root));
        assert!(bs.is_dir(), "the backstore is not the export's to remove");
    }

    #[test]
    fn chap_credentials_go_to_the_tpg_before_enabling() {
        let (_tmp, root, bs) = scratch("chap");
        std::fs::create_dir(root.join("iscsi")).unwrap(); // the fabric exists
        let tree = FakeTree::new(&root);
        let export =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(chap())).unwrap();
        let ops = tree.ops();
        assert_eq!(
            ops[0],
            format!("mkdir {T}"),
            "the fabric directory is reused"
        );
        assert_eq!(
            ops[5..],
            [
                format!("write {T}/tpgt_1/attrib/authentication=1"),
                format!("write {T}/tpgt_1/attrib/generate_node_acls=1"),
                format!("write {T}/tpgt_1/attrib/cache_dynamic_acls=1"),
                format!("write {T}/tpgt_1/attrib/demo_mode_write_protect=0"),
                format!("write {T}/tpgt_1/auth/userid=alice"),
                format!("write {T}/tpgt_1/auth/password=s3cret-s3cret"),
                format!("write {T}/tpgt_1/enable=1"),
            ]
        );
        drop(export); // dropping removes it too
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty());
    }

    #[test]
    fn a_failed_setup_leaves_nothing_behind() {
        let (_tmp, root, bs) = scratch("fail");
        for (fail_at, undo) in [
            ("write iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1/enable", 5),
            ("mkdir iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1/np", 4),
            ("ln ", 3),
            ("mkdir iscsi/iqn.2026-11.org.tcmu-rs:d/tpgt_1", 1),
        ] {
            let mut tree = FakeTree::new(&root);
            tree.fail_at = Some(fail_at.into());
            let err = IscsiExport::create_in(
                Box::new(tree.clone()),
                &root,
                &bs,
                &config(IscsiAuth::None),
            )
            .unwrap_err();
            assert!(err.to_string().contains("injected"), "{err}");
            let ops = tree.ops();
            let failed = ops.iter().position(|o| o.starts_with(fail_at)).unwrap();
            // The operation that failed is never undone (enable was not set).
            let cleanup: Vec<_> = ops[failed + 1..].to_vec();
            let want = teardown_ops();
            assert_eq!(cleanup, want[want.len() - undo..], "failing at {fail_at}");
            assert!(targets(&root).is_empty(), "failing at {fail_at}");
        }
    }

    #[test]
    fn an_existing_target_or_a_bad_config_is_refused_untouched() {
        let (_tmp, root, bs) = scratch("taken");
        std::fs::create_dir_all(root.join(T).join("tpgt_1")).unwrap();
        let tree = FakeTree::new(&root);
        let err =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(IscsiAuth::None))
                .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(
            root.join(T).join("tpgt_1").is_dir(),
            "someone else's target is kept"
        );
        assert!(tree.ops().is_empty());

        let mut bad = config(IscsiAuth::None);
        bad.iqn = "iqn.2026-11.org.tcmu-rs:D".into();
        let err = IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &bad).unwrap_err();
        assert!(err.to_string().contains("invalid IQN"), "{err}");
        assert!(tree.ops().is_empty());
    }

    #[test]
    fn a_target_left_behind_is_found_and_removed() {
        let (_tmp, root, bs) = scratch("find");
        let tree = FakeTree::new(&root);
        let old =
            IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &config(chap())).unwrap();
        std::mem::forget(old); // its handler died
        tree.ops();
        let other = root.join("core/user_0/other");
        std::fs::create_dir(&other).unwrap();
        let c = config(IscsiAuth::None);
        assert!(
            IscsiExport::find(&root, &other, &c).is_none(),
            "not linked there"
        );
        let mut found = IscsiExport::find(&root, &bs, &c).expect("found");
        assert!(found.parts.enabled);
        found.tree = Box::new(tree.clone());
        found.remove().unwrap();
        assert_eq!(tree.ops(), teardown_ops());
        assert!(targets(&root).is_empty());
    }

    #[test]
    fn two_gateways_share_the_target_each_in_its_alua_group() {
        let (_tmp, root, bs1) = scratch("gateways");
        let bs2 = root.join("core/user_0/d2");
        for bs in [&bs1, &bs2] {
            std::fs::create_dir_all(bs.join("alua")).unwrap();
        }
        let gateway = |tag: u16, portal: &str| {
            let mut c = config(IscsiAuth::None);
            c.tpg_tag = tag;
            c.portal = portal.parse().unwrap();
            c.alua = Some(GatewayAlua {
                gateways: vec![1, 2],
                implicit_transition_secs: 30,
            });
            c
        };
        let tree = FakeTree::new(&root);
        let gw1 = IscsiExport::create_in(
            Box::new(tree.clone()),
            &root,
            &bs1,
            &gateway(1, "127.0.0.1:3260"),
        )
        .unwrap();
        tree.ops();
        let gw2 = IscsiExport::create_in(
            Box::new(tree.clone()),
            &root,
            &bs2,
            &gateway(2, "127.0.0.2:3260"),
        )
        .unwrap();
        let ops = tree.ops();
        assert_eq!(ops[0], format!("mkdir {T}/tpgt_2"), "the target is shared");
        assert!(ops.contains(&"mkdir core/user_0/d2/alua/ao".to_string()));
        assert!(ops.contains(&"write core/user_0/d2/alua/ano2/tg_pt_gp_id=2".to_string()));
        assert!(ops.contains(&"write core/user_0/d2/alua/ano2/alua_access_state=1".to_string()));
        assert!(ops.contains(&"write core/user_0/d2/alua/ao/alua_access_state=0".to_string()));
        let member = format!("write {T}/tpgt_2/lun/lun_0/alua_tg_pt_gp=ano2");
        let at = ops
            .iter()
            .position(|o| *o == member)
            .expect("LUN joins ano2");
        assert!(
            at < ops.iter().position(|o| o.ends_with("enable=1")).unwrap(),
            "in its group before the TPG is enabled"
        );
        assert_eq!(
            gw2.url(),
            "iscsi://127.0.0.2:3260/iqn.2026-11.org.tcmu-rs:d/0"
        );
        // A third export of TPG 2 is refused.
        let err = IscsiExport::create_in(
            Box::new(tree.clone()),
            &root,
            &bs2,
            &gateway(2, "127.0.0.2:3260"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        tree.ops();

        gw1.remove().unwrap();
        let ops = tree.ops();
        assert!(
            !ops.contains(&format!("rmdir {T}")),
            "gateway 2 still uses it"
        );
        assert!(ops.contains(&"rmdir core/user_0/d/alua/ao".to_string()));
        assert_eq!(targets(&root), ["iqn.2026-11.org.tcmu-rs:d"]);
        gw2.remove().unwrap();
        let ops = tree.ops();
        assert!(
            ops.contains(&format!("rmdir {T}")),
            "the last one removes it"
        );
        assert_eq!(ops.last().unwrap(), "rmdir core/user_0/d2/alua/ao");
        assert!(targets(&root).is_empty());
        assert_eq!(std::fs::read_dir(bs2.join("alua")).unwrap().count(), 0);
    }

    #[test]
    fn alua_groups_left_by_an_earlier_run_are_reused() {
        let (_tmp, root, bs) = scratch("reuse");
        let ao = bs.join("alua/ao");
        std::fs::create_dir_all(&ao).unwrap();
        std::fs::write(ao.join("tg_pt_gp_id"), "1\n").unwrap();
        let mut c = config(IscsiAuth::None);
        c.alua = Some(GatewayAlua {
            gateways: vec![1],
            implicit_transition_secs: 30,
        });
        let tree = FakeTree::new(&root);
        let export = IscsiExport::create_in(Box::new(tree.clone()), &root, &bs, &c).unwrap();
        let ops = tree.ops();
        assert!(
            !ops.iter().any(|o| o.contains("mkdir core/user_0/d/alua")),
            "{ops:?}"
        );
        assert!(
            !ops.iter().any(|o| o.contains("tg_pt_gp_id")),
            "the id is set once"
        );
        assert!(ops.contains(&format!("write {T}/tpgt_1/lun/lun_0/alua_tg_pt_gp=ao")));
        export.remove().unwrap();
        assert!(!ao.exists());
    }

    #[test]
    fn a_bad_tag_or_alua_list_is_refused() {
        let mut c = config(IscsiAuth::None);
        c.tpg_tag = 0;
        assert!(c.validate().unwrap_err().contains("TPG tag 0"));
        c.tpg_tag = 3;
        c.alua = Some(GatewayAlua {
            gateways: vec![1, 2],
            implicit_transition_secs: 30,
        });
        assert!(c.validate().unwrap_err().contains("not among"));
    }
}
