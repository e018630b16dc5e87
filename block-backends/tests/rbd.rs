//! The RBD backend against a real Ceph cluster: the single-node one that
//! `scripts/ceph-cluster start` runs (one mon, one OSD, pool `rbd`).
//!
//! Which cluster: `RBD_TEST_CONF` (a ceph.conf) when set, else the
//! script's default, target/ceph/ceph.conf in the repository. Without
//! either every test here says "skipped: no Ceph cluster" on stderr and
//! passes, unless `RBD_TEST_REQUIRED=1`, which makes that a failure (for
//! CI, where the cluster must be there).
//!
//! Every test works on images of its own (`rbd create`, removed at the
//! end). One test stops the cluster's only OSD for a while; it holds an
//! exclusive lock on DIR/tests.lock while the others hold it shared, so
//! that no other test (in this process or another) runs I/O meanwhile.
//! Every test runs under a watchdog: a hang fails it instead of blocking
//! the run.

#![cfg(feature = "rbd")]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use block_backends::{LockState, RbdDevice, RbdError, RbdOptions, RbdSpec};
use nix::fcntl::{Flock, FlockArg};
use scsi_emu::{BlockDevice, BlockError, Blocking, Extent};

const MIB: usize = 1 << 20;

/// librados' timeout for the devices of these tests.
const TIMEOUT: Duration = Duration::from_secs(4);

/// Bound on a whole test (all of its I/O and cluster commands).
const TEST_BOUND: Duration = Duration::from_secs(240);

/// The cluster the tests run against.
struct Cluster {
    conf: PathBuf,
    /// The directory of `scripts/ceph-cluster`'s cluster (conf's parent).
    dir: PathBuf,
}

impl Cluster {
    /// The cluster, or `None` (after saying why) when there is none.
    fn find(test: &str) -> Option<Cluster> {
        let conf = match std::env::var_os("RBD_TEST_CONF") {
            Some(conf) => {
                let conf = PathBuf::from(conf);
                assert!(
                    conf.is_file(),
                    "RBD_TEST_CONF={} is not a file",
                    conf.display()
                );
                conf
            }
            None => {
                let default = repo_root().join("target/ceph/ceph.conf");
                if !default.is_file() {
                    let required =
                        std::env::var("RBD_TEST_REQUIRED").is_ok_and(|v| !v.is_empty() && v != "0");
                    assert!(
                        !required,
                        "RBD_TEST_REQUIRED is set but there is no Ceph cluster: \
                         run scripts/ceph-cluster start or set RBD_TEST_CONF"
                    );
                    note(
                        test,
                        "skipped: no Ceph cluster (run scripts/ceph-cluster start)",
                    );
                    return None;
                }
                default
            }
        };
        let dir = conf.parent().expect("conf has a directory").to_path_buf();
        Some(Cluster { conf, dir })
    }

    fn spec(&self, image: &str) -> RbdSpec {
        RbdSpec {
            pool: "rbd".into(),
            image: image.into(),
            conf: Some(self.conf.clone()),
            client_id: None,
            label: None,
        }
    }

    fn connect(&self, image: &str, block_size: u32) -> Blocking<RbdDevice> {
        Blocking(
            RbdDevice::connect_with(
                self.spec(image),
                RbdOptions {
                    block_size,
                    timeout: TIMEOUT,
                    ..RbdOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("connect to rbd/{image}: {e}")),
        )
    }

    /// Runs `rbd ARGS...` against the cluster, bounded; panics on failure.
    fn rbd(&self, args: &[&str]) {
        let out = Command::new("timeout")
            .arg("60")
            .arg("rbd")
            .arg("--conf")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rbd (apt-get install ceph-common)");
        assert!(
            out.status.success(),
            "rbd {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Takes the lock that separates the OSD test from the others.
    fn lock(&self, exclusive: bool) -> Flock<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("tests.lock"))
            .expect("open tests.lock");
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(file, arg).map_err(|(_, e)| e).expect("flock")
    }

    /// Runs `scripts/ceph-cluster COMMAND --dir DIR`; panics on failure.
    fn script(&self, command: &str) {
        let out = Command::new(repo_root().join("scripts/ceph-cluster"))
            .arg(command)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/ceph-cluster");
        assert!(
            out.status.success(),
            "scripts/ceph-cluster {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A line on the real stderr, which the test harness does not capture.
fn note(test: &str, what: &str) {
    let _ = writeln!(std::io::stderr().lock(), "rbd::{test}: {what}");
}

/// An image of its own for one test, removed on drop.
struct TestImage<'a> {
    cluster: &'a Cluster,
    name: String,
}

impl<'a> TestImage<'a> {
    /// `rbd create --size SIZE` (rbd's units: 64M, 1049088B, ...).
    fn create(cluster: &'a Cluster, tag: &str, size: &str) -> TestImage<'a> {
        TestImage::with_features(cluster, tag, size, None)
    }

    /// `rbd create --size SIZE --image-feature FEATURES`, or the cluster's
    /// default features for `None`.
    fn with_features(
        cluster: &'a Cluster,
        tag: &str,
        size: &str,
        features: Option<&str>,
    ) -> TestImage<'a> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("test-{}-{n}-{tag}", std::process::id());
        let spec = format!("rbd/{name}");
        let mut args = vec!["create", "--size", size, &spec];
        if let Some(features) = features {
            args.extend(["--image-feature", features]);
        }
        cluster.rbd(&args);
        TestImage { cluster, name }
    }
}

impl Drop for TestImage<'_> {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .arg("60")
            .arg("rbd")
            .arg("--conf")
            .arg(&self.cluster.conf)
            .args(["rm", "--no-progress", &format!("rbd/{}", self.name)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `body` against the cluster under a watchdog; the OSD test passes
/// `exclusive`. Skips (passing) when there is no cluster.
fn with_cluster(test: &'static str, exclusive: bool, body: impl FnOnce(&Cluster) + Send + 'static) {
    let Some(cluster) = Cluster::find(test) else {
        return;
    };
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _lock = cluster.lock(exclusive);
        body(&cluster);
        let _ = done.send(());
    });
    match finished.recv_timeout(TEST_BOUND) {
        Ok(()) => worker.join().expect("test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: pass its panic on.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{test} did not finish within {TEST_BOUND:?}: a request hangs")
        }
    }
}

/// Deterministic test data: a function of the byte's offset and a seed.
fn pattern(offset: u64, len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x =
                (offset + i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed.wrapping_mul(0x2545_f491);
            (x >> 29) as u8 | 1 // never zero, so zeros are told apart
        })
        .collect()
}

/// Reads `len` bytes at byte `offset`.
fn read_bytes(dev: &Blocking<RbdDevice>, offset: u64, len: usize) -> Vec<u8> {
    let bs = u64::from(dev.block_size());
    let mut buf = vec![0u8; len];
    dev.read(offset / bs, &mut buf)
        .unwrap_or_else(|e| panic!("read {len} bytes at {offset}: {e}"));
    buf
}

fn write_bytes(dev: &Blocking<RbdDevice>, offset: u64, data: &[u8]) {
    let bs = u64::from(dev.block_size());
    dev.write(offset / bs, data)
        .unwrap_or_else(|e| panic!("write {} bytes at {offset}: {e}", data.len()));
}

/// The first byte where `actual` and `expected` differ, for messages.
fn first_difference(actual: &[u8], expected: &[u8]) -> Option<usize> {
    assert_eq!(actual.len(), expected.len());
    actual.iter().zip(expected).position(|(a, b)| a != b)
}

#[track_caller]
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    if let Some(i) = first_difference(actual, expected) {
        panic!(
            "{what}: byte {i} is {:#04x}, expected {:#04x}",
            actual[i], expected[i]
        );
    }
}

#[test]
fn connects_and_reports_the_geometry() {
    with_cluster("connects_and_reports_the_geometry", false, |cluster| {
        let image = TestImage::create(cluster, "geometry", "64M");
        let dev = cluster.connect(&image.name, 512);
        assert_eq!(dev.block_size(), 512);
        assert_eq!(dev.num_blocks(), 64 * 2048);
        assert_eq!(dev.image_size(), 64 << 20);
        assert_eq!(dev.object_size(), 4 << 20);
        assert_eq!(dev.name(), format!("rbd/{}", image.name));
        assert_eq!(dev.product_name(), "RBD image");
        assert!(
            !dev.capabilities().write_cache
                && dev.capabilities().unmap
                && dev.capabilities().unmap_reads_zeroes
        );
        assert!(dev.capabilities().write_zeroes && !dev.capabilities().read_only);
        // A new image reads as zeros.
        assert!(read_bytes(&dev, 0, 64 << 10).iter().all(|&b| b == 0));
        drop(dev);

        let dev = cluster.connect(&image.name, 4096);
        assert_eq!((dev.block_size(), dev.num_blocks()), (4096, 64 * 256));
    });
}

#[test]
fn reads_return_what_was_written_across_objects() {
    with_cluster(
        "reads_return_what_was_written_across_objects",
        false,
        |cluster| {
            let image = TestImage::create(cluster, "objects", "64M");
            let dev = cluster.connect(&image.name, 4096);
            // 9 MiB from 3 MiB: touches objects 0 to 3 (4 MiB each).
            let start = 3 * MIB as u64;
            let data = pattern(start, 9 * MIB, 1);
            write_bytes(&dev, start, &data);
            assert_same(&read_bytes(&dev, start, 9 * MIB), &data, "whole range");
            // A read across the boundary of objects 1 and 2 only.
            let at = 8 * MIB as u64 - 8192;
            let part = read_bytes(&dev, at, 16384);
            let from = (at - start) as usize;
            assert_same(&part, &data[from..from + 16384], "across 8 MiB");
            // Around the range: still zeros.
            assert!(read_bytes(&dev, start - 4096, 4096).iter().all(|&b| b == 0));
            assert!(
                read_bytes(&dev, 12 * MIB as u64, 4096)
                    .iter()
                    .all(|&b| b == 0)
            );
            // Small overwrites inside, one of them across an object boundary.
            let patch = pattern(4 * MIB as u64 - 4096, 8192, 2);
            write_bytes(&dev, 4 * MIB as u64 - 4096, &patch);
            let mut expected = data.clone();
            let from = MIB - 4096;
            expected[from..from + 8192].copy_from_slice(&patch);
            dev.flush().expect("flush");
            drop(dev);

            // Another connection sees it all.
            let dev = cluster.connect(&image.name, 512);
            assert_same(
                &read_bytes(&dev, start, 9 * MIB),
                &expected,
                "after reconnecting",
            );
        },
    );
}

#[test]
fn eight_threads_write_and_read_disjoint_ranges_at_once() {
    with_cluster(
        "eight_threads_write_and_read_disjoint_ranges_at_once",
        false,
        |cluster| {
            let image = TestImage::create(cluster, "threads", "64M");
            let dev = Arc::new(cluster.connect(&image.name, 512));
            const REGION: usize = MIB;
            let workers: Vec<_> = (0..8u64)
                .map(|t| {
                    let dev = Arc::clone(&dev);
                    thread::spawn(move || {
                        // Regions 5 MiB apart: every thread has objects of its own.
                        let base = t * 5 * MIB as u64;
                        let mut model = vec![0u8; REGION];
                        for i in 0..40u64 {
                            let len = 4096 * (1 + ((t + i) % 16) as usize);
                            let off = (i * 36_864 + t * 4096) % (REGION - len) as u64;
                            let off = off - off % 512;
                            let data = pattern(base + off, len, t * 1000 + i);
                            write_bytes(&dev, base + off, &data);
                            model[off as usize..off as usize + len].copy_from_slice(&data);
                            let back = read_bytes(&dev, base + off, len);
                            assert_same(&back, &data, &format!("thread {t} round {i}"));
                        }
                        let all = read_bytes(&dev, base, REGION);
                        assert_same(&all, &model, &format!("thread {t} region"));
                    })
                })
                .collect();
            for worker in workers {
                worker.join().expect("worker");
            }
            assert!(
                dev.peak_in_flight() >= 2,
                "requests of several threads were never in flight together (peak {})",
                dev.peak_in_flight()
            );
        },
    );
}

#[test]
fn flushed_writes_are_seen_by_another_client() {
    with_cluster(
        "flushed_writes_are_seen_by_another_client",
        false,
        |cluster| {
            let image = TestImage::create(cluster, "flush", "16M");
            // With librbd's cache, where flushing matters: after the first
            // flush it acknowledges writes before the OSDs have them.
            let first = Blocking(
                RbdDevice::connect_with(
                    cluster.spec(&image.name),
                    RbdOptions {
                        timeout: TIMEOUT,
                        cache: true,
                        ..RbdOptions::default()
                    },
                )
                .expect("connect with the cache"),
            );
            let a = pattern(0, 64 << 10, 7);
            write_bytes(&first, 0, &a);
            first.flush().expect("first flush");
            let b = pattern(MIB as u64, 64 << 10, 8);
            write_bytes(&first, MIB as u64, &b);
            first.flush().expect("second flush");

            let second = cluster.connect(&image.name, 512);
            assert_same(&read_bytes(&second, 0, 64 << 10), &a, "first write");
            assert_same(
                &read_bytes(&second, MIB as u64, 64 << 10),
                &b,
                "write after the first flush",
            );
            // Flushing with nothing written is fine too.
            second.flush().expect("idle flush");
        },
    );
}

/// Fills `size` bytes with a pattern, zeroes `ranges` (in blocks) with
/// `zero`, and checks the whole image against the model.
fn check_zeroing(
    cluster: &Cluster,
    tag: &str,
    ranges: &[(u64, u64)],
    zero: impl Fn(&Blocking<RbdDevice>, u64, u64) -> Result<(), BlockError>,
) {
    let image = TestImage::create(cluster, tag, "16M");
    let dev = cluster.connect(&image.name, 512);
    let size = 12 * MIB;
    let mut model = pattern(0, size, 3);
    write_bytes(&dev, 0, &model);
    for &(lba, blocks) in ranges {
        zero(&dev, lba, blocks).unwrap_or_else(|e| panic!("zeroing {blocks} blocks at {lba}: {e}"));
        model[lba as usize * 512..(lba + blocks) as usize * 512].fill(0);
    }
    assert_same(&read_bytes(&dev, 0, size), &model, tag);
    // Never-written blocks stay zeros; zero blocks are no request at all.
    zero(&dev, 30_000, 16).expect("zeroing unwritten blocks");
    zero(&dev, 5, 0).expect("zero blocks");
    assert!(read_bytes(&dev, 30_000 * 512, 8192).iter().all(|&b| b == 0));
    assert_eq!(
        zero(&dev, dev.num_blocks() - 1, 2),
        Err(BlockError::OutOfRange)
    );
}

#[test]
fn unmapped_blocks_read_as_zeros() {
    with_cluster("unmapped_blocks_read_as_zeros", false, |cluster| {
        check_zeroing(
            cluster,
            "unmap",
            &[
                // One block: far below the 64 KiB that a plain discard skips.
                (7, 1),
                // Object 1 whole, with a few blocks of its neighbours.
                (8192 - 3, 8192 + 8),
                // An odd range inside object 2.
                (17_001, 100),
            ],
            |dev, lba, blocks| dev.unmap(Extent::new(lba, blocks)),
        );
    });
}

#[test]
fn write_zeroes_zeroes_exactly_the_range() {
    with_cluster("write_zeroes_zeroes_exactly_the_range", false, |cluster| {
        check_zeroing(
            cluster,
            "zeroes",
            &[(1, 2), (4000, 300), (20_000, 4096)],
            |dev, lba, blocks| dev.write_zeroes(Extent::new(lba, blocks)),
        );
    });
}

#[test]
fn requests_beyond_the_end_are_out_of_range() {
    with_cluster(
        "requests_beyond_the_end_are_out_of_range",
        false,
        |cluster| {
            let image = TestImage::create(cluster, "range", "1M");
            let dev = cluster.connect(&image.name, 4096);
            let end = dev.num_blocks();
            let mut buf = vec![0u8; 8192];
            assert_eq!(dev.read(end, &mut buf[..4096]), Err(BlockError::OutOfRange));
            assert_eq!(dev.read(end - 1, &mut buf), Err(BlockError::OutOfRange));
            assert_eq!(dev.write(end - 1, &buf), Err(BlockError::OutOfRange));
            assert_eq!(dev.read(u64::MAX, &mut buf), Err(BlockError::OutOfRange));
            assert_eq!(dev.unmap(Extent::new(end, 1)), Err(BlockError::OutOfRange));
            // The last block itself is fine.
            dev.write(end - 1, &buf[..4096]).expect("last block");
            dev.read(end - 1, &mut buf[..4096]).expect("last block");
        },
    );
}

#[test]
fn wrong_pool_image_or_config_fail_clearly() {
    with_cluster(
        "wrong_pool_image_or_config_fail_clearly",
        false,
        |cluster| {
            let spec = |pool: &str, image: &str| RbdSpec {
                pool: pool.into(),
                ..cluster.spec(image)
            };
            let err = RbdDevice::connect(spec("no-such-pool", "x"), 512).unwrap_err();
            assert_eq!(
                err,
                RbdError::NoPool {
                    pool: "no-such-pool".into()
                }
            );
            assert!(
                err.to_string().contains("no pool named \"no-such-pool\""),
                "{err}"
            );

            let err = RbdDevice::connect(spec("rbd", "no-such-image"), 512).unwrap_err();
            assert!(matches!(err, RbdError::NoImage { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "pool \"rbd\" has no RBD image named \"no-such-image\""
            );

            let missing = RbdSpec {
                conf: Some("/nonexistent/ceph.conf".into()),
                ..spec("rbd", "x")
            };
            let err = RbdDevice::connect(missing, 512).unwrap_err();
            assert!(matches!(err, RbdError::Config { .. }), "{err:?}");
            assert!(err.to_string().contains("/nonexistent/ceph.conf"), "{err}");

            // A client the cluster has no key for.
            let stranger = RbdSpec {
                client_id: Some("stranger".into()),
                ..spec("rbd", "x")
            };
            let err = RbdDevice::connect(stranger, 512).unwrap_err();
            assert!(matches!(err, RbdError::Connect { .. }), "{err:?}");

            // An image whose size is not a whole number of 4 KiB blocks.
            let odd = TestImage::create(cluster, "odd", "1049088B");
            let err = RbdDevice::connect(cluster.spec(&odd.name), 4096).unwrap_err();
            assert_eq!(
                err,
                RbdError::BadSize {
                    size: 1_049_088,
                    block_size: 4096
                }
            );
            // With 512-byte blocks it is fine.
            let dev = cluster.connect(&odd.name, 512);
            assert_eq!(dev.num_blocks(), 2049);
        },
    );
}

#[test]
fn connecting_to_a_cluster_that_is_not_there_times_out() {
    with_cluster(
        "connecting_to_a_cluster_that_is_not_there_times_out",
        false,
        |cluster| {
            // The same configuration, but the monitor address is a port
            // nobody listens on.
            let conf = fs::read_to_string(&cluster.conf).expect("read conf");
            let port = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.local_addr().expect("addr").port()
            };
            let conf: String = conf
                .lines()
                .map(|line| {
                    if line.trim_start().starts_with("mon host") {
                        format!("mon host = v2:127.0.0.1:{port}\n")
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect();
            let tmp = tempfile::tempdir().expect("temporary directory");
            let path = tmp.path().join("nomon.conf");
            fs::write(&path, conf).expect("write conf");
            let started = Instant::now();
            let result = RbdDevice::connect_with(
                RbdSpec {
                    conf: Some(path.clone()),
                    ..cluster.spec("x")
                },
                RbdOptions {
                    block_size: 512,
                    timeout: Duration::from_secs(2),
                    ..RbdOptions::default()
                },
            );
            let took = started.elapsed();
            let err = result.unwrap_err();
            assert!(
                matches!(err, RbdError::Connect { errno: 110, .. }),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("no monitor answered within 2 s"),
                "{err}"
            );
            assert!(took < Duration::from_secs(15), "connecting took {took:?}");
        },
    );
}

#[test]
fn refresh_size_follows_a_resize() {
    with_cluster("refresh_size_follows_a_resize", false, |cluster| {
        let image = TestImage::create(cluster, "resize", "16M");
        let dev = cluster.connect(&image.name, 4096);
        assert_eq!(dev.num_blocks(), 4096);
        let spec = format!("rbd/{}", image.name);
        cluster.rbd(&["resize", "--no-progress", "--size", "32M", &spec]);
        assert_eq!(dev.refresh_size(), Ok(8192));
        assert_eq!(dev.num_blocks(), 8192);
        let data = pattern(0, 4096, 9);
        dev.write(8191, &data).expect("write the new last block");
        let mut back = vec![0u8; 4096];
        dev.read(8191, &mut back).expect("read it");
        assert_same(&back, &data, "new last block");

        cluster.rbd(&[
            "resize",
            "--no-progress",
            "--allow-shrink",
            "--size",
            "8M",
            &spec,
        ]);
        assert_eq!(dev.refresh_size(), Ok(2048));
        assert_eq!(dev.read(2048, &mut back), Err(BlockError::OutOfRange));

        // A size that is no whole number of blocks is refused, and the
        // device keeps the size it had.
        cluster.rbd(&["resize", "--no-progress", "--size", "9437696B", &spec]);
        assert!(matches!(dev.refresh_size(), Err(RbdError::BadSize { .. })));
        assert_eq!(dev.num_blocks(), 2048);
    });
}

#[test]
fn librbd_cache_can_be_turned_on() {
    with_cluster("librbd_cache_can_be_turned_on", false, |cluster| {
        let image = TestImage::create(cluster, "cache", "16M");
        let dev = Blocking(
            RbdDevice::connect_with(
                cluster.spec(&image.name),
                RbdOptions {
                    block_size: 512,
                    timeout: TIMEOUT,
                    cache: true,
                    ..RbdOptions::default()
                },
            )
            .expect("connect with the cache"),
        );
        assert!(dev.capabilities().write_cache);
        let data = pattern(4096, 65536, 5);
        write_bytes(&dev, 4096, &data);
        dev.flush().expect("flush");
        write_bytes(&dev, 4096, &data);
        assert_same(&read_bytes(&dev, 4096, 65536), &data, "through the cache");
        dev.flush().expect("flush");
        // Without the cache (the default) there is no volatile cache.
        assert!(!cluster.connect(&image.name, 512).capabilities().write_cache);
    });
}

/// The cluster's OSD, stopped; started again on drop, also when the test
/// fails, so that the cluster stays usable.
struct OsdDown<'a>(Option<&'a Cluster>);

impl<'a> OsdDown<'a> {
    fn stop(cluster: &'a Cluster) -> OsdDown<'a> {
        cluster.script("stop-osd");
        OsdDown(Some(cluster))
    }

    /// Starts the OSD, waiting until the pool serves I/O again.
    fn start(mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.script("start-osd");
        }
    }
}

impl Drop for OsdDown<'_> {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take() {
            let _ = Command::new(repo_root().join("scripts/ceph-cluster"))
                .arg("start-osd")
                .arg("--dir")
                .arg(&cluster.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Sets its flag on drop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What one I/O thread of the OSD test saw.
#[derive(Debug, Default)]
struct Outcome {
    longest: Duration,
    errors: Vec<BlockError>,
    ok: u32,
    /// Per slot: the seeds of the last acknowledged write and of the
    /// failed writes after it, any of which the slot may hold.
    slots: Vec<(Option<u64>, Vec<u64>)>,
}

#[test]
fn losing_the_osd_fails_requests_promptly_and_io_resumes_after() {
    const TEST: &str = "losing_the_osd_fails_requests_promptly_and_io_resumes_after";
    const SLOTS: u64 = 16;
    const SLOT: usize = 65536;
    with_cluster(TEST, true, |cluster| {
        if !cluster.dir.join("cluster.env").is_file() {
            note(
                TEST,
                "skipped: the cluster was not started by scripts/ceph-cluster, \
                 which this test needs to stop and start its OSD",
            );
            return;
        }
        let image = TestImage::create(cluster, "osd-loss", "64M");
        let dev = Arc::new(cluster.connect(&image.name, 4096));
        // Another image, to be closed during the outage.
        let other = TestImage::create(cluster, "osd-loss-close", "16M");
        let closing = cluster.connect(&other.name, 4096);
        write_bytes(&closing, 0, &pattern(0, 65536, 13));
        let before = pattern(0, MIB, 11);
        write_bytes(&dev, 0, &before);
        dev.flush().expect("flush before the outage");

        // librados gives up after TIMEOUT; the device's own bound is twice
        // that plus a second. Allow some scheduling slack on top.
        let bound = TIMEOUT * 2 + Duration::from_secs(4);
        let stop = Arc::new(AtomicBool::new(false));
        // Also when the test fails: the threads end, the images close.
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (dev, stop) = (Arc::clone(&dev), Arc::clone(&stop));
                thread::spawn(move || {
                    // Slots of 64 KiB in an object of the thread's own.
                    let base = (8 + t * 4) * MIB as u64;
                    let mut seen = Outcome {
                        slots: vec![(None, Vec::new()); SLOTS as usize],
                        ..Outcome::default()
                    };
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let slot = (i / 2) % SLOTS;
                        let offset = base + slot * SLOT as u64;
                        let seed = t << 32 | i;
                        let started = Instant::now();
                        let result = if i % 2 == 0 {
                            dev.write(offset / 4096, &pattern(offset, SLOT, seed))
                        } else {
                            let mut buf = vec![0u8; SLOT];
                            dev.read(offset / 4096, &mut buf)
                        };
                        seen.longest = seen.longest.max(started.elapsed());
                        let record = &mut seen.slots[slot as usize];
                        match result {
                            Ok(()) => {
                                seen.ok += 1;
                                if i % 2 == 0 {
                                    *record = (Some(seed), Vec::new());
                                }
                            }
                            Err(e) => {
                                seen.errors.push(e);
                                if i % 2 == 0 {
                                    // A failed write may still have landed.
                                    record.1.push(seed);
                                }
                                // As an initiator would: retry a moment later.
                                thread::sleep(Duration::from_millis(200));
                            }
                        }
                        i += 1;
                    }
                    seen
                })
            })
            .collect();

        thread::sleep(Duration::from_millis(500));
        let stopping = Instant::now();
        let osd_down = OsdDown::stop(cluster);
        note(TEST, &format!("OSD stopped in {:?}", stopping.elapsed()));
        // Long enough for every thread's request to time out at least once.
        thread::sleep(bound + Duration::from_secs(2));

        // A request now fails in bounded time, with an error the initiator
        // retries.
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let result = dev.read(0, &mut buf);
        let took = started.elapsed();
        assert_eq!(result, Err(BlockError::Busy), "read with the OSD down");
        assert!(took <= bound, "a read with the OSD down took {took:?}");

        // Closing an image (rbd_close: flush, release its lock) is bounded
        // too, so a server can shut down during an outage.
        let (closed, close_done) = mpsc::channel();
        let started = Instant::now();
        thread::spawn(move || {
            drop(closing);
            let _ = closed.send(());
        });
        let close_bound = TIMEOUT * 4 + Duration::from_secs(5);
        close_done.recv_timeout(close_bound).unwrap_or_else(|_| {
            panic!("closing an image with the OSD down took over {close_bound:?}")
        });
        note(
            TEST,
            &format!("image closed in {:?} with the OSD down", started.elapsed()),
        );

        let restarted = Instant::now();
        osd_down.start();
        note(TEST, &format!("OSD started in {:?}", restarted.elapsed()));
        stop.store(true, Ordering::Relaxed);
        let outcomes: Vec<Outcome> = workers
            .into_iter()
            .map(|w| w.join().expect("I/O thread"))
            .collect();
        for (t, seen) in outcomes.iter().enumerate() {
            note(
                TEST,
                &format!(
                    "thread {t}: {} requests passed, {} failed, the longest took {:?}",
                    seen.ok,
                    seen.errors.len(),
                    seen.longest
                ),
            );
            assert!(
                seen.longest <= bound,
                "thread {t}: a request took {:?}, more than {bound:?}",
                seen.longest
            );
            assert!(
                !seen.errors.is_empty(),
                "thread {t}: no request failed while the OSD was down"
            );
            assert!(
                seen.errors.iter().all(|e| *e == BlockError::Busy),
                "thread {t}: errors other than BUSY: {:?}",
                seen.errors
            );
        }

        // I/O works again (librbd may need a moment to re-establish its
        // watch and lock), and what was written before the outage is there.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut back = vec![0u8; MIB];
        loop {
            match dev.read(0, &mut back) {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "no I/O within 60 s after the OSD came back: {e}"
                    );
                    thread::sleep(Duration::from_millis(500));
                }
            }
        }
        note(
            TEST,
            &format!(
                "I/O resumed {:?} after starting the OSD",
                restarted.elapsed()
            ),
        );
        assert_same(&back, &before, "data written before the outage");
        dev.flush().expect("flush after the outage");

        // No acknowledged write was lost: every slot holds its last
        // acknowledged write, or a failed write after it.
        for (t, seen) in outcomes.iter().enumerate() {
            let base = (8 + t as u64 * 4) * MIB as u64;
            for (slot, (acked, failed)) in seen.slots.iter().enumerate() {
                let offset = base + slot as u64 * SLOT as u64;
                let held = read_bytes(&dev, offset, SLOT);
                let candidates: Vec<Vec<u8>> = acked
                    .iter()
                    .chain(failed)
                    .map(|&seed| pattern(offset, SLOT, seed))
                    .chain(acked.is_none().then(|| vec![0u8; SLOT]))
                    .collect();
                assert!(
                    candidates.contains(&held),
                    "thread {t} slot {slot}: holds none of the writes it may hold \
                     (last acknowledged {acked:?}, failed after it {failed:?})"
                );
            }
        }

        let after = pattern(2 * MIB as u64, MIB, 12);
        write_bytes(&dev, 2 * MIB as u64, &after);
        dev.flush().expect("flush after writing again");
        assert_same(
            &read_bytes(&dev, 2 * MIB as u64, MIB),
            &after,
            "write after the outage",
        );
    });
}

#[test]
fn requests_of_many_commands_wait_for_librbd_together() {
    with_cluster(
        "requests_of_many_commands_wait_for_librbd_together",
        false,
        |cluster| {
            use scsi_emu::AsyncBlockDevice;
            use std::future::Future;
            use std::pin::Pin;
            use std::task::Poll;
            type Write<'a> = Pin<Box<dyn Future<Output = Result<(), BlockError>> + Send + 'a>>;

            let image = TestImage::create(cluster, "inflight", "64M");
            let dev = cluster.connect(&image.name, 4096);
            let data: Vec<Vec<u8>> = (0..32u64)
                .map(|i| pattern(i * MIB as u64, 65536, i))
                .collect();
            // 32 writes of 64 KiB, one per object region, from this one
            // thread: each waits for its aio callback, none for a thread.
            let mut writes: Vec<Write<'_>> = data
                .iter()
                .enumerate()
                .map(|(i, d)| -> Write<'_> {
                    Box::pin(AsyncBlockDevice::write(&*dev, (i * MIB / 4096) as u64, d))
                })
                .collect();
            let mut done = vec![false; writes.len()];
            scsi_emu::block_on(std::future::poll_fn(|cx| {
                for (w, done) in writes.iter_mut().zip(done.iter_mut()) {
                    if !*done && let Poll::Ready(result) = w.as_mut().poll(cx) {
                        result.unwrap();
                        *done = true;
                    }
                }
                if done.iter().all(|d| *d) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            drop(writes);
            // All 32 are submitted in one pass, but librbd may complete the
            // first before the last is submitted: far more than a worker
            // pool's handful in flight is the point, not exactly 32.
            assert!(
                dev.peak_in_flight() >= 16,
                "at most {} requests in flight",
                dev.peak_in_flight()
            );
            for (i, d) in data.iter().enumerate() {
                assert_same(&read_bytes(&dev, (i * MIB) as u64, 65536), d, "write");
            }
        },
    );
}

/// The RBD device served through the asynchronous emulator and held
/// against `scsi_emu::testing`'s model, on an image of its own: a new
/// client per sequence (blocks a sequence has not written are unknown to
/// the model, so what earlier ones left does not matter).
#[test]
fn passes_the_device_check() {
    with_cluster("passes_the_device_check", false, |cluster| {
        let image = TestImage::create(cluster, "check", "4M");
        scsi_emu::testing::check_async_device(
            || {
                RbdDevice::connect_with(
                    cluster.spec(&image.name),
                    RbdOptions {
                        block_size: 512,
                        timeout: TIMEOUT,
                        ..RbdOptions::default()
                    },
                )
                .unwrap_or_else(|e| panic!("connect to rbd/{}: {e}", image.name))
            },
            scsi_emu::testing::CheckOptions::default(),
        );
    });
}

/// Logs of the device on stderr when `RBD_TEST_LOG` is set (to see the
/// lock change hands).
fn init_log() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Info
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "[{}] {}",
                    record.level(),
                    record.args()
                );
            }
        }
        fn flush(&self) {}
    }
    if std::env::var_os("RBD_TEST_LOG").is_some() && log::set_logger(&Stderr).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// An image with the exclusive-lock feature, for failover.
fn lock_image<'a>(cluster: &'a Cluster, tag: &str) -> TestImage<'a> {
    TestImage::with_features(cluster, tag, "64M", Some("layering,exclusive-lock"))
}

/// A gateway: a device in failover mode.
fn gateway(cluster: &Cluster, image: &str) -> Blocking<RbdDevice> {
    init_log();
    Blocking(
        RbdDevice::connect_with(
            cluster.spec(image),
            RbdOptions {
                block_size: 4096,
                timeout: TIMEOUT,
                failover: true,
                ..RbdOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("connect to rbd/{image} for failover: {e}")),
    )
}

/// How long a write is retried while the device answers BUSY.
const BUSY_BOUND: Duration = Duration::from_secs(30);

/// Writes `data` at byte `offset`, retrying as an initiator does while
/// the device answers BUSY (bounded); how many times it was BUSY.
fn write_retrying(dev: &Blocking<RbdDevice>, offset: u64, data: &[u8]) -> u32 {
    let deadline = Instant::now() + BUSY_BOUND;
    let mut busy = 0;
    loop {
        match dev.write(offset / 4096, data) {
            Ok(()) => return busy,
            Err(BlockError::Busy) if Instant::now() < deadline => {
                busy += 1;
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("write at {offset} after {busy} BUSY answers: {e}"),
        }
    }
}

/// `ceph osd blocklist ls`'s entries (client address, expiry).
fn blocklist(cluster: &Cluster) -> Vec<String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg("ceph")
        .arg("--conf")
        .arg(&cluster.conf)
        .args(["osd", "blocklist", "ls"])
        .stdin(Stdio::null())
        .output()
        .expect("run ceph");
    assert!(
        out.status.success(),
        "ceph osd blocklist ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Entries go to stdout, the count ("listed N entries") to stderr.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|line| !line.trim().is_empty())
        .collect()
}

#[test]
fn failover_first_write_takes_the_lock() {
    with_cluster("failover_first_write_takes_the_lock", false, |cluster| {
        let image = lock_image(cluster, "lock-first");
        let a = gateway(cluster, &image.name);
        assert_eq!(a.lock_state(), LockState::Unlocked);
        assert!(!a.capabilities().write_cache);
        // Reads need no lock.
        assert!(read_bytes(&a, 0, 4096).iter().all(|&b| b == 0));
        assert_eq!(a.lock_state(), LockState::Unlocked);

        let data = pattern(0, 65536, 21);
        // Whatever changes the image needs the lock: BUSY at once.
        assert_eq!(a.unmap(Extent::new(0, 1)), Err(BlockError::Busy), "unmap");
        assert_eq!(a.write(0, &data), Err(BlockError::Busy), "first write");
        write_retrying(&a, 0, &data);
        assert_eq!(a.lock_state(), LockState::Locked);
        // Now writes, zeroing and flushes pass at once.
        a.write(16, &data).expect("write with the lock");
        a.write_zeroes(Extent::new(32, 4))
            .expect("write zeroes with the lock");
        a.flush().expect("flush");
        assert_same(&read_bytes(&a, 0, 65536), &data, "written");
    });
}

#[test]
fn failover_second_gateway_fences_the_first() {
    const TEST: &str = "failover_second_gateway_fences_the_first";
    with_cluster(TEST, false, |cluster| {
        let image = lock_image(cluster, "lock-fence");
        let a = gateway(cluster, &image.name);
        let b = gateway(cluster, &image.name);
        let at = 1 << 20;
        let p1 = pattern(at, 65536, 31);
        write_retrying(&a, at, &p1);
        assert_eq!(a.lock_state(), LockState::Locked);

        // B takes the image over: BUSY first, then its write passes.
        let blocklisted = blocklist(cluster);
        let p2 = pattern(at, 65536, 32);
        assert_eq!(b.write(at / 4096, &p2), Err(BlockError::Busy));
        let started = Instant::now();
        write_retrying(&b, at, &p2);
        note(TEST, &format!("B took the lock in {:?}", started.elapsed()));
        assert_eq!(b.lock_state(), LockState::Locked);
        let new: Vec<String> = blocklist(cluster)
            .into_iter()
            .filter(|entry| !blocklisted.contains(entry))
            .collect();
        assert!(!new.is_empty(), "breaking A's lock blocklisted no client");
        note(TEST, &format!("blocklisted: {new:?}"));

        // A is fenced: its write is refused (BUSY) and does not land.
        let p3 = pattern(at, 65536, 33);
        assert_eq!(a.write(at / 4096, &p3), Err(BlockError::Busy), "A fenced");
        assert_ne!(a.lock_state(), LockState::Locked);
        assert_same(&read_bytes(&b, at, 65536), &p2, "B's write, not A's");

        // A takes the image back with a new client; B is fenced in turn.
        let started = Instant::now();
        write_retrying(&a, at, &p3);
        note(
            TEST,
            &format!("A took the lock back in {:?}", started.elapsed()),
        );
        assert_eq!(a.lock_state(), LockState::Locked);
        let p4 = pattern(at, 65536, 34);
        assert_eq!(b.write(at / 4096, &p4), Err(BlockError::Busy), "B fenced");
        assert_ne!(b.lock_state(), LockState::Locked);
        assert_same(&read_bytes(&a, at, 65536), &p3, "A's last write");
        // A keeps writing without BUSY.
        let p5 = pattern(at, 65536, 35);
        write_bytes(&a, at, &p5);
        assert_same(&read_bytes(&a, at, 65536), &p5, "A's write after");

        // Fenced B reads again through a new client of its own (BUSY while
        // it reconnects), without taking the lock from A.
        let deadline = Instant::now() + BUSY_BOUND;
        let mut back = vec![0u8; 65536];
        while let Err(e) = b.read(at / 4096, &mut back) {
            assert_eq!(e, BlockError::Busy, "read through fenced B");
            assert!(Instant::now() < deadline, "B did not reconnect");
            thread::sleep(Duration::from_millis(100));
        }
        assert_same(&back, &p5, "read through B after it reconnected");
        assert_eq!(b.lock_state(), LockState::Unlocked);
        assert_eq!(a.lock_state(), LockState::Locked);
        write_bytes(&a, at, &p1);
    });
}

#[test]
fn failover_reads_do_not_take_the_lock() {
    with_cluster("failover_reads_do_not_take_the_lock", false, |cluster| {
        let image = lock_image(cluster, "lock-reads");
        let a = gateway(cluster, &image.name);
        let b = gateway(cluster, &image.name);
        let data = pattern(0, 65536, 41);
        write_retrying(&a, 0, &data);
        for i in 0..50u64 {
            assert_same(&read_bytes(&b, 0, 65536), &data, "read through B");
            let more = pattern(65536, 4096, 100 + i);
            write_bytes(&a, 65536, &more);
        }
        assert_eq!(a.lock_state(), LockState::Locked);
        assert_eq!(b.lock_state(), LockState::Unlocked);
        b.flush().expect("a flush needs no lock");
        assert_eq!(a.lock_state(), LockState::Locked);
        write_bytes(&a, 0, &data);
    });
}

#[test]
fn failover_needs_the_exclusive_lock_feature() {
    with_cluster(
        "failover_needs_the_exclusive_lock_feature",
        false,
        |cluster| {
            let image = TestImage::with_features(cluster, "lock-none", "16M", Some("layering"));
            let err = RbdDevice::connect_with(
                cluster.spec(&image.name),
                RbdOptions {
                    timeout: TIMEOUT,
                    failover: true,
                    ..RbdOptions::default()
                },
            )
            .unwrap_err();
            assert!(matches!(err, RbdError::NoExclusiveLock { .. }), "{err:?}");
            assert!(err.to_string().contains("exclusive-lock"), "{err}");
            // Without failover the image is fine, and switching it on
            // later is refused the same way.
            let dev = cluster.connect(&image.name, 512);
            let err = dev.enable_failover().unwrap_err();
            assert!(matches!(err, RbdError::NoExclusiveLock { .. }), "{err:?}");
            assert_eq!(dev.lock_state(), LockState::Unlocked);
            write_bytes(&dev, 0, &pattern(0, 4096, 51));
        },
    );
}

/// An administrator grows the image while a gateway holds the lock in
/// failover mode: librbd hands the resize to the lock owner, which does it.
#[test]
fn failover_resize_by_another_client_while_locked() {
    const TEST: &str = "failover_resize_by_another_client_while_locked";
    with_cluster(TEST, false, |cluster| {
        let image = lock_image(cluster, "lock-resize");
        let a = gateway(cluster, &image.name);
        write_retrying(&a, 0, &pattern(0, 4096, 71));
        assert_eq!(a.lock_state(), LockState::Locked);
        let started = Instant::now();
        let name = format!("rbd/{}", image.name);
        cluster.rbd(&["resize", "--size", "128M", &name]);
        note(TEST, &format!("rbd resize took {:?}", started.elapsed()));
        assert_eq!(a.refresh_size().expect("refresh"), (128 << 20) / 4096);
        assert_eq!(a.lock_state(), LockState::Locked, "the lock stays");
        write_bytes(&a, 100 << 20, &pattern(100 << 20, 4096, 72));
    });
}

/// tcmu-runner's order (ceph-iscsi creates the ALUA groups after the
/// device is open): two devices opened without failover, switched to it
/// afterwards, behave as gateways from then on.
#[test]
fn failover_switched_on_after_open() {
    const TEST: &str = "failover_switched_on_after_open";
    with_cluster(TEST, false, |cluster| {
        let image = lock_image(cluster, "lock-late");
        let a = cluster.connect(&image.name, 4096);
        let b = cluster.connect(&image.name, 4096);
        // Before: librbd hands the lock over between writers by itself.
        let p1 = pattern(0, 65536, 61);
        write_bytes(&a, 0, &p1);
        write_bytes(&b, 65536, &p1);
        assert_eq!(a.lock_state(), LockState::Unlocked);

        assert_eq!(a.enable_failover(), Ok(true));
        assert_eq!(a.enable_failover(), Ok(false), "a second time");
        assert_eq!(b.enable_failover(), Ok(true));
        // A's first write now acquires the lock explicitly (BUSY first).
        let p2 = pattern(0, 65536, 62);
        assert_eq!(a.write(0, &p2), Err(BlockError::Busy));
        write_retrying(&a, 0, &p2);
        assert_eq!(a.lock_state(), LockState::Locked);
        // B takes it over and fences A, whose writes no longer land.
        let p3 = pattern(0, 65536, 63);
        assert_eq!(b.write(0, &p3), Err(BlockError::Busy));
        write_retrying(&b, 0, &p3);
        assert_eq!(b.lock_state(), LockState::Locked);
        let p4 = pattern(0, 65536, 64);
        assert_eq!(a.write(0, &p4), Err(BlockError::Busy), "A fenced");
        assert_same(&read_bytes(&b, 0, 65536), &p3, "B's write, not A's");
        // A's new session is in failover mode too: it takes the lock back
        // explicitly, and B is fenced in turn.
        write_retrying(&a, 0, &p4);
        assert_eq!(a.lock_state(), LockState::Locked);
        assert_eq!(b.write(0, &p1), Err(BlockError::Busy), "B fenced");
        assert_same(&read_bytes(&a, 0, 65536), &p4, "A's write");
    });
}

#[test]
fn failover_takeover_under_load_loses_no_acknowledged_write() {
    const TEST: &str = "failover_takeover_under_load_loses_no_acknowledged_write";
    const SLOTS: u64 = 16;
    const SLOT: usize = 65536;
    const BASE: u64 = 8 << 20;
    with_cluster(TEST, false, |cluster| {
        let image = lock_image(cluster, "lock-load");
        let a = Arc::new(gateway(cluster, &image.name));
        let b = gateway(cluster, &image.name);
        write_retrying(&a, 0, &pattern(0, 4096, 50));
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
        // A writes slot after slot until its first failure; then, as an
        // initiator would, it moves to the other path and writes no more
        // through A.
        let writer = {
            let (a, stop) = (Arc::clone(&a), Arc::clone(&stop));
            thread::spawn(move || {
                let mut slots = vec![(None, Vec::new()); SLOTS as usize];
                let mut first_error = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let slot = i % SLOTS;
                    let offset = BASE + slot * SLOT as u64;
                    let record: &mut (Option<u64>, Vec<u64>) = &mut slots[slot as usize];
                    match a.write(offset / 4096, &pattern(offset, SLOT, i)) {
                        Ok(()) => *record = (Some(i), Vec::new()),
                        Err(e) => {
                            // It may have landed before the fence.
                            record.1.push(i);
                            first_error = Some(e);
                            break;
                        }
                    }
                    i += 1;
                }
                (slots, first_error, i)
            })
        };
        thread::sleep(Duration::from_millis(300));
        write_retrying(&b, 0, &pattern(0, 4096, 51));
        let (slots, first_error, writes) = writer.join().expect("writer");
        note(TEST, &format!("A wrote {writes} times before the takeover"));
        assert_eq!(first_error, Some(BlockError::Busy), "A's first failure");
        assert_ne!(a.lock_state(), LockState::Locked);

        let region = || read_bytes(&b, BASE, SLOTS as usize * SLOT);
        let held = region();
        for (slot, (acked, failed)) in slots.iter().enumerate() {
            let offset = BASE + slot as u64 * SLOT as u64;
            let data = &held[slot * SLOT..(slot + 1) * SLOT];
            let fits = acked
                .iter()
                .chain(failed)
                .any(|&seed| data == pattern(offset, SLOT, seed).as_slice())
                || (acked.is_none() && data.iter().all(|&x| x == 0));
            assert!(
                fits,
                "slot {slot}: holds none of the writes it may hold \
                 (last acknowledged {acked:?}, failed after it {failed:?})"
            );
        }
        // Nothing of A's lands later.
        thread::sleep(Duration::from_secs(1));
        assert!(region() == held, "the region changed after the takeover");
    });
}
