//! The command line: the flags of one device, daemon mode's `--control`,
//! and the requests a client sends to a daemon.

// The doc comments here are the --help text, where `<name>` is a
// placeholder, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scsi_emu::BlockSize;

use crate::export::{ExportSpec, parse_export};
use crate::io_engine::IoEngine;
use crate::runner::RunnerArgs;

/// Serve a block device to the Linux kernel as a SCSI disk (TCMU).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Daemon mode: also (or only) serve devices added and removed at run
    /// time through a control socket at PATH. Without device flags it
    /// starts with no device and prints `ready: PATH`. Followed by a
    /// request (add, remove, list), send that request to the daemon at
    /// PATH instead.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    #[command(subcommand)]
    pub request: Option<Request>,
}

/// A request to the daemon at `--control PATH`, or runner mode.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Request {
    /// Runner mode, in place of tcmu-runner: serve the `user:file`,
    /// `user:qcow` and `user:rbd` backstores that targetcli, rtslib or
    /// ceph-iscsi create (found at start and announced by the kernel
    /// afterwards), and own org.kernel.TCMUService1 on the system bus.
    /// Prints `ready: runner` once serving. On SIGINT or SIGTERM it stops
    /// serving and leaves the backstores in place.
    Runner(RunnerArgs),
    /// Serve one more device, given by the device flags above (e.g. `add
    /// --backend mem --size 1GiB --name d2`); prints its `ready:` line.
    Add {
        /// The device's flags, checked by the daemon.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "DEVICE-FLAGS"
        )]
        flags: Vec<String>,
    },
    /// Stop serving the device NAME and remove it.
    Remove {
        /// The device's backstore name (see list).
        name: String,
    },
    /// The devices served: one line each, its name and its `ready:` target.
    List,
}

impl Request {
    /// The request as the control protocol carries it: its words.
    pub fn words(&self) -> Vec<String> {
        match self {
            Request::Add { flags } => std::iter::once("add".to_string())
                .chain(flags.iter().cloned())
                .collect(),
            Request::Remove { name } => vec!["remove".into(), name.clone()],
            Request::List => vec!["list".into()],
            Request::Runner(_) => vec!["runner".into()],
        }
    }

    /// The request's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Add { .. } => "add",
            Request::Remove { .. } => "remove",
            Request::List => "list",
            Request::Runner(_) => "runner",
        }
    }
}

/// The flags that describe one device: its storage, geometry, export and
/// serving options.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// The storage: `mem` (a sparse RAM disk), `file:PATH` (a regular file
    /// or a block device), `nbd:HOST[:PORT][/EXPORT]` or
    /// `nbd+unix:PATH[/EXPORT]` (an NBD server's export).
    #[arg(long, value_name = "SPEC")]
    pub backend: Option<String>,
    /// Size of the disk, e.g. 512MiB, 2GiB, 1048576. Required for `mem` and
    /// with --create. For an existing file it must equal the file's size,
    /// for a block device be at most the device's (default: their size).
    #[arg(long)]
    pub size: Option<String>,
    /// Create the `file:` backend's file (sparse, --size bytes) if it does
    /// not exist. An existing file is never grown or shrunk.
    #[arg(long)]
    pub create: bool,
    /// Serve the disk write-protected: every write fails.
    #[arg(long)]
    pub read_only: bool,
    /// Bypass the page cache for a `file:` backend (O_DIRECT).
    #[arg(long)]
    pub direct: bool,
    /// How a `file:` backend does its I/O: `threads` (positioned reads and
    /// writes on the worker threads; the default) or `io_uring` (submitted
    /// to an io_uring, completed by the kernel; a request in flight holds
    /// no thread).
    #[arg(long, value_name = "threads|io_uring")]
    pub io_engine: Option<IoEngine>,
    /// Testing aid: fail reads or writes of some blocks with MEDIUM ERROR
    /// (OP `read` or `write`), or make the first access to them hang for
    /// an hour (OP `hang`); e.g. read:2048, or write:100+8 for COUNT blocks from
    /// LBA. Repeatable.
    #[arg(long, value_name = "OP:LBA[+COUNT]")]
    pub inject_fault: Vec<String>,
    /// Logical block size in bytes: 512, 1024, 2048 or 4096.
    #[arg(long, default_value_t = BlockSize::DEFAULT)]
    pub block_size: BlockSize,
    /// Backstore name in configfs (default: tcmurs-<pid>).
    #[arg(long)]
    pub name: Option<String>,
    /// Export the LUN through tcm_loop (`loop`), not at all (`none`), or
    /// as an iSCSI target (`iscsi[:IQN][@ADDR:PORT]`; default IQN
    /// iqn.2026-11.org.tcmu-rs:<name>, default portal 127.0.0.1:3260). iSCSI
    /// needs --chap-user and --chap-password-file, or --iscsi-no-auth.
    #[arg(
        long,
        default_value = "loop",
        value_name = "loop|none|iscsi[:IQN][@ADDR:PORT]",
        value_parser = parse_export
    )]
    pub export: ExportSpec,
    /// iSCSI: initiators log in with CHAP as this user.
    #[arg(
        long,
        value_name = "USER",
        requires = "chap_password_file",
        conflicts_with = "iscsi_no_auth"
    )]
    pub chap_user: Option<String>,
    /// iSCSI: the file holding the CHAP password (one line, at least 12
    /// characters); never pass it on the command line.
    #[arg(
        long,
        value_name = "PATH",
        requires = "chap_user",
        conflicts_with = "iscsi_no_auth"
    )]
    pub chap_password_file: Option<PathBuf>,
    /// iSCSI: no authentication; any initiator that reaches the portal may
    /// log in and write (demo mode).
    #[arg(long)]
    pub iscsi_no_auth: bool,
    /// iSCSI: the tag of the target portal group (default 1). Gateways
    /// exporting one image under one target name each use their own.
    #[arg(long, value_name = "TAG")]
    pub iscsi_tpg: Option<u16>,
    /// iSCSI: serve as one of several gateways of one image, laid out as
    /// ceph-iscsi does it: the TPG tags of every gateway, the owner's first.
    /// ALUA groups `ao` (the owner's, active/optimized) and `ano<TAG>`
    /// (active/non-optimized) are made in the backstore and the LUN joins
    /// its own gateway's; an `rbd:` image is then written only while this
    /// gateway holds its exclusive lock. Give every gateway the same
    /// --serial.
    #[arg(long, value_name = "TAG,TAG...", value_delimiter = ',')]
    pub alua_gateways: Vec<u16>,
    /// The unit serial number (VPD page 0x80), from which the disk's
    /// WWN is derived (default: a new random one).
    #[arg(long)]
    pub serial: Option<String>,
    /// Largest command in bytes the kernel may send (hw_max_sectors).
    #[arg(long, default_value = "1MiB")]
    pub max_io: String,
    /// Size of the data area shared with the kernel, in whole MiB
    /// (max_data_area_mb; default: the kernel's, 1024 MiB): the bytes of
    /// all commands in flight at once. Pages are allocated as used.
    #[arg(long, value_name = "SIZE")]
    pub data_area: Option<String>,
    /// Size of the command ring, in whole MiB between 1 and 8
    /// (cmd_ring_size_mb; default: the kernel's, 8 MiB).
    #[arg(long, value_name = "SIZE")]
    pub ring_size: Option<String>,
    /// Worker threads executing commands (0: on the serving thread itself;
    /// default: one per CPU, between 4 and 8).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Microseconds the worker reading the ring watches for the next
    /// command before it sleeps (default 0: never). Lower latency under
    /// load for that much CPU time per wait. `auto`: up to 60 µs, only
    /// while spinning pays (spins find commands, CPUs not contended).
    #[arg(long, value_name = "MICROSECONDS|auto")]
    pub spin_us: Option<String>,
    /// Seconds the kernel waits for a command before failing it to the
    /// initiator (attrib/cmd_time_out; kernel default 30).
    #[arg(long, value_name = "SECONDS")]
    pub cmd_timeout: Option<u64>,
    /// Seconds a command may wait for room in a full ring before it fails
    /// (attrib/qfull_time_out; kernel default: the command timeout).
    #[arg(long, value_name = "SECONDS")]
    pub qfull_timeout: Option<u64>,
}

/// A clap error as one line, without its `error: ` prefix and usage hints:
/// what was wrong and with which flag.
pub fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let line = message.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

/// The device flags of a daemon's `add` request, alone.
#[derive(Debug, Parser)]
#[command(name = "tcmu-serve add")]
pub struct AddArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
}
