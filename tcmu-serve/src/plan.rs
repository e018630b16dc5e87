//! The device flags, checked and turned into a plan before anything in the
//! kernel changes.

use std::time::Duration;

use tcmu_core::configfs;
use tcmu_target::{Export, IscsiAuth};

use crate::backend::{BackendSpec, DeviceOptions, FaultSpec};
use crate::cli::DeviceArgs;
use crate::export::{ExportSpec, read_chap_password};
use crate::io_engine::IoEngine;
use crate::size;

/// Everything checked before touching the system.
#[derive(Debug)]
pub struct Plan {
    pub backend: BackendSpec,
    /// How to open the device; its size, when not given, comes from the file.
    pub device: DeviceOptions,
    pub name: String,
    /// The unit serial (None: a new one).
    pub serial: Option<String>,
    pub export: Export,
    pub max_io_bytes: u32,
    /// Data area and command ring in MiB (None: the kernel's default).
    pub data_area_mb: Option<u32>,
    pub ring_size_mb: Option<u32>,
    pub spin: Option<Spin>,
    pub workers: Option<usize>,
    pub cmd_timeout: Option<Duration>,
    pub qfull_timeout: Option<Duration>,
}

impl Plan {
    /// Check the device flags; the plan to start the device.
    pub fn from_args(args: DeviceArgs) -> Result<Plan, String> {
        plan(args)
    }
}

/// The implicit transition time reported for gateway ALUA groups: a
/// failover takes the new gateway a lock break and acquisition, each
/// bounded by the RBD timeout.
const ALUA_TRANSITION_SECS: u32 = 30;

fn plan(args: DeviceArgs) -> Result<Plan, String> {
    let Some(backend) = &args.backend else {
        return Err("--backend is required (or --control PATH for a daemon)".into());
    };
    let backend = BackendSpec::parse(backend)?;
    let block_size = args.block_size.get();
    if args.create && !backend.is_file() {
        return Err("--create only applies to a file: backend".into());
    }
    if args.direct && !backend.is_file() {
        return Err("--direct only applies to a file: backend".into());
    }
    if args.io_engine.is_some() && !backend.is_file() {
        return Err("--io-engine only applies to a file: backend".into());
    }
    let io_engine = args.io_engine.unwrap_or_default();
    if io_engine == IoEngine::IoUring && !args.inject_fault.is_empty() {
        return Err("--inject-fault needs --io-engine threads".into());
    }
    let size = match (&args.size, backend.needs_size(args.create)) {
        (Some(s), _) => Some(size::parse_size(s)?),
        (None, true) if args.create => {
            return Err("--create needs --size (the size of the new file)".into());
        }
        (None, true) => return Err("--size is required for this backend".into()),
        (None, false) => None,
    };
    if size == Some(0) {
        return Err("invalid size: the disk must not be empty".into());
    }
    if let Some(size) = size
        && size % block_size as u64 != 0
    {
        return Err(format!(
            "invalid size {size}: not a multiple of the block size {block_size}"
        ));
    }
    let faults = args
        .inject_fault
        .iter()
        .map(|text| FaultSpec::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    if args.cmd_timeout == Some(0) {
        return Err("invalid --cmd-timeout 0: use at least 1 second".into());
    }
    let max_io = size::parse_size(&args.max_io)?;
    if max_io < block_size as u64 || max_io % 512 != 0 || max_io > 64 << 20 {
        return Err(format!(
            "invalid --max-io {max_io}: use a multiple of 512 between the block size and 64MiB"
        ));
    }
    let whole_mib = |flag: &str, text: &str, min: u64, max: u64| -> Result<u32, String> {
        let bytes = size::parse_size(text)?;
        let mib = bytes >> 20;
        if bytes % (1 << 20) != 0 || mib < min || mib > max {
            return Err(format!(
                "invalid {flag} {text}: use whole MiB between {min}MiB and {max}MiB"
            ));
        }
        Ok(mib as u32)
    };
    // The data area must hold at least one command of the largest size.
    let data_area_mb = args
        .data_area
        .as_deref()
        .map(|t| whole_mib("--data-area", t, max_io.div_ceil(1 << 20), u32::MAX as u64))
        .transpose()?;
    let ring_size_mb = args
        .ring_size
        .as_deref()
        .map(|t| whole_mib("--ring-size", t, 1, 8))
        .transpose()?;
    let spin = args.spin_us.as_deref().map(parse_spin).transpose()?;
    let name = args
        .name
        .unwrap_or_else(|| format!("tcmurs-{}", std::process::id()));
    if !configfs::valid_name(&name) {
        return Err(format!(
            "invalid name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    if let Some(serial) = &args.serial
        && (serial.is_empty()
            || serial.len() > scsi_emu::MAX_SERIAL_LEN
            || !serial.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(format!(
            "invalid --serial {serial:?}: use 1 to {} printable ASCII characters without spaces",
            scsi_emu::MAX_SERIAL_LEN
        ));
    }
    let export = args.export;
    // Which of them go together is clap's business; whether they apply
    // depends on --export's value.
    if !matches!(export, ExportSpec::Iscsi { .. }) {
        for (given, flag) in [
            (args.chap_user.is_some(), "--chap-user"),
            (args.chap_password_file.is_some(), "--chap-password-file"),
            (args.iscsi_no_auth, "--iscsi-no-auth"),
            (args.iscsi_tpg.is_some(), "--iscsi-tpg"),
            (!args.alua_gateways.is_empty(), "--alua-gateways"),
        ] {
            if given {
                return Err(format!("{flag} only applies to --export iscsi"));
            }
        }
    }
    let export = match export {
        ExportSpec::Loop => Export::Loopback,
        ExportSpec::None => Export::None,
        ExportSpec::Iscsi { iqn, portal } => {
            let auth = match (args.chap_user, args.chap_password_file, args.iscsi_no_auth) {
                (None, None, true) => IscsiAuth::None,
                (Some(user), Some(file), false) => IscsiAuth::Chap {
                    user,
                    password: read_chap_password(&file)?,
                },
                // The other combinations are refused by clap.
                _ => {
                    return Err("--export iscsi needs a choice of authentication: \
                                --chap-user USER --chap-password-file PATH, or \
                                --iscsi-no-auth (any initiator may log in)"
                        .into());
                }
            };
            let config = configfs::IscsiConfig {
                iqn: iqn.unwrap_or_else(|| configfs::default_iqn(&name)),
                portal,
                auth,
                tpg_tag: args.iscsi_tpg.unwrap_or(1),
                alua: (!args.alua_gateways.is_empty()).then(|| configfs::GatewayAlua {
                    gateways: args.alua_gateways.clone(),
                    implicit_transition_secs: ALUA_TRANSITION_SECS,
                }),
            };
            config
                .validate()
                .map_err(|e| format!("invalid iSCSI export: {e}"))?;
            Export::Iscsi {
                iqn: Some(config.iqn),
                portal: config.portal,
                auth: config.auth,
                tpg_tag: config.tpg_tag,
                alua: config.alua,
            }
        }
    };
    Ok(Plan {
        backend,
        device: DeviceOptions {
            size,
            block_size,
            create: args.create,
            read_only: args.read_only,
            direct: args.direct,
            io_engine,
            faults,
            failover: !args.alua_gateways.is_empty(),
            label: Some(name.clone()),
        },
        name,
        serial: args.serial,
        export,
        max_io_bytes: max_io as u32,
        data_area_mb,
        ring_size_mb,
        spin,
        workers: args.workers,
        cmd_timeout: args.cmd_timeout.map(Duration::from_secs),
        qfull_timeout: args.qfull_timeout.map(Duration::from_secs),
    })
}

/// `--spin-us`: how long the worker reading the ring spins, and whether
/// only while it pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spin {
    pub max: Duration,
    pub adaptive: bool,
}

/// The most `--spin-us auto` spins at a time.
const AUTO_SPIN: Duration = Duration::from_micros(60);

fn parse_spin(text: &str) -> Result<Spin, String> {
    if text == "auto" {
        return Ok(Spin {
            max: AUTO_SPIN,
            adaptive: true,
        });
    }
    match text.parse::<u64>() {
        Ok(us) if us <= 10_000 => Ok(Spin {
            max: Duration::from_micros(us),
            adaptive: false,
        }),
        Ok(_) => Err("invalid --spin-us: the most is 10000 (10 ms)".into()),
        Err(_) => Err(format!(
            "invalid --spin-us {text:?}: a number of microseconds or auto"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{AddArgs, one_line};

    /// The plan of a command line, or its error as one line.
    fn cli(argv: &[&str]) -> Result<Plan, String> {
        let v = std::iter::once("tcmu-serve").chain(argv.iter().copied());
        let args = AddArgs::try_parse_from(v).map_err(|e| one_line(&e))?;
        Plan::from_args(args.device)
    }

    fn args(extra: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["--backend", "mem"];
        v.extend_from_slice(extra);
        cli(&v)
    }

    #[test]
    fn valid_arguments_make_a_plan() {
        let p = args(&["--size", "512MiB", "--name", "d1"]).unwrap();
        assert_eq!(
            (p.device.size, p.device.block_size, p.name.as_str()),
            (Some(512 << 20), 512, "d1")
        );
        assert!(!p.device.read_only && !p.device.create && p.device.faults.is_empty());
        assert_eq!(p.max_io_bytes, 1 << 20);
        assert_eq!(p.export, Export::Loopback);
    }

    #[test]
    fn bad_geometry_is_refused_with_a_reason() {
        assert!(
            args(&["--size", "0"])
                .unwrap_err()
                .contains("must not be empty")
        );
        assert!(
            args(&["--size", "12345"])
                .unwrap_err()
                .contains("not a multiple of the block size")
        );
        assert!(
            args(&["--size", "1MiB", "--block-size", "777"])
                .unwrap_err()
                .contains("invalid block size")
        );
        assert!(
            args(&["--size", "banana"])
                .unwrap_err()
                .contains("invalid size")
        );
        assert!(args(&[]).unwrap_err().contains("--size is required"));
        assert!(
            args(&["--size", "1M", "--name", "a/b"])
                .unwrap_err()
                .contains("invalid name")
        );
    }

    #[test]
    fn data_area_and_ring_sizes_are_whole_mib_in_range() {
        let p = args(&["--size", "1MiB"]).unwrap();
        assert_eq!(
            (p.data_area_mb, p.ring_size_mb),
            (None, None),
            "kernel defaults"
        );
        assert_eq!(p.spin, None, "the library's default");
        let p = args(&["--size", "1MiB", "--spin-us", "0"]).unwrap();
        assert_eq!(
            p.spin,
            Some(Spin {
                max: Duration::ZERO,
                adaptive: false
            })
        );
        let p = args(&["--size", "1MiB", "--spin-us", "auto"]).unwrap();
        assert_eq!(
            p.spin,
            Some(Spin {
                max: Duration::from_micros(60),
                adaptive: true
            })
        );
        let err = args(&["--size", "1MiB", "--spin-us", "20000"]).unwrap_err();
        assert!(err.contains("invalid --spin-us"), "{err}");
        let err = args(&["--size", "1MiB", "--spin-us", "fast"]).unwrap_err();
        assert!(err.contains("a number of microseconds or auto"), "{err}");
        let p = args(&[
            "--size",
            "1MiB",
            "--data-area",
            "64MiB",
            "--ring-size",
            "2MiB",
        ])
        .unwrap();
        assert_eq!((p.data_area_mb, p.ring_size_mb), (Some(64), Some(2)));
        for (flags, why) in [
            (
                ["--data-area", "1536KiB"],
                "invalid --data-area 1536KiB: use whole MiB",
            ),
            (
                ["--ring-size", "9MiB"],
                "invalid --ring-size 9MiB: use whole MiB between 1MiB and 8MiB",
            ),
            (["--ring-size", "0"], "invalid --ring-size 0"),
            (["--data-area", "lots"], "invalid size"),
        ] {
            let err = args(&["--size", "1MiB", flags[0], flags[1]]).unwrap_err();
            assert!(err.contains(why), "{flags:?}: {err}");
        }
        // Room for at least one command of --max-io.
        let err = args(&["--size", "1MiB", "--max-io", "4MiB", "--data-area", "2MiB"]).unwrap_err();
        assert!(err.contains("between 4MiB and"), "{err}");
    }

    #[test]
    fn io_engine_applies_to_file_backends_only() {
        let p = cli(&["--backend", "file:/tmp/x.img"]).unwrap();
        assert_eq!(p.device.io_engine, IoEngine::Threads);
        let p = cli(&["--backend", "file:/tmp/x.img", "--io-engine", "io_uring"]).unwrap();
        assert_eq!(p.device.io_engine, IoEngine::IoUring);
        for (argv, want) in [
            (
                &[
                    "--backend",
                    "mem",
                    "--size",
                    "1M",
                    "--io-engine",
                    "io_uring",
                ][..],
                "--io-engine only applies to a file: backend",
            ),
            (
                &["--backend", "file:/a", "--io-engine", "aio"][..],
                "unknown I/O engine \"aio\" (supported: threads, io_uring)",
            ),
            (
                &[
                    "--backend",
                    "file:/a",
                    "--io-engine",
                    "io_uring",
                    "--inject-fault",
                    "read:1",
                ][..],
                "--inject-fault needs --io-engine threads",
            ),
        ] {
            let err = cli(argv).unwrap_err();
            assert!(err.contains(want), "{argv:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn file_backend_arguments() {
        let p = cli(&[
            "--backend",
            "file:/tmp/x.img",
            "--create",
            "--size",
            "256MiB",
        ])
        .unwrap();
        assert_eq!(p.backend, BackendSpec::File("/tmp/x.img".into()));
        assert_eq!(p.backend.dev_config(), "tcmu-rs/file");
        assert_eq!((p.device.size, p.device.create), (Some(256 << 20), true));
        // An existing file needs no size.
        let p = cli(&[
            "--backend",
            "file:/dev/sdb",
            "--direct",
            "--block-size",
            "4096",
        ])
        .unwrap();
        assert_eq!(p.device.size, None);
        assert!(p.device.direct && !p.device.create);
    }

    #[test]
    fn bad_file_backend_arguments_are_refused_with_a_reason() {
        for (argv, want) in [
            (&["--backend", "file:", "--size", "1M"][..], "needs a path"),
            (&["--backend", "x"][..], "unknown backend \"x\""),
            (
                &["--backend", "file:/a", "--create"][..],
                "--create needs --size",
            ),
            (
                &["--backend", "mem", "--size", "1M", "--create"][..],
                "--create only applies",
            ),
            (
                &["--backend", "mem", "--size", "1M", "--direct"][..],
                "--direct only applies",
            ),
            (
                &["--backend", "file:/a", "--size", "1000"][..],
                "not a multiple of the block size",
            ),
            (
                &["--backend", "file:/a", "--size", "0"][..],
                "must not be empty",
            ),
        ] {
            let err = cli(argv).unwrap_err();
            assert!(err.contains(want), "{argv:?}: {err}");
            assert!(!err.contains('\n'), "{argv:?}: one line, got {err}");
        }
    }

    #[test]
    fn read_only_and_fault_injection_arguments() {
        let p = args(&[
            "--size",
            "1MiB",
            "--read-only",
            "--inject-fault",
            "read:100",
            "--inject-fault",
            "write:8+4",
        ])
        .unwrap();
        assert!(p.device.read_only);
        assert_eq!(
            p.device
                .faults
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            ["read:100+1", "write:8+4"]
        );
        let err = args(&["--size", "1MiB", "--inject-fault", "trim:1"]).unwrap_err();
        assert!(
            err.contains("--inject-fault") && err.contains("trim"),
            "{err}"
        );
    }

    fn iscsi(extra: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["--size", "1MiB", "--name", "Disk_1"];
        v.extend_from_slice(extra);
        args(&v)
    }

    /// The iSCSI configuration of a plan, as the target will make it.
    fn iscsi_config(p: &Plan) -> configfs::IscsiConfig {
        p.export.iscsi_config(&p.name).expect("an iSCSI export")
    }

    #[test]
    fn iscsi_export_needs_an_explicit_authentication_choice() {
        let p = iscsi(&["--export", "iscsi", "--iscsi-no-auth"]).unwrap();
        let c = &iscsi_config(&p);
        assert_eq!(c.iqn, "iqn.2026-11.org.tcmu-rs:disk-1");
        assert_eq!(c.auth, IscsiAuth::None);
        assert_eq!(
            c.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:disk-1/0"
        );

        let tmp_dir = tempfile::tempdir().unwrap();
        let dir = tmp_dir.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "correct-horse-battery\n").unwrap();
        let good = good.to_str().unwrap();
        let p = iscsi(&[
            "--export",
            "iscsi:iqn.2003-01.org.example:d@0.0.0.0:3262",
            "--chap-user",
            "bob",
            "--chap-password-file",
            good,
        ])
        .unwrap();
        let c = &iscsi_config(&p);
        assert_eq!(
            c.auth,
            IscsiAuth::Chap {
                user: "bob".into(),
                password: "correct-horse-battery".into()
            }
        );
        assert_eq!(c.url(), "iscsi://0.0.0.0:3262/iqn.2003-01.org.example:d/0");

        let short = dir.join("short");
        std::fs::write(&short, "tiny\n").unwrap();
        let two = dir.join("two");
        std::fs::write(&two, "correct-horse-battery\nsecond line\n").unwrap();
        let (short, two) = (short.to_str().unwrap(), two.to_str().unwrap());
        let missing = dir.join("missing");
        let missing = missing.to_str().unwrap();
        for (argv, want) in [
            (&["--export", "iscsi"][..], "--iscsi-no-auth"),
            (
                &["--export", "iscsi"][..],
                "--chap-user USER --chap-password-file PATH",
            ),
            (
                &["--export", "iscsi", "--iscsi-no-auth", "--chap-user", "bob"][..],
                "cannot be used with",
            ),
            (
                &["--export", "iscsi", "--chap-user", "bob"][..],
                "--chap-password-file <PATH>",
            ),
            (
                &["--export", "iscsi", "--chap-password-file", good][..],
                "--chap-user <USER>",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--chap-user",
                    "bob",
                    "--chap-password-file",
                    missing,
                ][..],
                "cannot read --chap-password-file",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--chap-user",
                    "bob",
                    "--chap-password-file",
                    short,
                ][..],
                "shorter than 12",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--chap-user",
                    "bob",
                    "--chap-password-file",
                    two,
                ][..],
                "alone on one line",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--chap-user",
                    "b b",
                    "--chap-password-file",
                    good,
                ][..],
                "CHAP user",
            ),
            (
                &["--export", "loop", "--iscsi-no-auth"][..],
                "only applies to --export iscsi",
            ),
            (
                &["--chap-user", "bob", "--chap-password-file", good][..],
                "only applies to --export iscsi",
            ),
            (
                &["--export", "none", "--chap-password-file", good][..],
                "--chap-user <USER>",
            ),
            (
                &["--export", "iscsi:bad", "--iscsi-no-auth"][..],
                "invalid IQN",
            ),
        ] {
            let err = iscsi(argv).unwrap_err();
            assert!(err.contains(want), "{argv:?}: {err}");
            assert!(!err.contains('\n'), "{argv:?}: one line, got {err}");
        }
    }

    #[test]
    fn gateways_of_one_image_name_their_tpg_and_alua_groups() {
        let p = iscsi(&[
            "--export",
            "iscsi:iqn.2026-12.org.example:img@127.0.0.2:3260",
            "--iscsi-no-auth",
            "--iscsi-tpg",
            "2",
            "--alua-gateways",
            "1,2",
            "--serial",
            "img-0001",
        ])
        .unwrap();
        let c = iscsi_config(&p);
        assert_eq!(c.tpg_tag, 2);
        let alua = c.alua.expect("ALUA groups");
        assert_eq!(alua.gateways, [1, 2]);
        assert_eq!(alua.group_of(2).as_deref(), Some("ano2"));
        assert_eq!(p.serial.as_deref(), Some("img-0001"));
        assert!(
            p.device.failover,
            "gateways share an image: RBD failover mode"
        );
        // Without the flags: TPG 1, no groups, a new serial.
        let c = iscsi_config(&iscsi(&["--export", "iscsi", "--iscsi-no-auth"]).unwrap());
        assert_eq!((c.tpg_tag, c.alua), (1, None));
        assert!(
            !iscsi(&["--export", "iscsi", "--iscsi-no-auth"])
                .unwrap()
                .device
                .failover
        );
    }

    #[test]
    fn bad_gateway_flags_are_one_line_errors() {
        for (extra, why) in [
            (
                &["--export", "iscsi", "--iscsi-no-auth", "--iscsi-tpg", "0"][..],
                "TPG tag 0",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--iscsi-no-auth",
                    "--iscsi-tpg",
                    "3",
                    "--alua-gateways",
                    "1,2",
                ][..],
                "not among",
            ),
            (
                &[
                    "--export",
                    "iscsi",
                    "--iscsi-no-auth",
                    "--alua-gateways",
                    "1,1",
                ][..],
                "twice",
            ),
            (
                &["--export", "loop", "--alua-gateways", "1"][..],
                "only applies to --export iscsi",
            ),
            (
                &["--export", "loop", "--iscsi-tpg", "2"][..],
                "only applies to --export iscsi",
            ),
            (&["--serial", "has space"][..], "invalid --serial"),
            (&["--serial", ""][..], "invalid --serial"),
        ] {
            let err = iscsi(extra).unwrap_err();
            assert!(err.contains(why) && !err.contains('\n'), "{extra:?}: {err}");
        }
    }
}
