//! The NBD client against real servers started here: `qemu-nbd` (Debian
//! package qemu-utils) serving a raw image file, and `nbdkit` (package
//! nbdkit) with its memory plugin and test filters. A missing server
//! program fails the test with the package to install. A few tests use a
//! small scripted server in this file for what real servers cannot be
//! made to do (old options only, late or garbage replies).
//!
//! Every server listens on a socket in a fresh temporary directory and is
//! killed when its test ends, also when the test fails. Waits that a hang
//! would make endless are bounded by channel timeouts, so a hang fails
//! the test instead of blocking it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use block_backends::{NbdAddress, NbdDevice, NbdError, NbdOptions};
use scsi_emu::{BlockDevice, BlockError, Blocking, Extent, WriteFlags};

/// Bound on anything that should happen "promptly".
const BOUND: Duration = Duration::from_secs(30);

const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;
const ETIMEDOUT: i32 = 110;
const ESHUTDOWN: i32 = 108;

/// A fresh directory, removed with its contents on drop.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("nbd-test-{tag}-"))
            .tempdir()
            .expect("create temporary directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    address: NbdAddress,
    dir: TempDir,
}

impl Server {
    fn address(&self) -> &NbdAddress {
        &self.address
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.file("stderr")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails unless `program` can be run, naming the package that has it.
fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{program}` is needed by this test but was not found: apt-get install -y {package}"
    );
}

/// Starts `command` and waits until its socket accepts connections.
fn start(mut command: Command, address: NbdAddress, dir: TempDir) -> Server {
    let stderr = File::create(dir.path().join("stderr")).expect("stderr file");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start server");
    let mut server = Server {
        child,
        address,
        dir,
    };
    let deadline = Instant::now() + BOUND;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "server {command:?} exited with {status}: {}",
                server.stderr()
            );
        }
        let up = match server.address() {
            NbdAddress::Unix { path } => UnixStream::connect(path).is_ok(),
            NbdAddress::Tcp { host, port } => TcpStream::connect((host.as_str(), *port)).is_ok(),
        };
        if up {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "server {command:?} did not start listening: {}",
            server.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `nbdkit ARGS` on a Unix socket.
fn nbdkit(args: &[&str]) -> Server {
    require("nbdkit", "nbdkit");
    let dir = TempDir::new("nbdkit");
    let socket = dir.path().join("nbd.sock");
    let mut command = Command::new("nbdkit");
    command
        .arg("--unix")
        .arg(&socket)
        .args(["--foreground", "--exit-with-parent"])
        .current_dir(dir.path())
        .args(args);
    start(command, NbdAddress::Unix { path: socket }, dir)
}

/// `qemu-nbd` serving a raw image of `size` bytes (filled by `fill`) on a
/// Unix socket, or on TCP at 127.0.0.1 when `tcp`.
fn qemu_nbd_with(size: u64, fill: &[u8], extra: &[&str], tcp: bool) -> Server {
    require("qemu-nbd", "qemu-utils");
    let dir = TempDir::new("qemu");
    let image = dir.path().join("disk.img");
    let file = File::create(&image).expect("create image");
    file.set_len(size).expect("size image");
    file.write_all_at(fill, 0).expect("fill image");
    let mut command = Command::new("qemu-nbd");
    command.args(["--format=raw", "--persistent", "--shared=16"]);
    let address = if tcp {
        // A port that was free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        command.args(["--bind=127.0.0.1", &format!("--port={port}")]);
        NbdAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        }
    } else {
        let socket = dir.path().join("nbd.sock");
        command.arg("--socket").arg(&socket);
        NbdAddress::Unix { path: socket }
    };
    command.args(extra).arg(&image);
    start(command, address, dir)
}

fn qemu_nbd(size: u64, extra: &[&str]) -> Server {
    qemu_nbd_with(size, &[], extra, false)
}

fn options(block_size: u32) -> NbdOptions {
    NbdOptions {
        block_size,
        ..NbdOptions::default()
    }
}

fn connect(server: &Server, export: &str) -> Blocking<NbdDevice> {
    NbdDevice::connect(server.address(), export, options(512))
        .map(Blocking)
        .unwrap_or_else(|e| panic!("connect: {e}; server says: {}", server.stderr()))
}

/// Log records of every test in this binary, kept to count them.
static LOGGED: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        LOGGED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((record.level(), line));
    }

    fn flush(&self) {}
}

/// Error-level lines logged so far that mention `needle` (tests run in
/// parallel: `needle` tells this test's lines from the others').
fn errors_logged(needle: &str) -> Vec<String> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Info);
    });
    LOGGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(level, line)| *level == log::Level::Error && line.contains(needle))
        .map(|(_, line)| line.clone())
        .collect()
}

/// A small deterministic generator of test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The request lines of an nbdkit log filter log, e.g. `Write id=3
/// offset=0x0 count=0x200 fua=1 ...`, without timestamps and replies.
fn logged_requests(server: &Server) -> Vec<String> {
    let log = fs::read_to_string(server.file("log")).expect("nbdkit log");
    log.lines()
        .filter_map(|line| line.split_once("connection=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(' ').map(|(_, request)| request.to_owned()))
        .filter(|request| !request.starts_with("..."))
        .collect()
}

#[test]
fn qemu_nbd_handshake_reports_size_and_features() {
    let server = qemu_nbd(4 << 20, &[]);
    let disk = connect(&server, "");
    assert_eq!(disk.block_size(), 512);
    assert_eq!(disk.num_blocks(), 8192);
    assert_eq!(disk.export_size(), 4 << 20);
    assert!(disk.is_connected());
    assert!(!disk.capabilities().read_only);
    assert!(
        disk.capabilities().write_cache,
        "qemu-nbd takes NBD_CMD_FLUSH"
    );
    assert!(disk.capabilities().unmap, "qemu-nbd takes NBD_CMD_TRIM");
    assert!(
        disk.capabilities().write_zeroes,
        "qemu-nbd takes NBD_CMD_WRITE_ZEROES"
    );
    assert!(!disk.capabilities().unmap_reads_zeroes);
    assert!(disk.max_request_bytes() >= 1 << 20);
    assert_eq!(disk.max_request_bytes() % 512, 0);

    let big =
        Blocking(NbdDevice::connect(server.address(), "", options(4096)).expect("connect 4K"));
    assert_eq!(big.block_size(), 4096);
    assert_eq!(big.num_blocks(), 1024);
}

#[test]
fn qemu_nbd_read_after_write_across_many_blocks() {
    const SIZE: usize = 16 << 20;
    let server = qemu_nbd(SIZE as u64, &[]);
    let disk = connect(&server, "");
    let mut model = vec![0u8; SIZE];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..300 {
        let blocks = 1 + rng.below(64) as usize;
        let lba = rng.below((SIZE / 512 - blocks) as u64) as usize;
        let mut data = vec![0u8; blocks * 512];
        rng.fill(&mut data);
        if i % 3 == 0 {
            disk.write_vectored(lba as u64, &[&data], WriteFlags::FUA)
                .expect("write_fua");
        } else {
            disk.write(lba as u64, &data).expect("write");
        }
        model[lba * 512..(lba + blocks) * 512].copy_from_slice(&data);
    }
    disk.flush().expect("flush");

    // Back through NBD, in pieces of several sizes.
    let mut lba = 0;
    while lba < SIZE / 512 {
        let blocks = (1 + rng.below(2048) as usize).min(SIZE / 512 - lba);
        let mut back = vec![0xeeu8; blocks * 512];
        disk.read(lba as u64, &mut back).expect("read");
        assert!(
            back == model[lba * 512..(lba + blocks) * 512],
            "blocks {lba}..{} differ",
            lba + blocks
        );
        lba += blocks;
    }
    // And the server really stored it.
    let stored = fs::read(server.file("disk.img")).expect("read image");
    assert!(stored == model, "image file differs from what was written");
}

#[test]
fn requests_beyond_the_servers_maximum_payload_are_split() {
    // The filter fails any request longer than 64 KiB with EINVAL.
    let server = nbdkit(&[
        "--filter=blocksize-policy",
        "memory",
        "8M",
        "blocksize-maximum=64K",
        "blocksize-error-policy=error",
    ]);
    let disk = connect(&server, "");
    assert_eq!(disk.max_request_bytes(), 64 << 10);
    let mut data = vec![0u8; 3 << 20];
    Rng(7).fill(&mut data);
    disk.write(100, &data).expect("write 3 MiB");
    let mut back = vec![0u8; data.len()];
    disk.read(100, &mut back).expect("read 3 MiB");
    assert!(back == data, "3 MiB read back differs");
    disk.write_zeroes(Extent::new(100, 4096))
        .expect("write_zeroes 2 MiB");
    disk.read(100, &mut back).expect("read again");
    assert!(back[..2 << 20].iter().all(|&b| b == 0));
    assert!(back[2 << 20..] == data[2 << 20..]);
}

#[test]
fn eight_threads_on_disjoint_ranges() {
    const THREADS: u64 = 8;
    const REGION: u64 = 2048; // blocks per thread (1 MiB)
    let server = nbdkit(&["memory", "64M"]);
    let disk = connect(&server, "");
    thread::scope(|s| {
        for t in 0..THREADS {
            let disk = &disk;
            s.spawn(move || {
                let base = t * REGION;
                let mut model = vec![0u8; (REGION * 512) as usize];
                let mut rng = Rng(t + 1);
                for _ in 0..60 {
                    let blocks = 1 + rng.below(128);
                    let at = rng.below(REGION - blocks);
                    let range = (at * 512) as usize..((at + blocks) * 512) as usize;
                    rng.fill(&mut model[range.clone()]);
                    disk.write(base + at, &model[range.clone()]).expect("write");
                    let mut back = vec![0u8; range.len()];
                    disk.read(base + at, &mut back).expect("read");
                    assert!(back == model[range], "thread {t}: read after write differs");
                }
                let mut all = vec![0u8; model.len()];
                disk.read(base, &mut all).expect("read region");
                assert!(all == model, "thread {t}: region differs at the end");
            });
        }
    });
}

#[test]
fn fua_writes_and_flushes_reach_the_server() {
    let server = nbdkit(&["--filter=log", "memory", "1M", "logfile=log"]);
    let disk = connect(&server, "");
    assert!(disk.capabilities().write_cache);
    disk.write_vectored(2, &[&[1; 1024]], WriteFlags::FUA)
        .expect("write_fua");
    disk.write(4, &[2; 512]).expect("write");
    disk.flush().expect("flush");
    let mut back = [0; 1536];
    disk.read(2, &mut back).expect("read");
    assert!(back[..1024].iter().all(|&b| b == 1) && back[1024..].iter().all(|&b| b == 2));
    drop(disk);

    let requests = logged_requests(&server);
    let writes: Vec<_> = requests
        .iter()
        .filter(|r| r.starts_with("Write "))
        .collect();
    assert_eq!(writes.len(), 2, "{requests:?}");
    assert!(
        writes[0].contains("offset=0x400 count=0x400 fua=1"),
        "{requests:?}"
    );
    assert!(
        writes[1].contains("offset=0x800 count=0x200 fua=0"),
        "{requests:?}"
    );
    let flushes = requests.iter().filter(|r| r.starts_with("Flush ")).count();
    assert_eq!(flushes, 1, "{requests:?}");
}

#[test]
fn fua_without_server_support_is_write_then_flush() {
    let server = nbdkit(&[
        "--filter=log",
        "--filter=fua",
        "memory",
        "1M",
        "logfile=log",
        // The filter's default mode hides FUA from the client ("none").
    ]);
    let disk = connect(&server, "");
    disk.write_vectored(2, &[&[1; 512]], WriteFlags::FUA)
        .expect("write_fua");
    drop(disk);

    let requests: Vec<_> = logged_requests(&server)
        .into_iter()
        .filter(|r| r.starts_with("Write ") || r.starts_with("Flush "))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[0].starts_with("Write ") && requests[0].contains("fua=0"),
        "{requests:?}"
    );
    assert!(requests[1].starts_with("Flush "), "{requests:?}");
}

#[test]
fn trim_and_write_zeroes_on_nbdkit() {
    let server = nbdkit(&["--filter=log", "memory", "1M", "logfile=log"]);
    let disk = connect(&server, "");
    assert!(disk.capabilities().unmap && disk.capabilities().write_zeroes);
    disk.write(0, &[0xff; 64 * 512]).expect("write");
    disk.write_zeroes(Extent::new(8, 16)).expect("write_zeroes");
    disk.unmap(Extent::new(40, 8)).expect("unmap");
    let mut back = vec![0u8; 64 * 512];
    disk.read(0, &mut back).expect("read");
    for (block, data) in back.chunks(512).enumerate() {
        if (8..24).contains(&block) {
            assert!(data.iter().all(|&b| b == 0), "block {block} not zeroed");
        } else if !(40..48).contains(&block) {
            assert!(data.iter().all(|&b| b == 0xff), "block {block} changed");
        }
    }
    drop(disk);
    let requests = logged_requests(&server);
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("Zero ") && r.contains("offset=0x1000 count=0x2000")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("Trim ") && r.contains("offset=0x5000 count=0x1000")),
        "{requests:?}"
    );
}

#[test]
fn write_zeroes_on_qemu_nbd_reads_back_zeros() {
    let server = qemu_nbd_with(1 << 20, &[0x5a; 1 << 20], &[], false);
    let disk = connect(&server, "");
    disk.write_zeroes(Extent::new(100, 300))
        .expect("write_zeroes");
    disk.unmap(Extent::new(1000, 24)).expect("unmap");
    let mut back = vec![0u8; 512 * 500];
    disk.read(0, &mut back).expect("read");
    for (block, data) in back.chunks(512).enumerate() {
        let expected = if (100..400).contains(&block) { 0 } else { 0x5a };
        assert!(data.iter().all(|&b| b == expected), "block {block}");
    }
}

#[test]
fn write_zeroes_without_server_support_writes_zeros() {
    let server = nbdkit(&["--filter=nozero", "memory", "1M"]);
    let disk = connect(&server, "");
    assert!(!disk.capabilities().write_zeroes);
    disk.write(0, &[0x77; 16 * 512]).expect("write");
    disk.write_zeroes(Extent::new(4, 8)).expect("write_zeroes");
    let mut back = vec![0u8; 16 * 512];
    disk.read(0, &mut back).expect("read");
    for (block, data) in back.chunks(512).enumerate() {
        let expected = if (4..12).contains(&block) { 0 } else { 0x77 };
        assert!(data.iter().all(|&b| b == expected), "block {block}");
    }
}

#[test]
fn read_only_export_refuses_writes() {
    let server = qemu_nbd_with(1 << 20, &[0x33; 4096], &["--read-only"], false);
    let disk = connect(&server, "");
    assert!(disk.capabilities().read_only);
    assert!(!disk.capabilities().unmap && !disk.capabilities().write_zeroes);
    assert_eq!(disk.write(0, &[0; 512]), Err(BlockError::ReadOnly));
    assert_eq!(
        disk.write_vectored(0, &[&[0; 512]], WriteFlags::FUA),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(
        disk.write_zeroes(Extent::new(0, 1)),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(disk.unmap(Extent::new(0, 1)), Err(BlockError::ReadOnly));
    let mut back = [0u8; 4096];
    disk.read(0, &mut back).expect("read");
    assert_eq!(back, [0x33; 4096]);
    assert!(disk.is_connected());
}

#[test]
fn server_errors_become_block_errors() {
    let server = nbdkit(&[
        "--filter=error",
        "memory",
        "1M",
        "error-pread=EIO",
        "error-pread-rate=100%",
        "error-pwrite=ENOSPC",
        "error-pwrite-rate=100%",
        "error-trim=EPERM",
        "error-trim-rate=100%",
        "error-zero=EINVAL",
        "error-zero-rate=100%",
    ]);
    let disk = connect(&server, "");
    let mut buf = [0u8; 512];
    assert_eq!(disk.read(0, &mut buf), Err(BlockError::Io(5)));
    assert_eq!(disk.write(0, &buf), Err(BlockError::NoSpace));
    assert_eq!(disk.unmap(Extent::new(0, 1)), Err(BlockError::ReadOnly));
    assert_eq!(
        disk.write_zeroes(Extent::new(0, 1)),
        Err(BlockError::Io(22))
    );
    // Errors are per request: the connection goes on.
    disk.flush().expect("flush still works");
    assert!(disk.is_connected());
}

#[test]
fn out_of_range_requests_are_refused_locally() {
    let server = nbdkit(&["memory", "64K"]);
    let disk = connect(&server, "");
    assert_eq!(disk.num_blocks(), 128);
    let mut buf = [0u8; 1024];
    assert_eq!(disk.read(127, &mut buf), Err(BlockError::OutOfRange));
    assert_eq!(disk.write(u64::MAX, &buf), Err(BlockError::OutOfRange));
    assert_eq!(
        disk.write_zeroes(Extent::new(100, 29)),
        Err(BlockError::OutOfRange)
    );
    assert!(matches!(
        disk.read(0, &mut buf[..100]),
        Err(BlockError::Io(22))
    ));
    disk.read(126, &mut buf).expect("last two blocks");
}

#[test]
fn unknown_export_is_a_clear_error() {
    let server = qemu_nbd(1 << 20, &["--export-name=disk0"]);
    let err = NbdDevice::connect(server.address(), "nosuch", options(512)).unwrap_err();
    assert!(
        matches!(&err, NbdError::UnknownExport { export, .. } if export == "nosuch"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no export named \"nosuch\""),
        "{err}"
    );
    let disk = connect(&server, "disk0");
    assert_eq!(disk.num_blocks(), 2048);
}

#[test]
fn connection_refused_is_a_clear_error() {
    let dir = TempDir::new("refused");
    let missing = NbdAddress::Unix {
        path: dir.path().join("none.sock"),
    };
    let err = NbdDevice::connect(&missing, "", options(512)).unwrap_err();
    assert!(matches!(err, NbdError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot connect to NBD server unix:"),
        "{err}"
    );

    // A socket file nobody listens on any more.
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).expect("bind"));
    let err = NbdDevice::connect(&NbdAddress::Unix { path }, "", options(512)).unwrap_err();
    match &err {
        NbdError::Connect { source, .. } => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{err}"
            )
        }
        other => panic!("{other:?}"),
    }

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tcp = NbdAddress::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let err = NbdDevice::connect(&tcp, "", options(512)).unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn tcp_connection_to_qemu_nbd() {
    let server = qemu_nbd_with(2 << 20, &[], &[], true);
    assert!(matches!(server.address(), NbdAddress::Tcp { .. }));
    let disk = connect(&server, "");
    assert_eq!(disk.num_blocks(), 4096);
    let mut data = vec![0u8; 256 << 10];
    Rng(99).fill(&mut data);
    disk.write(1000, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    disk.read(1000, &mut back).expect("read");
    assert!(back == data);
}

#[test]
fn oldstyle_server_is_refused() {
    let server = nbdkit(&["--oldstyle", "memory", "1M"]);
    let err = NbdDevice::connect(server.address(), "", options(512)).unwrap_err();
    assert!(matches!(err, NbdError::Oldstyle), "{err:?}");
    assert!(err.to_string().contains("newstyle"), "{err}");
}

#[test]
fn plain_newstyle_server_gets_export_name() {
    // Neither fixed newstyle nor "no zeroes": only NBD_OPT_EXPORT_NAME,
    // answered with 124 bytes of padding.
    let server = nbdkit(&["--mask-handshake=0", "memory", "1M"]);
    let disk = connect(&server, "");
    assert_eq!(disk.num_blocks(), 2048);
    disk.write(7, &[9; 512]).expect("write");
    let mut back = [0; 512];
    disk.read(7, &mut back).expect("read");
    assert_eq!(back, [9; 512]);
}

#[test]
fn export_size_must_be_whole_blocks() {
    let server = nbdkit(&["memory", "6K"]);
    let err = NbdDevice::connect(server.address(), "", options(4096)).unwrap_err();
    assert!(
        matches!(
            err,
            NbdError::BadSize {
                size: 6144,
                block_size: 4096
            }
        ),
        "{err:?}"
    );
    let disk = connect(&server, "");
    assert_eq!(disk.num_blocks(), 12);
}

#[test]
fn servers_minimum_block_size_is_obeyed() {
    let server = nbdkit(&[
        "--filter=blocksize-policy",
        "memory",
        "1M",
        "blocksize-minimum=4096",
        "blocksize-error-policy=error",
    ]);
    let err = NbdDevice::connect(server.address(), "", options(512)).unwrap_err();
    assert!(
        matches!(
            err,
            NbdError::BlockSizeConstraints {
                block_size: 512,
                minimum: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    let disk =
        Blocking(NbdDevice::connect(server.address(), "", options(4096)).expect("4K blocks"));
    disk.write(3, &[4; 4096]).expect("aligned write");
}

#[test]
fn invalid_block_size_is_refused_before_connecting() {
    let address = NbdAddress::Unix {
        path: "unused.sock".into(),
    };
    let err = NbdDevice::connect(&address, "", options(1000)).unwrap_err();
    assert!(matches!(err, NbdError::InvalidBlockSize(1000)), "{err:?}");
}

/// Runs `op` on another thread and fails the test unless it finishes
/// within [`BOUND`].
fn bounded<T: Send + 'static>(what: &str, op: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(op());
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} did not finish: hung"))
}

#[test]
fn killed_server_fails_every_request_promptly() {
    const THREADS: u64 = 8;
    let mut server = nbdkit(&["memory", "64M"]);
    let socket = server.address().to_string();
    assert!(errors_logged(&socket).is_empty());
    let disk = Arc::new(connect(&server, ""));
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let (disk, done, tx) = (Arc::clone(&disk), Arc::clone(&done), tx.clone());
        thread::spawn(move || {
            let mut buf = vec![t as u8; 64 << 10];
            let lba = t * 2048;
            // Until the connection breaks; the bound is for a server that
            // never dies.
            for i in 0..1_000_000u64 {
                let result = if i % 2 == 0 {
                    disk.write(lba, &buf)
                } else {
                    disk.read(lba, &mut buf)
                };
                if let Err(e) = result {
                    let _ = tx.send((t, e));
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Let every thread get going, so that requests are in flight.
    let deadline = Instant::now() + BOUND;
    while done.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        thread::sleep(Duration::from_millis(5));
    }
    server.kill();

    for _ in 0..THREADS {
        let (t, err) = rx
            .recv_timeout(BOUND)
            .expect("a request hung after the server was killed");
        assert!(
            matches!(err, BlockError::Io(ECONNRESET | EPIPE)),
            "thread {t}: {err:?}"
        );
    }
    assert!(!disk.is_connected());
    let later = {
        let disk = Arc::clone(&disk);
        bounded("a request after the failure", move || {
            disk.read(0, &mut [0; 512])
        })
    };
    assert!(
        matches!(later, Err(BlockError::Io(ECONNRESET | EPIPE))),
        "{later:?}"
    );
    // Dropping the device (its reader thread is gone already) must not hang.
    bounded("dropping the device", move || drop(disk));
    let errors = errors_logged(&socket);
    assert_eq!(errors.len(), 1, "one error line, not {errors:?}");
    // Whoever noticed first: the reader (end of stream) or a sender.
    assert!(
        errors[0].contains(&format!("{socket} lost: ")),
        "{errors:?}"
    );
}

#[test]
fn server_shutdown_is_followed_by_disconnect() {
    // nbdkit answers ESHUTDOWN to every request once the file "inject"
    // exists; the client must then stop sending and disconnect.
    let server = nbdkit(&[
        "--filter=error",
        "memory",
        "1M",
        "error=ESHUTDOWN",
        "error-rate=100%",
        "error-file=inject",
    ]);
    let disk = Arc::new(connect(&server, ""));
    disk.write(0, &[1; 512]).expect("write before the shutdown");
    File::create(server.file("inject")).expect("inject");
    let first = disk.read(0, &mut [0; 512]);
    assert_eq!(first, Err(BlockError::Io(ESHUTDOWN)));
    let later = {
        let disk = Arc::clone(&disk);
        bounded("a request after the shutdown", move || {
            disk.read(0, &mut [0; 512])
        })
    };
    assert!(
        matches!(later, Err(BlockError::Io(ESHUTDOWN | ECONNRESET))),
        "{later:?}"
    );
    assert!(!disk.is_connected());
}

// ---- A scripted server for what real servers will not do. ----

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_INFO: u32 = 3;
const REP_ACK: u32 = 1;

fn get<const N: usize>(s: &mut UnixStream) -> [u8; N] {
    let mut b = [0; N];
    s.read_exact(&mut b).expect("scripted server: read");
    b
}

/// Server side of the handshake; answers `NBD_OPT_GO` with "unsupported"
/// unless `go`. Returns the option the client entered transmission with.
fn script_handshake(s: &mut UnixStream, size: u64, flags: u16, go: bool) -> u32 {
    let mut hello = Vec::new();
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&3u16.to_be_bytes()); // fixed newstyle, no zeroes
    s.write_all(&hello).unwrap();
    assert_eq!(u32::from_be_bytes(get(s)), 3, "client flags");
    loop {
        assert_eq!(u64::from_be_bytes(get(s)), IHAVEOPT);
        let option = u32::from_be_bytes(get(s));
        let len = u32::from_be_bytes(get(s));
        let mut data = vec![0; len as usize];
        s.read_exact(&mut data).unwrap();
        let reply = |s: &mut UnixStream, kind: u32, payload: &[u8]| {
            let mut r = Vec::new();
            r.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
            r.extend_from_slice(&option.to_be_bytes());
            r.extend_from_slice(&kind.to_be_bytes());
            r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            r.extend_from_slice(payload);
            s.write_all(&r).unwrap();
        };
        match option {
            7 if go => {
                let mut info = vec![0, 0]; // NBD_INFO_EXPORT
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&flags.to_be_bytes());
                reply(s, REP_INFO, &info);
                reply(s, REP_ACK, &[]);
                return option;
            }
            1 => {
                let mut r = size.to_be_bytes().to_vec();
                r.extend_from_slice(&flags.to_be_bytes());
                s.write_all(&r).unwrap();
                return option;
            }
            _ => reply(s, REP_ERR_UNSUP, &[]),
        }
    }
}

/// A request as the scripted server sees it.
struct Request {
    command: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    data: Vec<u8>,
}

fn script_request(s: &mut UnixStream) -> Request {
    let h: [u8; 28] = get(s);
    assert_eq!(&h[0..4], &[0x25, 0x60, 0x95, 0x13], "request magic");
    let command = u16::from_be_bytes([h[6], h[7]]);
    let len = u32::from_be_bytes(h[24..28].try_into().unwrap());
    let mut data = Vec::new();
    if command == 1 {
        data.resize(len as usize, 0);
        s.read_exact(&mut data).unwrap();
    }
    Request {
        command,
        cookie: u64::from_be_bytes(h[8..16].try_into().unwrap()),
        offset: u64::from_be_bytes(h[16..24].try_into().unwrap()),
        len,
        data,
    }
}

fn script_reply(s: &mut UnixStream, magic: u32, error: u32, cookie: u64, data: &[u8]) {
    let mut r = Vec::new();
    r.extend_from_slice(&magic.to_be_bytes());
    r.extend_from_slice(&error.to_be_bytes());
    r.extend_from_slice(&cookie.to_be_bytes());
    r.extend_from_slice(data);
    s.write_all(&r).unwrap();
}

const SIMPLE: u32 = 0x6744_6698;
const FLAGS: u16 = 1 | 4; // HAS_FLAGS | SEND_FLUSH

/// Runs `script` as the server of one connection on a fresh socket.
fn scripted(
    script: impl FnOnce(UnixStream) + Send + 'static,
) -> (TempDir, NbdAddress, thread::JoinHandle<()>) {
    let dir = TempDir::new("script");
    let path = dir.path().join("nbd.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        script(stream);
    });
    (dir, NbdAddress::Unix { path }, handle)
}

#[test]
fn server_without_go_gets_export_name() {
    let (_dir, address, server) = scripted(|mut s| {
        assert_eq!(script_handshake(&mut s, 1 << 20, FLAGS, false), 1);
        let r = script_request(&mut s);
        assert_eq!((r.command, r.offset, r.len), (0, 1024, 512));
        script_reply(&mut s, SIMPLE, 0, r.cookie, &[0x42; 512]);
        let r = script_request(&mut s);
        assert_eq!(r.command, 2, "NBD_CMD_DISC on drop");
    });
    let disk = Blocking(NbdDevice::connect(&address, "x", options(512)).expect("connect"));
    assert_eq!(disk.num_blocks(), 2048);
    assert!(disk.capabilities().write_cache && !disk.capabilities().unmap);
    let mut buf = [0; 512];
    disk.read(2, &mut buf).expect("read");
    assert_eq!(buf, [0x42; 512]);
    drop(disk);
    server.join().expect("scripted server");
}

#[test]
fn garbage_reply_fails_requests_without_hanging() {
    let (_dir, address, server) = scripted(|mut s| {
        script_handshake(&mut s, 1 << 20, FLAGS, true);
        let a = script_request(&mut s);
        let _b = script_request(&mut s);
        // A reply with a wrong magic: nothing after it can be trusted.
        script_reply(&mut s, 0xdead_beef, 0, a.cookie, &[]);
        // Keep the connection open: the client must give up by itself.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let socket = address.to_string();
    assert!(errors_logged(&socket).is_empty());
    let disk = Arc::new(Blocking(
        NbdDevice::connect(&address, "", options(512)).expect("connect"),
    ));
    let (tx, rx) = mpsc::channel();
    for lba in [0u64, 1] {
        let (disk, tx) = (Arc::clone(&disk), tx.clone());
        thread::spawn(move || {
            let _ = tx.send(disk.read(lba, &mut [0; 512]));
        });
    }
    for _ in 0..2 {
        let result = rx.recv_timeout(BOUND).expect("request hung");
        assert_eq!(result, Err(BlockError::Io(ECONNRESET)));
    }
    assert_eq!(disk.flush(), Err(BlockError::Io(ECONNRESET)));
    assert!(!disk.is_connected());
    bounded("dropping the device", move || drop(disk));
    server.join().expect("scripted server");
    let errors = errors_logged(&socket);
    assert_eq!(errors.len(), 1, "one error line, not {errors:?}");
    assert!(
        errors[0].contains("garbage (reply magic 0xdeadbeef)"),
        "{errors:?}"
    );
}

#[test]
fn late_reply_after_timeout_is_dropped() {
    let (_dir, address, server) = scripted(|mut s| {
        script_handshake(&mut s, 1 << 20, FLAGS, true);
        let slow = script_request(&mut s);
        assert_eq!(slow.command, 0);
        // Hold the reply until the client, having given up, sends more.
        let write = script_request(&mut s);
        assert_eq!((write.command, write.data.len()), (1, 512));
        script_reply(&mut s, SIMPLE, 0, slow.cookie, &[0x11; 4096]);
        script_reply(&mut s, SIMPLE, 0, write.cookie, &[]);
        let read = script_request(&mut s);
        script_reply(&mut s, SIMPLE, 0, read.cookie, &write.data);
        let _ = script_request(&mut s); // NBD_CMD_DISC
    });
    let opts = NbdOptions {
        request_timeout: Some(Duration::from_millis(200)),
        ..options(512)
    };
    let disk = Blocking(NbdDevice::connect(&address, "", opts).expect("connect"));
    let mut buf = [0u8; 4096];
    assert_eq!(disk.read(0, &mut buf), Err(BlockError::Io(ETIMEDOUT)));
    assert_eq!(buf, [0; 4096], "a timed out read leaves the buffer alone");
    assert!(disk.is_connected());
    // The late reply and its 4 KiB must be skipped for these to work.
    disk.write(5, &[0x22; 512])
        .expect("write after the timeout");
    let mut back = [0u8; 512];
    disk.read(5, &mut back).expect("read after the late reply");
    assert_eq!(back, [0x22; 512]);
    drop(disk);
    server.join().expect("scripted server");
}

#[test]
fn requests_of_many_commands_wait_on_the_connection_together() {
    use scsi_emu::AsyncBlockDevice;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    // Every read takes 300 ms at the server.
    let server = nbdkit(&["--filter=delay", "memory", "1M", "rdelay=300ms"]);
    let disk = connect(&server, "");
    for lba in 0..32u64 {
        BlockDevice::write(&disk, lba, &[lba as u8 + 1; 512]).unwrap();
    }
    let mut bufs: Vec<Vec<u8>> = (0..32).map(|_| vec![0u8; 512]).collect();
    type Read<'a> = Pin<Box<dyn Future<Output = Result<(), BlockError>> + 'a>>;
    let mut reads: Vec<Read<'_>> = bufs
        .iter_mut()
        .enumerate()
        .map(|(lba, buf)| -> Read<'_> { Box::pin(AsyncBlockDevice::read(&*disk, lba as u64, buf)) })
        .collect();
    let mut done = vec![false; reads.len()];
    let mut first_pass = true;
    scsi_emu::block_on(std::future::poll_fn(|cx| {
        for (read, done) in reads.iter_mut().zip(done.iter_mut()) {
            if !*done && let Poll::Ready(result) = read.as_mut().poll(cx) {
                result.unwrap();
                *done = true;
            }
        }
        if first_pass {
            // One thread, 32 commands: all on the wire at once.
            first_pass = false;
            assert_eq!(disk.in_flight(), 32);
        }
        if done.iter().all(|d| *d) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    drop(reads);
    for (lba, buf) in bufs.iter().enumerate() {
        assert_eq!(buf, &vec![lba as u8 + 1; 512]);
    }
    assert_eq!(disk.in_flight(), 0);
}

/// The NBD client served through the asynchronous emulator and held
/// against `scsi_emu::testing`'s model: one server, a new connection per
/// sequence (the model takes blocks a sequence has not written as unknown,
/// so what earlier sequences left there does not matter).
#[test]
fn nbdkit_memory_passes_the_device_check() {
    let server = nbdkit(&["memory", "1M"]);
    scsi_emu::testing::check_async_device(
        || {
            NbdDevice::connect(server.address(), "", options(512))
                .unwrap_or_else(|e| panic!("connect: {e}; server says: {}", server.stderr()))
        },
        scsi_emu::testing::CheckOptions::default(),
    );
}

#[test]
fn qemu_nbd_passes_the_device_check() {
    let server = qemu_nbd(1 << 20, &[]);
    scsi_emu::testing::check_async_device(
        || {
            NbdDevice::connect(server.address(), "", options(4096))
                .unwrap_or_else(|e| panic!("connect: {e}; server says: {}", server.stderr()))
        },
        scsi_emu::testing::CheckOptions::default(),
    );
}
