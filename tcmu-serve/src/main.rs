//! `tcmu-serve`: serve a block device to the Linux kernel as a SCSI disk
//! through TCMU, exported locally with tcm_loop.
//!
//! Prints exactly one line `ready: /dev/sdX` (or, with `--export none`,
//! `ready: <configfs backstore dir>`, with `--export iscsi`,
//! `ready: iscsi://ADDR:PORT/IQN/0`) on stdout once the disk can be used,
//! serves until SIGINT or SIGTERM, then removes everything it created.
//! Errors are one line on stderr and a non-zero exit status.
//!
//! With `--control PATH` it is a daemon serving any number of devices,
//! added and removed at run time through a Unix socket (see [`daemon`]);
//! `tcmu-serve --control PATH REQUEST...` sends one request to it.

mod backend;
mod daemon;
mod size;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tcmu_core::configfs;
use tcmu_target::{Export as TargetExport, IscsiAuth, Target};

use backend::{BackendSpec, DeviceOptions, FaultSpec};

/// How the LUN is made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Export {
    /// A local SCSI disk through tcm_loop.
    Loop,
    /// No export: only the configfs backstore.
    None,
    /// An iSCSI target (LIO) on a portal.
    Iscsi(configfs::IscsiConfig),
}

/// The portal of `--export iscsi` without `@ADDR:PORT`: loopback only.
const DEFAULT_ISCSI_PORTAL: &str = "127.0.0.1:3260";

/// `--export` as given: `loop`, `none` or `iscsi[:IQN][@ADDR:PORT]`
/// (IQN `None`: derived from the backstore name).
#[derive(Debug, PartialEq, Eq)]
enum ExportSpec {
    Loop,
    None,
    Iscsi {
        iqn: Option<String>,
        portal: SocketAddr,
    },
}

fn parse_export(text: &str) -> Result<ExportSpec, String> {
    let usage = "use loop, none or iscsi[:IQN][@ADDR:PORT]";
    match text {
        "loop" => return Ok(ExportSpec::Loop),
        "none" => return Ok(ExportSpec::None),
        _ => {}
    }
    let Some(rest) = text
        .strip_prefix("iscsi")
        .filter(|r| r.is_empty() || r.starts_with([':', '@']))
    else {
        return Err(format!("invalid --export {text:?}: {usage}"));
    };
    // An IQN never holds '@'; an address never comes before it.
    let (iqn, portal) = match rest.split_once('@') {
        Some((iqn, portal)) => (iqn, Some(portal)),
        None => (rest, None),
    };
    let iqn = match iqn.strip_prefix(':') {
        Some(iqn) => {
            configfs::check_iqn(iqn).map_err(|e| format!("--export {text:?}: {e}"))?;
            Some(iqn.to_string())
        }
        None => None,
    };
    let portal = configfs::parse_portal(portal.unwrap_or(DEFAULT_ISCSI_PORTAL))
        .map_err(|e| format!("--export {text:?}: {e}"))?;
    Ok(ExportSpec::Iscsi { iqn, portal })
}

/// A CHAP secret from a file: its first line, without the line end.
fn read_chap_password(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --chap-password-file {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    if !text[line.len()..].trim().is_empty() {
        return Err(format!(
            "--chap-password-file {}: want the password alone on one line",
            path.display()
        ));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            log::warn!(
                "{} is readable by other users: make it mode 0600",
                path.display()
            );
        }
    }
    Ok(line.to_string())
}

/// Serve a block device to the Linux kernel as a SCSI disk (TCMU).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The storage: `mem` (a sparse RAM disk), `file:PATH` (a regular file
    /// or a block device), `nbd:HOST[:PORT][/EXPORT]` or
    /// `nbd+unix:PATH[/EXPORT]` (an NBD server's export).
    #[arg(long, value_name = "SPEC")]
    backend: Option<String>,
    /// Size of the disk, e.g. 512MiB, 2GiB, 1048576. Required for `mem` and
    /// with --create. For an existing file it must equal the file's size,
    /// for a block device be at most the device's (default: their size).
    #[arg(long)]
    size: Option<String>,
    /// Create the `file:` backend's file (sparse, --size bytes) if it does
    /// not exist. An existing file is never grown or shrunk.
    #[arg(long)]
    create: bool,
    /// Serve the disk write-protected: every write fails.
    #[arg(long)]
    read_only: bool,
    /// Bypass the page cache for a `file:` backend (O_DIRECT).
    #[arg(long)]
    direct: bool,
    /// Testing aid: fail reads or writes of some blocks with MEDIUM ERROR
    /// (OP `read` or `write`), or make the first access to them hang for
    /// an hour (OP `hang`); e.g. read:2048, or write:100+8 for COUNT blocks from
    /// LBA. Repeatable.
    #[arg(long, value_name = "OP:LBA[+COUNT]")]
    inject_fault: Vec<String>,
    /// Logical block size in bytes: 512, 1024, 2048 or 4096.
    #[arg(long, default_value_t = 512)]
    block_size: u32,
    /// Backstore name in configfs (default: tcmurs-<pid>).
    #[arg(long)]
    name: Option<String>,
    /// Export the LUN through tcm_loop (`loop`), not at all (`none`), or
    /// as an iSCSI target (`iscsi[:IQN][@ADDR:PORT]`; default IQN
    /// iqn.2026-11.org.tcmu-rs:<name>, default portal 127.0.0.1:3260). iSCSI
    /// needs --chap-user and --chap-password-file, or --iscsi-no-auth.
    #[arg(
        long,
        default_value = "loop",
        value_name = "loop|none|iscsi[:IQN][@ADDR:PORT]"
    )]
    export: String,
    /// iSCSI: initiators log in with CHAP as this user.
    #[arg(long, value_name = "USER")]
    chap_user: Option<String>,
    /// iSCSI: the file holding the CHAP password (one line, at least 12
    /// characters); never pass it on the command line.
    #[arg(long, value_name = "PATH")]
    chap_password_file: Option<PathBuf>,
    /// iSCSI: no authentication; any initiator that reaches the portal may
    /// log in and write (demo mode).
    #[arg(long)]
    iscsi_no_auth: bool,
    /// Largest command in bytes the kernel may send (hw_max_sectors).
    #[arg(long, default_value = "1MiB")]
    max_io: String,
    /// Size of the data area shared with the kernel, in whole MiB
    /// (max_data_area_mb; default: the kernel's, 1024 MiB): the bytes of
    /// all commands in flight at once. Pages are allocated as used.
    #[arg(long, value_name = "SIZE")]
    data_area: Option<String>,
    /// Size of the command ring, in whole MiB between 1 and 8
    /// (cmd_ring_size_mb; default: the kernel's, 8 MiB).
    #[arg(long, value_name = "SIZE")]
    ring_size: Option<String>,
    /// Worker threads executing commands (0: on the serving thread itself;
    /// default: one per CPU, between 4 and 8).
    #[arg(long)]
    workers: Option<usize>,
    /// Microseconds the worker reading the ring watches for the next
    /// command before it sleeps (default 0: never). Lower latency under
    /// load for that much CPU time per wait.
    #[arg(long, value_name = "MICROSECONDS")]
    spin_us: Option<u64>,
    /// Seconds the kernel waits for a command before failing it to the
    /// initiator (attrib/cmd_time_out; kernel default 30).
    #[arg(long, value_name = "SECONDS")]
    cmd_timeout: Option<u64>,
    /// Seconds a command may wait for room in a full ring before it fails
    /// (attrib/qfull_time_out; kernel default: the command timeout).
    #[arg(long, value_name = "SECONDS")]
    qfull_timeout: Option<u64>,
    /// Daemon mode: also (or only) serve devices added and removed at run
    /// time through a control socket at PATH. Without device flags it
    /// starts with no device and prints `ready: PATH`. Followed by a
    /// REQUEST, send that request to the daemon at PATH instead.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// A request for the daemon at --control: `add DEVICE-FLAGS...` (the
    /// flags above, e.g. `add --backend mem --size 1GiB --name d2`; prints
    /// the device's `ready:` line), `remove NAME`, or `list`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "REQUEST"
    )]
    request: Vec<String>,
}

/// Everything checked before touching the system.
#[derive(Debug)]
struct Plan {
    backend: BackendSpec,
    /// How to open the device; its size, when not given, comes from the file.
    device: DeviceOptions,
    name: String,
    export: Export,
    max_sectors: u32,
    /// Data area and command ring in MiB (None: the kernel's default).
    data_area_mb: Option<u32>,
    ring_size_mb: Option<u32>,
    spin: Option<Duration>,
    workers: Option<usize>,
    cmd_timeout: Option<Duration>,
    qfull_timeout: Option<Duration>,
}

fn plan(args: Args) -> Result<Plan, String> {
    let Some(backend) = &args.backend else {
        return Err("--backend is required (or --control PATH for a daemon)".into());
    };
    let backend = BackendSpec::parse(backend)?;
    let block_size = args.block_size;
    if !block_size.is_power_of_two() || !(512..=4096).contains(&block_size) {
        return Err(format!(
            "invalid block size {block_size}: use 512, 1024, 2048 or 4096"
        ));
    }
    if args.create && !backend.is_file() {
        return Err("--create only applies to a file: backend".into());
    }
    if args.direct && !backend.is_file() {
        return Err("--direct only applies to a file: backend".into());
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
    if args.spin_us.is_some_and(|us| us > 10_000) {
        return Err("invalid --spin-us: use at most 10000 (10 ms)".into());
    }
    let name = args
        .name
        .unwrap_or_else(|| format!("tcmurs-{}", std::process::id()));
    if !configfs::valid_name(&name) {
        return Err(format!(
            "invalid name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    let export = parse_export(&args.export)?;
    if !matches!(export, ExportSpec::Iscsi { .. }) {
        for (given, flag) in [
            (args.chap_user.is_some(), "--chap-user"),
            (args.chap_password_file.is_some(), "--chap-password-file"),
            (args.iscsi_no_auth, "--iscsi-no-auth"),
        ] {
            if given {
                return Err(format!("{flag} only applies to --export iscsi"));
            }
        }
    }
    let export = match export {
        ExportSpec::Loop => Export::Loop,
        ExportSpec::None => Export::None,
        ExportSpec::Iscsi { iqn, portal } => {
            let auth = match (args.chap_user, args.chap_password_file, args.iscsi_no_auth) {
                (None, None, true) => IscsiAuth::None,
                (Some(user), Some(file), false) => IscsiAuth::Chap {
                    user,
                    password: read_chap_password(&file)?,
                },
                (None, None, false) => {
                    return Err("--export iscsi needs a choice of authentication: \
                                --chap-user USER --chap-password-file PATH, or \
                                --iscsi-no-auth (any initiator may log in)"
                        .into());
                }
                (_, _, true) => {
                    return Err("--iscsi-no-auth cannot be combined with --chap-user or \
                         --chap-password-file"
                        .into());
                }
                (Some(_), None, false) => {
                    return Err("--chap-user needs --chap-password-file PATH".into());
                }
                (None, Some(_), false) => {
                    return Err("--chap-password-file needs --chap-user USER".into());
                }
            };
            let config = configfs::IscsiConfig {
                iqn: iqn.unwrap_or_else(|| configfs::default_iqn(&name)),
                portal,
                auth,
            };
            config.validate()?;
            Export::Iscsi(config)
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
            faults,
        },
        name,
        export,
        max_sectors: (max_io / 512) as u32,
        data_area_mb,
        ring_size_mb,
        spin: args.spin_us.map(Duration::from_micros),
        workers: args.workers,
        cmd_timeout: args.cmd_timeout.map(Duration::from_secs),
        qfull_timeout: args.qfull_timeout.map(Duration::from_secs),
    })
}

/// Open the backing store, then create and export the LUN.
fn start_target(plan: &Plan) -> Result<Target, String> {
    // Problems with the backing store show before anything in the kernel changes.
    let device = plan.backend.open(&plan.device)?;
    let size = device.num_blocks() * u64::from(device.block_size());
    let mut builder = Target::builder(device)
        .name(plan.name.clone())
        .dev_config(plan.backend.dev_config())
        .max_io_bytes(plan.max_sectors * 512)
        .export(match &plan.export {
            Export::Loop => TargetExport::Loopback,
            Export::None => TargetExport::None,
            Export::Iscsi(config) => TargetExport::Iscsi {
                iqn: Some(config.iqn.clone()),
                portal: config.portal,
                auth: config.auth.clone(),
            },
        });
    if let Some(workers) = plan.workers {
        builder = builder.workers(workers);
    }
    if let Some(spin) = plan.spin {
        builder = builder.spin(spin);
    }
    if let Some(mib) = plan.data_area_mb {
        builder = builder.data_area_mb(mib);
    }
    if let Some(mib) = plan.ring_size_mb {
        builder = builder.ring_size_mb(mib);
    }
    builder = builder.timeouts(plan.cmd_timeout, plan.qfull_timeout);
    let target = builder.start().map_err(|e| e.to_string())?;
    log::info!(
        "serving {} ({size} bytes, {}-byte blocks)",
        plan.name,
        plan.device.block_size
    );
    Ok(target)
}

/// What the `ready:` line names: the disk, the iSCSI URL, or the backstore.
fn ready_target(target: &Target) -> String {
    match (target.disk(), target.iscsi_url()) {
        (Some(disk), _) => disk.display().to_string(),
        (None, Some(url)) => url.to_string(),
        (None, None) => target.backstore_dir().display().to_string(),
    }
}

/// SIGINT and SIGTERM, as bytes on a socket (read with a 200 ms timeout).
fn catch_signals() -> Result<UnixStream, String> {
    let (signals, signal_tx) = UnixStream::pair().map_err(|e| e.to_string())?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let tx = signal_tx.try_clone().map_err(|e| e.to_string())?;
        signal_hook::low_level::pipe::register(sig, tx)
            .map_err(|e| format!("cannot catch signal {sig}: {e}"))?;
    }
    signals
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    Ok(signals)
}

/// On the next signal, call `force` (a second signal during shutdown).
fn force_on_signal(mut signals: UnixStream, force: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let mut byte = [0u8; 16];
        loop {
            if matches!(signals.read(&mut byte), Ok(n) if n > 0) {
                log::warn!("second signal: not waiting for commands in flight");
                force();
                return;
            }
        }
    });
}

fn run(plan: Plan) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: configuring the kernel target (configfs) needs it".into());
    }
    // Signals are caught from here on, so a stop during setup still tears down.
    let mut signals = catch_signals()?;
    let target = start_target(&plan)?;
    println!("ready: {}", ready_target(&target));
    let _ = std::io::stdout().flush();

    // Wait for a signal, or for serving to fail on its own.
    let mut byte = [0u8; 16];
    while !target.failed() {
        if matches!(signals.read(&mut byte), Ok(n) if n > 0) {
            break;
        }
    }
    log::info!("shutting down (a second signal stops without waiting for commands in flight)");
    if let Some(force) = target.force_stop_handle() {
        force_on_signal(signals, move || force.force());
    }
    target.shutdown().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    let result = match (&args.control, args.request.is_empty()) {
        (Some(control), false) => daemon::send_request(control, &args.request),
        (None, false) => Err(format!(
            "unexpected argument {:?} (a request needs --control PATH)",
            args.request[0]
        )),
        (Some(_), true) => daemon::run(args),
        (None, true) => plan(args).and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcmu-serve: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["tcmu-serve", "--backend", "mem"];
        v.extend_from_slice(extra);
        plan(Args::try_parse_from(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn valid_arguments_make_a_plan() {
        let p = args(&["--size", "512MiB", "--name", "d1"]).unwrap();
        assert_eq!(
            (p.device.size, p.device.block_size, p.name.as_str()),
            (Some(512 << 20), 512, "d1")
        );
        assert!(!p.device.read_only && !p.device.create && p.device.faults.is_empty());
        assert_eq!(p.max_sectors, 2048);
        assert_eq!(p.export, Export::Loop);
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
        assert_eq!(p.spin, Some(Duration::ZERO));
        let err = args(&["--size", "1MiB", "--spin-us", "20000"]).unwrap_err();
        assert!(err.contains("invalid --spin-us"), "{err}");
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

    fn cli(argv: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["tcmu-serve"];
        v.extend_from_slice(argv);
        plan(Args::try_parse_from(v).map_err(|e| e.to_string())?)
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

    fn iscsi_config(p: &Plan) -> &configfs::IscsiConfig {
        match &p.export {
            Export::Iscsi(c) => c,
            other => panic!("not iSCSI: {other:?}"),
        }
    }

    #[test]
    fn export_specs_are_parsed() {
        let local: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        assert_eq!(parse_export("loop"), Ok(ExportSpec::Loop));
        assert_eq!(parse_export("none"), Ok(ExportSpec::None));
        assert_eq!(
            parse_export("iscsi"),
            Ok(ExportSpec::Iscsi {
                iqn: None,
                portal: local
            })
        );
        assert_eq!(
            parse_export("iscsi:iqn.2003-01.org.example:disk"),
            Ok(ExportSpec::Iscsi {
                iqn: Some("iqn.2003-01.org.example:disk".into()),
                portal: local
            })
        );
        assert_eq!(
            parse_export("iscsi@10.1.2.3:3261"),
            Ok(ExportSpec::Iscsi {
                iqn: None,
                portal: "10.1.2.3:3261".parse().unwrap()
            })
        );
        assert_eq!(
            parse_export("iscsi:iqn.2003-01.org.example@[::1]:860"),
            Ok(ExportSpec::Iscsi {
                iqn: Some("iqn.2003-01.org.example".into()),
                portal: "[::1]:860".parse().unwrap()
            })
        );
        for (bad, want) in [
            ("iscsi:", "invalid IQN"),
            ("iscsi:foo", "invalid IQN"),
            ("iscsi:iqn.2003-1.org.x", "invalid IQN"),
            ("iscsi:iqn.2003-01.org.x:Upper", "invalid IQN"),
            ("iscsi@", "invalid portal"),
            ("iscsi@localhost:3260", "invalid portal"),
            ("iscsi@::1:3260", "invalid portal"),
            ("iscsi@1.2.3.4:0", "port 0"),
            ("iscsi:iqn.2003-01.org.x@1.2.3.4:70000", "invalid portal"),
            ("iscsix", "invalid --export"),
            ("tcp", "invalid --export"),
            ("", "invalid --export"),
        ] {
            let err = parse_export(bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: one line, got {err}");
        }
    }

    #[test]
    fn iscsi_export_needs_an_explicit_authentication_choice() {
        let p = iscsi(&["--export", "iscsi", "--iscsi-no-auth"]).unwrap();
        let c = iscsi_config(&p);
        assert_eq!(c.iqn, "iqn.2026-11.org.tcmu-rs:disk-1");
        assert_eq!(c.auth, IscsiAuth::None);
        assert_eq!(
            c.url(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.org.tcmu-rs:disk-1/0"
        );

        let dir = std::env::temp_dir().join(format!("chap-{}", std::process::id()));
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
        let c = iscsi_config(&p);
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
                "cannot be combined",
            ),
            (
                &["--export", "iscsi", "--chap-user", "bob"][..],
                "needs --chap-password-file",
            ),
            (
                &["--export", "iscsi", "--chap-password-file", good][..],
                "needs --chap-user",
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
                &["--chap-user", "bob"][..],
                "only applies to --export iscsi",
            ),
            (
                &["--export", "none", "--chap-password-file", good][..],
                "only applies",
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
