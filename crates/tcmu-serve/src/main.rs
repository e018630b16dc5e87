//! `tcmu-serve`: serve a block device to the Linux kernel as a SCSI disk
//! through TCMU, exported locally with tcm_loop.
//!
//! Prints exactly one line `ready: /dev/sdX` (or, with `--export none`,
//! `ready: <configfs backstore dir>`) on stdout once the disk can be used,
//! serves until SIGINT or SIGTERM, then removes everything it created.
//! Errors are one line on stderr and a non-zero exit status.

mod backend;
mod size;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use scsi_emu::target::{Export as TargetExport, Target};
use tcmu_core::configfs;

use backend::{BackendSpec, DeviceOptions, FaultSpec};

/// How the LUN is made visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Export {
    /// A local SCSI disk through tcm_loop.
    Loop,
    /// No export: only the configfs backstore.
    None,
}

/// Serve a block device to the Linux kernel as a SCSI disk (TCMU).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The storage: `mem` (a sparse RAM disk), `file:PATH` (a regular file
    /// or a block device), `nbd:HOST[:PORT][/EXPORT]` or
    /// `nbd+unix:PATH[/EXPORT]` (an NBD server's export).
    #[arg(long, value_name = "SPEC")]
    backend: String,
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
    /// Export the LUN through tcm_loop (`loop`) or not at all (`none`).
    #[arg(long, value_enum, default_value_t = Export::Loop)]
    export: Export,
    /// Largest command in bytes the kernel may send (hw_max_sectors).
    #[arg(long, default_value = "1MiB")]
    max_io: String,
    /// Worker threads executing commands (0: on the ring thread itself;
    /// default: one per CPU, between 2 and 8).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds the kernel waits for a command before failing it to the
    /// initiator (attrib/cmd_time_out; kernel default 30).
    #[arg(long, value_name = "SECONDS")]
    cmd_timeout: Option<u64>,
    /// Seconds a command may wait for room in a full ring before it fails
    /// (attrib/qfull_time_out; kernel default: the command timeout).
    #[arg(long, value_name = "SECONDS")]
    qfull_timeout: Option<u64>,
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
    workers: Option<usize>,
    cmd_timeout: Option<Duration>,
    qfull_timeout: Option<Duration>,
}

fn plan(args: Args) -> Result<Plan, String> {
    let backend = BackendSpec::parse(&args.backend)?;
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
    let name = args
        .name
        .unwrap_or_else(|| format!("tcmurs-{}", std::process::id()));
    if !configfs::valid_name(&name) {
        return Err(format!(
            "invalid name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
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
        export: args.export,
        max_sectors: (max_io / 512) as u32,
        workers: args.workers,
        cmd_timeout: args.cmd_timeout.map(Duration::from_secs),
        qfull_timeout: args.qfull_timeout.map(Duration::from_secs),
    })
}

fn run(plan: Plan) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: configuring the kernel target (configfs) needs it".into());
    }
    // Problems with the backing store show before anything in the kernel changes.
    let device = plan.backend.open(&plan.device)?;
    let size = device.num_blocks() * u64::from(device.block_size());
    // Signals are caught from here on, so a stop during setup still tears down.
    let (mut signals, signal_tx) = UnixStream::pair().map_err(|e| e.to_string())?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let tx = signal_tx.try_clone().map_err(|e| e.to_string())?;
        signal_hook::low_level::pipe::register(sig, tx)
            .map_err(|e| format!("cannot catch signal {sig}: {e}"))?;
    }
    signals
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;

    let mut builder = Target::builder(device)
        .name(plan.name.clone())
        .dev_config(plan.backend.dev_config())
        .max_io_bytes(plan.max_sectors * 512)
        .export(match plan.export {
            Export::Loop => TargetExport::Loopback,
            Export::None => TargetExport::None,
        });
    if let Some(workers) = plan.workers {
        builder = builder.workers(workers);
    }
    builder = builder.timeouts(plan.cmd_timeout, plan.qfull_timeout);
    let target = builder.start().map_err(|e| e.to_string())?;
    match target.disk() {
        Some(disk) => println!("ready: {}", disk.display()),
        None => println!("ready: {}", target.backstore_dir().display()),
    }
    let _ = std::io::stdout().flush();
    log::info!(
        "serving {} ({size} bytes, {}-byte blocks)",
        plan.name,
        plan.device.block_size
    );

    // Wait for a signal, or for serving to fail on its own.
    let mut byte = [0u8; 16];
    while !target.failed() {
        if matches!(signals.read(&mut byte), Ok(n) if n > 0) {
            break;
        }
    }
    log::info!("shutting down (a second signal stops without waiting for commands in flight)");
    if let Some(force) = target.force_stop_handle() {
        std::thread::spawn(move || {
            let mut byte = [0u8; 16];
            loop {
                if matches!(signals.read(&mut byte), Ok(n) if n > 0) {
                    log::warn!("second signal: not waiting for commands in flight");
                    force.force();
                    return;
                }
            }
        });
    }
    target.shutdown().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    match plan(args).and_then(run) {
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
}
