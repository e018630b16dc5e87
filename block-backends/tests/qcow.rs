//! The qcow2 device against the real QEMU tools (Debian package
//! qemu-utils): images made and filled by `qemu-img` and `qemu-io` must
//! read back bit-exact, and after writes through the device `qemu-img
//! check` must find no errors and `qemu-img convert -O raw` must give
//! exactly what a byte-array model of the writes holds. A missing tool
//! fails the test with the package to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

use block_backends::{QcowDevice, QcowError, QcowOptions};
use scsi_emu::{BlockDevice, BlockError, Extent};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Fails unless `program` can be run, naming the package that has it.
fn require(program: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{program}` is needed by this test but was not found: apt-get install -y qemu-utils \
         (or scripts/install-deps nbd)"
    );
}

/// Runs `program ARGS`, fails the test unless it succeeds, returns its
/// standard output.
fn run(program: &str, args: &[&str]) -> String {
    require(program);
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", args)
}

/// `qemu-io` on a qcow2 image with the given commands (`-c` each).
fn qemu_io(image: &Path, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.extend(["-c", c]);
    }
    let image = image.to_str().unwrap();
    args.push(image);
    let out = run("qemu-io", &args);
    // qemu-io reports a failed command on stdout and still exits 0.
    assert!(
        !out.to_lowercase().contains("fail") && !out.contains("error"),
        "qemu-io {commands:?}: {out}"
    );
}

/// A qcow2 image made by `qemu-img create -f qcow2 [-o OPTIONS]`, in a
/// temporary directory removed on drop.
struct Image {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Image {
    fn create(size: u64, options: &str) -> Image {
        let dir = tempfile::Builder::new()
            .prefix("qcow-test-")
            .tempdir()
            .expect("temporary directory");
        let path = dir.path().join("disk.qcow2");
        let mut args = vec!["create", "-q", "-f", "qcow2"];
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        let size = size.to_string();
        args.extend([path.to_str().unwrap(), &size]);
        qemu_img(&args);
        Image { dir, path }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open(&self, block_size: u32) -> QcowDevice {
        QcowDevice::open(&self.path, QcowOptions::new(block_size))
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()))
    }

    /// `qemu-img check`: no errors, no leaks, no corruption.
    fn check(&self) {
        let out = qemu_img(&["check", self.path.to_str().unwrap()]);
        assert!(
            out.contains("No errors were found on the image."),
            "qemu-img check: {out}"
        );
        assert!(!out.contains("leaked"), "qemu-img check: {out}");
    }

    /// The virtual disk as `qemu-img convert -O raw` sees it.
    fn contents(&self) -> Vec<u8> {
        let raw = self.file("converted.raw");
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            self.path.to_str().unwrap(),
            raw.to_str().unwrap(),
        ]);
        let data = fs::read(&raw).expect("read converted image");
        fs::remove_file(&raw).expect("remove converted image");
        data
    }

    /// `qemu-img info`'s virtual size.
    fn virtual_size(&self) -> u64 {
        let out = qemu_img(&["info", "--output=json", self.path.to_str().unwrap()]);
        let rest = out
            .split("\"virtual-size\":")
            .nth(1)
            .unwrap_or_else(|| panic!("no virtual size in {out}"));
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("virtual size")
    }
}

/// A deterministic pseudo-random sequence (xorshift64*), so a failure
/// repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` non-zero bytes depending on `seed` and position.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u64)
                .wrapping_mul(131)
                .wrapping_add(seed.wrapping_mul(7)) as u8)
                | 1
        })
        .collect()
}

/// The whole disk read through `dev`, in pieces of varying size.
fn read_all(dev: &QcowDevice) -> Vec<u8> {
    let bs = u64::from(dev.block_size());
    let mut data = vec![0u8; (dev.num_blocks() * bs) as usize];
    let mut lba = 0;
    let mut rng = Rng(7);
    while lba < dev.num_blocks() {
        let blocks = (1 + rng.below(300)).min(dev.num_blocks() - lba);
        let at = (lba * bs) as usize;
        dev.read(lba, &mut data[at..at + (blocks * bs) as usize])
            .unwrap_or_else(|e| panic!("read {blocks} blocks at {lba}: {e}"));
        lba += blocks;
    }
    data
}

/// Index of the first byte where `a` and `b` differ, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn assert_same(what: &str, got: &[u8], model: &[u8]) {
    if let Some(at) = first_difference(got, model) {
        panic!(
            "{what}: differs from the model at byte {at} (lengths {} and {}): {:?} instead of {:?}",
            got.len(),
            model.len(),
            got.get(at..(at + 8).min(got.len())),
            model.get(at..(at + 8).min(model.len())),
        );
    }
}

/// Writes `count` random runs of blocks (1 to `max_blocks` long, at any
/// block offset, overlapping each other) through `dev` and into `model`.
fn random_writes(dev: &QcowDevice, model: &mut [u8], rng: &mut Rng, count: u64, max_blocks: u64) {
    let bs = u64::from(dev.block_size());
    let blocks = dev.num_blocks();
    for i in 0..count {
        let len = 1 + rng.below(max_blocks.min(blocks));
        let lba = rng.below(blocks - len + 1);
        let data = pattern((len * bs) as usize, rng.next());
        dev.write(lba, &data)
            .unwrap_or_else(|e| panic!("write {i}: {len} blocks at {lba}: {e}"));
        let at = (lba * bs) as usize;
        model[at..at + data.len()].copy_from_slice(&data);
        if i % 50 == 49 {
            dev.flush().expect("flush");
        }
    }
}

#[test]
fn reads_back_what_qemu_io_wrote() {
    let image = Image::create(8 * MIB, "");
    qemu_io(&image.path, &["write -P 0xab 0 1M", "write -P 0x5c 3M 64k"]);
    let mut model = vec![0u8; (8 * MIB) as usize];
    model[..MIB as usize].fill(0xab);
    model[(3 * MIB) as usize..(3 * MIB + 64 * KIB) as usize].fill(0x5c);

    for block_size in [512, 4096] {
        let dev = image.open(block_size);
        assert_eq!(dev.block_size(), block_size);
        assert_eq!(dev.len_bytes(), 8 * MIB);
        assert_eq!(dev.num_blocks(), 8 * MIB / u64::from(block_size));
        assert_eq!(dev.qcow2_version(), 3);
        assert_eq!(dev.backing_file(), None);
        assert_same(
            &format!("{block_size}-byte blocks"),
            &read_all(&dev),
            &model,
        );

        // The edges of the patterns, block by block.
        let bs = block_size as usize;
        let mut block = vec![0u8; bs];
        let last_ab = MIB / u64::from(block_size) - 1;
        dev.read(last_ab, &mut block).unwrap();
        assert!(block.iter().all(|&b| b == 0xab));
        dev.read(last_ab + 1, &mut block).unwrap();
        assert!(block.iter().all(|&b| b == 0));
        let first_5c = 3 * MIB / u64::from(block_size);
        dev.read(first_5c - 1, &mut block).unwrap();
        assert!(block.iter().all(|&b| b == 0));
        dev.read(first_5c, &mut block).unwrap();
        assert!(block.iter().all(|&b| b == 0x5c));
    }

    // Read-only: the same data, and the image file is not touched.
    let before = fs::read(&image.path).unwrap();
    let options = QcowOptions {
        read_only: true,
        ..QcowOptions::default()
    };
    let dev = QcowDevice::open(&image.path, options).unwrap();
    assert!(dev.capabilities().read_only);
    assert_same("read-only", &read_all(&dev), &model);
    assert_eq!(dev.write(0, &[1; 512]), Err(BlockError::ReadOnly));
    assert_eq!(dev.unmap(Extent::new(0, 8)), Err(BlockError::ReadOnly));
    assert_eq!(dev.resize(1), Err(BlockError::ReadOnly));
    dev.flush().unwrap();
    drop(dev);
    assert!(
        fs::read(&image.path).unwrap() == before,
        "read-only open changed the image"
    );
}

#[test]
fn random_writes_leave_a_clean_image_equal_to_the_model() {
    // Small clusters: many L2 tables and refcount blocks get allocated.
    for options in ["", "cluster_size=4096"] {
        let image = Image::create(16 * MIB, options);
        qemu_io(&image.path, &["write -P 0x11 5M 300k"]);
        let mut model = vec![0u8; (16 * MIB) as usize];
        model[(5 * MIB) as usize..(5 * MIB + 300 * KIB) as usize].fill(0x11);

        let dev = image.open(512);
        let caps = dev.capabilities();
        assert!(caps.write_cache && !caps.read_only);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        random_writes(&dev, &mut model, &mut rng, 400, 300);
        // The same range rewritten, and a write over the end of the disk's
        // last cluster.
        let data = pattern(64 * 1024, 99);
        for lba in [1000, 1000, 1001, 32768 - 128] {
            dev.write(lba, &data).unwrap();
            let at = lba as usize * 512;
            model[at..at + data.len()].copy_from_slice(&data);
        }
        assert_same(
            &format!("[{options}] through the device"),
            &read_all(&dev),
            &model,
        );
        // Flushed, the file holds it all, metadata included, while the
        // device is still open.
        dev.flush().expect("flush");
        image.check();
        assert_same(
            &format!("[{options}] flushed, converted"),
            &image.contents(),
            &model,
        );
        drop(dev);

        image.check();
        assert_same(
            &format!("[{options}] qemu-img convert"),
            &image.contents(),
            &model,
        );
        // And what QEMU sees, the device sees again.
        assert_same(
            &format!("[{options}] reopened"),
            &read_all(&image.open(512)),
            &model,
        );
    }
}

#[test]
fn concurrent_writes_from_many_threads_all_land() {
    let image = Image::create(32 * MIB, "cluster_size=16384");
    let dev = Arc::new(image.open(512));
    let threads = 8u64;
    let stripe = dev.num_blocks() / threads;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let dev = Arc::clone(&dev);
            thread::spawn(move || {
                // Each thread in its own stripe, so the result is known
                // whatever the order; clusters at stripe edges are not
                // shared (stripes are whole clusters).
                let mut model = vec![0u8; (stripe * 512) as usize];
                let mut rng = Rng(t + 1);
                for i in 0..150 {
                    let len = 1 + rng.below(200);
                    let lba = rng.below(stripe - len + 1);
                    let data = pattern((len * 512) as usize, t * 1000 + i);
                    dev.write(t * stripe + lba, &data).unwrap();
                    let at = (lba * 512) as usize;
                    model[at..at + data.len()].copy_from_slice(&data);
                    if i % 40 == 0 {
                        dev.flush().unwrap();
                    }
                }
                model
            })
        })
        .collect();
    let model: Vec<u8> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("writer thread"))
        .collect();
    drop(Arc::into_inner(dev).expect("last reference"));
    image.check();
    assert_same("after concurrent writes", &image.contents(), &model);
}

#[test]
fn unmap_zeroing_and_resize_keep_the_image_consistent() {
    let image = Image::create(8 * MIB, "");
    qemu_io(&image.path, &["write -P 0x77 0 8M"]);
    let mut model = vec![0x77u8; (8 * MIB) as usize];
    let dev = image.open(512);
    let caps = dev.capabilities();
    assert!(caps.unmap && caps.unmap_reads_zeroes && caps.write_zeroes);

    // Whole clusters, parts of clusters, a single block, the last block.
    let extents = [
        (128, 256),
        (1000, 3),
        (4096, 1),
        (2 * 4096 + 7, 300),
        (16383, 1),
    ];
    for (i, &(lba, blocks)) in extents.iter().enumerate() {
        let extent = Extent::new(lba, blocks);
        if i % 2 == 0 {
            dev.unmap(extent).unwrap();
        } else {
            dev.write_zeroes(extent).unwrap();
        }
        model[(lba * 512) as usize..((lba + blocks) * 512) as usize].fill(0);
    }
    dev.unmap(Extent::new(5, 0)).unwrap();
    assert_same("after unmap", &read_all(&dev), &model);

    // Writing into discarded clusters allocates them again.
    let data = pattern(4096, 5);
    dev.write(130, &data).unwrap();
    model[130 * 512..130 * 512 + 4096].copy_from_slice(&data);

    // Grow: the new blocks read as zeros. Shrink: the tail is gone.
    dev.resize(12 * MIB / 512).unwrap();
    assert_eq!(dev.num_blocks(), 12 * MIB / 512);
    model.resize((12 * MIB) as usize, 0);
    let tail = pattern(1024, 9);
    dev.write(12 * MIB / 512 - 2, &tail).unwrap();
    model[(12 * MIB - 1024) as usize..].copy_from_slice(&tail);
    assert_same("grown", &read_all(&dev), &model);
    drop(dev);
    image.check();
    assert_eq!(image.virtual_size(), 12 * MIB);
    assert_same("grown, converted", &image.contents(), &model);

    let dev = image.open(512);
    dev.resize(6 * MIB / 512).unwrap();
    assert_eq!(dev.num_blocks(), 6 * MIB / 512);
    model.truncate((6 * MIB) as usize);
    assert_eq!(
        dev.read(6 * MIB / 512, &mut [0; 512]),
        Err(BlockError::OutOfRange)
    );
    drop(dev);
    image.check();
    assert_eq!(image.virtual_size(), 6 * MIB);
    assert_same("shrunk, converted", &image.contents(), &model);
}

#[test]
fn backing_file_shows_through_and_is_not_written() {
    let image = Image::create(4 * MIB, "");
    // The base: a qcow2 with data, under an overlay naming it relatively.
    let base = image.file("base.qcow2");
    fs::rename(&image.path, &base).unwrap();
    qemu_io(&base, &["write -P 0x42 0 4M"]);
    let base_before = fs::read(&base).unwrap();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        image.path.to_str().unwrap(),
    ]);
    let mut model = vec![0x42u8; (4 * MIB) as usize];

    let dev = image.open(512);
    assert_eq!(dev.backing_file(), Some("base.qcow2"));
    assert_same("through the overlay", &read_all(&dev), &model);
    let mut rng = Rng(3);
    random_writes(&dev, &mut model, &mut rng, 100, 64);
    // Discarded blocks read as zeros, not as the backing file's data.
    dev.unmap(Extent::new(2048, 512)).unwrap();
    model[2048 * 512..2560 * 512].fill(0);
    assert_same("overlay after writes", &read_all(&dev), &model);
    drop(dev);

    image.check();
    assert_same("overlay, converted", &image.contents(), &model);
    assert!(
        fs::read(&base).unwrap() == base_before,
        "the backing file was modified"
    );

    // A missing backing file is refused, naming the image.
    fs::remove_file(&base).unwrap();
    let err = QcowDevice::open(&image.path, QcowOptions::default()).unwrap_err();
    assert!(matches!(err, QcowError::Image { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(image.path.to_str().unwrap()) && msg.contains("base.qcow2"),
        "{msg}"
    );
}

#[test]
fn compressed_and_version_2_images() {
    // Compressed clusters (qemu-img convert -c) read back, and writing
    // over them rewrites them uncompressed.
    let image = Image::create(4 * MIB, "");
    let source = image.file("source.qcow2");
    fs::rename(&image.path, &source).unwrap();
    qemu_io(&source, &["write -P 0x3c 0 1M", "write -P 0xc3 2M 192k"]);
    qemu_img(&[
        "convert",
        "-q",
        "-c",
        "-O",
        "qcow2",
        source.to_str().unwrap(),
        image.path.to_str().unwrap(),
    ]);
    let mut model = vec![0u8; (4 * MIB) as usize];
    model[..MIB as usize].fill(0x3c);
    model[(2 * MIB) as usize..(2 * MIB + 192 * KIB) as usize].fill(0xc3);
    let dev = image.open(512);
    assert_same("compressed", &read_all(&dev), &model);
    let data = pattern(3 * 512, 1);
    for lba in [1, 4096 + 127] {
        dev.write(lba, &data).unwrap();
        model[lba as usize * 512..lba as usize * 512 + data.len()].copy_from_slice(&data);
    }
    drop(dev);
    image.check();
    assert_same("compressed, rewritten", &image.contents(), &model);

    // Version 2 (compat=0.10): no zero clusters, so no native unmap or
    // zeroing; zeroing still works by writing zeros.
    let image = Image::create(4 * MIB, "compat=0.10");
    let dev = image.open(512);
    assert_eq!(dev.qcow2_version(), 2);
    let caps = dev.capabilities();
    assert!(!caps.unmap && !caps.write_zeroes && caps.write_cache);
    let mut model = vec![0u8; (4 * MIB) as usize];
    let mut rng = Rng(11);
    random_writes(&dev, &mut model, &mut rng, 100, 128);
    // Data first, so that zeroing has something to clear.
    dev.write(100, &pattern(1000 * 512, 2)).unwrap();
    dev.write_zeroes(Extent::new(100, 1000)).unwrap();
    model[100 * 512..1100 * 512].fill(0);
    drop(dev);
    image.check();
    assert_same("version 2", &image.contents(), &model);
}

/// The error opening `path` with 512-byte blocks, and its message, which
/// must be one line naming the path.
fn refusal(path: &Path, block_size: u32) -> (QcowError, String) {
    let err = QcowDevice::open(path, QcowOptions::new(block_size))
        .map(|_| ())
        .expect_err("opened");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    assert!(
        msg.contains(path.to_str().unwrap()),
        "path not named: {msg}"
    );
    (err, msg)
}

#[test]
fn what_is_not_a_qcow2_image_is_refused_clearly() {
    let image = Image::create(MIB, "");

    let raw = image.file("disk.raw");
    fs::write(&raw, pattern(MIB as usize, 1)).unwrap();
    let (err, msg) = refusal(&raw, 512);
    assert!(matches!(err, QcowError::NotQcow2 { .. }), "{err:?}");
    assert!(
        msg.contains("not a qcow2 image") && msg.contains("raw image"),
        "{msg}"
    );
    // A raw image of zeros, as qemu-img makes them.
    let zeros = image.file("zeros.raw");
    qemu_img(&["create", "-q", "-f", "raw", zeros.to_str().unwrap(), "1M"]);
    assert!(refusal(&zeros, 512).1.contains("raw image"));

    let missing = image.file("missing.qcow2");
    let (err, msg) = refusal(&missing, 512);
    assert!(matches!(err, QcowError::NotFound(_)), "{err:?}");
    assert!(msg.contains("does not exist"), "{msg}");

    let empty = image.file("empty");
    fs::write(&empty, b"").unwrap();
    assert!(refusal(&empty, 512).1.contains("empty file"));

    let vmdk = image.file("disk.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", vmdk.to_str().unwrap(), "1M"]);
    assert!(refusal(&vmdk, 512).1.contains("VMDK"));

    let (err, msg) = refusal(image.dir.path(), 512);
    assert!(
        matches!(
            err,
            QcowError::UnsupportedType {
                kind: "directory",
                ..
            }
        ),
        "{msg}"
    );

    // A qcow2 header cut short.
    let short = image.file("short.qcow2");
    fs::write(&short, &fs::read(&image.path).unwrap()[..20]).unwrap();
    assert!(refusal(&short, 512).1.contains("too short"));

    // A virtual size that is not a whole number of blocks.
    let odd = image.file("odd.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", odd.to_str().unwrap(), "5k"]);
    let (err, msg) = refusal(&odd, 4096);
    assert!(
        matches!(err, QcowError::UnusableSize { size: 5120, .. }),
        "{msg}"
    );
    assert_eq!(image.open(512).num_blocks(), MIB / 512);

    assert!(matches!(
        QcowDevice::open(&image.path, QcowOptions::new(1000)),
        Err(QcowError::InvalidBlockSize(1000))
    ));
}

#[test]
fn requests_beyond_the_end_are_errors_not_panics() {
    let image = Image::create(MIB, "");
    let dev = image.open(512);
    let end = dev.num_blocks();
    let mut buf = vec![0u8; 1024];
    for lba in [end, end - 1, end + 1, u64::MAX, u64::MAX - 1] {
        assert_eq!(
            dev.read(lba, &mut buf),
            Err(BlockError::OutOfRange),
            "read at {lba}"
        );
        assert_eq!(
            dev.write(lba, &buf),
            Err(BlockError::OutOfRange),
            "write at {lba}"
        );
    }
    // A buffer that is not whole blocks.
    assert_eq!(dev.read(0, &mut buf[..100]), Err(BlockError::OutOfRange));
    assert_eq!(dev.write(0, &buf[..513]), Err(BlockError::OutOfRange));
    for extent in [
        Extent::new(end, 1),
        Extent::new(0, end + 1),
        Extent::new(u64::MAX, 2),
    ] {
        assert_eq!(dev.unmap(extent), Err(BlockError::OutOfRange), "{extent:?}");
        assert_eq!(
            dev.write_zeroes(extent),
            Err(BlockError::OutOfRange),
            "{extent:?}"
        );
    }
    assert_eq!(dev.resize(0), Err(BlockError::OutOfRange));
    assert_eq!(dev.resize(u64::MAX), Err(BlockError::OutOfRange));
    // Nothing of that reached the image.
    dev.read(end - 2, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    drop(dev);
    image.check();
    assert_eq!(image.virtual_size(), MIB);
}

/// The conformance check of `scsi_emu::testing` on qcow2 images that
/// `qemu-img` made, a fresh one per case; afterwards `qemu-img check`
/// must find every image clean.
#[test]
fn qcow_device_passes_the_device_check() {
    use scsi_emu::testing::{CheckOptions, check_device};
    let images = std::sync::Mutex::new(Vec::new());
    check_device(
        || {
            let image = Image::create(128 * KIB, "cluster_size=4096");
            let device = image.open(512);
            images.lock().unwrap().push(image);
            device
        },
        CheckOptions::default(),
    );
    let images = images.into_inner().unwrap();
    assert!(!images.is_empty());
    for image in &images {
        image.check();
    }
}
