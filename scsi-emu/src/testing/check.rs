//! The conformance check: random command sequences against a device
//! served through a [`TestLun`], compared with a model of its medium.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use scsi_sense_codes::{AdditionalSense, SenseKey};

use super::lun::TestLun;
use super::model::{Candidate, Model};
use super::options::TestLunOptions;
use super::outcome::Outcome;
use super::request::Request;
use super::step::{Io, Lba, Step, steps};
use crate::{AsyncBlockDevice, BlockDevice, DeviceCapabilities};

/// How much [`check_device`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Random sequences to run, each on a fresh device.
    pub cases: u32,
    /// The most steps in one sequence.
    pub max_steps: usize,
    /// Blocks from the start the steps address (besides the last few
    /// blocks of the device).
    pub window: u64,
    /// Whether to resize the device (a device that refuses is fine: the
    /// check then only sees that its size stays).
    pub resize: bool,
    /// How each device is served.
    pub lun: TestLunOptions,
    /// The seed of the random sequences; `None` takes a new one each run
    /// (a failure names it, so the run can be repeated).
    pub seed: Option<u64>,
}

impl Default for CheckOptions {
    /// 32 sequences of up to 24 steps on the first 32 blocks, with resizes:
    /// a few seconds for a RAM or file device.
    fn default() -> Self {
        CheckOptions {
            cases: 32,
            max_steps: 24,
            window: 32,
            resize: true,
            lun: TestLunOptions::default().timeout(std::time::Duration::from_secs(5)),
            seed: None,
        }
    }
}

impl CheckOptions {
    /// These options with `cases` sequences.
    #[must_use]
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }

    /// These options with the random sequences of `seed` (as a failure
    /// reports it).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// These options with or without resizes.
    #[must_use]
    pub fn resize(mut self, resize: bool) -> Self {
        self.resize = resize;
        self
    }
}

/// A device that failed the check: the shortest failing sequence found
/// (numbered steps as sent) and what disagreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    message: String,
}

impl CheckFailure {
    /// The report: the steps, then which command and LBA disagreed with
    /// the model, and how.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckFailure {}

/// Check a [`BlockDevice`] against a model of its medium, through the
/// real emulator and serving loop ([`TestLun`]); `make` builds a fresh
/// device for each sequence. Panics with a shrunk counterexample on
/// failure; [`try_check_device`] returns it.
///
/// Each sequence mixes READ, WRITE (with and without FUA), several
/// overlapping READs and WRITEs in flight at once, SYNCHRONIZE CACHE,
/// UNMAP, WRITE SAME (with UNMAP for zeros), COMPARE AND WRITE (matching
/// and not), commands past the end of the device, and resizes; every READ
/// and a final read of every block touched are compared with the model.
/// What the device declares is held against it: unmapped blocks must read
/// as zeros when it declares `unmap_reads_zeroes` (else zeros or their
/// old data), a read-only device must refuse every write, a device that
/// reports provisioning must call every block holding written data
/// mapped, and READ
/// CAPACITY and the caching mode page must show the geometry, LBPME/LBPRZ
/// and the write cache it declares. Blocks never written may hold
/// anything; overlapping writes in flight together may leave any of their
/// data in each block, and a READ in flight with WRITEs of its blocks may
/// see any mix of their data and the old.
///
/// ```
/// use scsi_emu::testing::{CheckOptions, check_device};
/// # use scsi_emu::{BlockDevice, BlockError};
/// # use std::sync::Mutex;
/// # struct Ram(Mutex<Vec<u8>>);
/// # impl BlockDevice for Ram {
/// #     fn block_size(&self) -> u32 { 512 }
/// #     fn num_blocks(&self) -> u64 { 64 }
/// #     fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
/// #         let at = lba as usize * 512;
/// #         buf.copy_from_slice(&self.0.lock().unwrap()[at..at + buf.len()]);
/// #         Ok(())
/// #     }
/// #     fn write(&self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
/// #         let at = lba as usize * 512;
/// #         self.0.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
/// #         Ok(())
/// #     }
/// # }
///
/// // A fresh device for each sequence.
/// check_device(|| Ram(Mutex::new(vec![0; 64 * 512])), CheckOptions::default());
/// ```
pub fn check_device<D, F>(make: F, options: CheckOptions)
where
    D: BlockDevice + 'static,
    F: Fn() -> D,
{
    if let Err(failure) = try_check_device(make, options) {
        panic!("{failure}");
    }
}

/// [`check_device`], returning the failure instead of panicking.
pub fn try_check_device<D, F>(make: F, options: CheckOptions) -> Result<(), CheckFailure>
where
    D: BlockDevice + 'static,
    F: Fn() -> D,
{
    run(&|| TestLun::with_options(make(), options.lun), &options)
}

/// [`check_device`] for an [`AsyncBlockDevice`], served through
/// [`AsyncEmulator`](crate::AsyncEmulator).
pub fn check_async_device<D, F>(make: F, options: CheckOptions)
where
    D: AsyncBlockDevice,
    F: Fn() -> D,
{
    if let Err(failure) = try_check_async_device(make, options) {
        panic!("{failure}");
    }
}

/// [`check_async_device`], returning the failure instead of panicking.
pub fn try_check_async_device<D, F>(make: F, options: CheckOptions) -> Result<(), CheckFailure>
where
    D: AsyncBlockDevice,
    F: Fn() -> D,
{
    run(
        &|| TestLun::async_with_options(make(), options.lun),
        &options,
    )
}

type Start<'a> = dyn Fn() -> io::Result<TestLun> + 'a;

fn run(start: &Start<'_>, options: &CheckOptions) -> Result<(), CheckFailure> {
    let fail = |message: String| CheckFailure { message };
    let lun = start().map_err(|e| fail(format!("could not serve the device: {e}")))?;
    let window = options.window.min(lun.num_blocks()).max(1);
    drop(lun);
    let seed = options.seed.unwrap_or_else(fresh_seed);
    let mut bytes = [0u8; 32];
    let mut x = seed;
    for chunk in bytes.chunks_mut(8) {
        x = splitmix(x);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: options.cases,
            // A device's author runs this in their crate: no files left there.
            failure_persistence: None,
            max_shrink_iters: 2048,
            // A failure that depends on timing may not come back while
            // shrinking: do not try for ever.
            max_shrink_time: 30_000,
            ..Config::default()
        },
        rng,
    );
    let result = runner.run(&steps(window, options.max_steps), |steps| {
        Case::run(start, &steps, options).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, _)) => Err(fail(format!(
            "device check failed (seed {seed:#x}: CheckOptions::seed repeats the run); \
             the shortest failing sequence found:\n{reason}"
        ))),
        Err(TestError::Abort(reason)) => Err(fail(format!("device check gave up: {reason}"))),
    }
}

/// What a command must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Good,
    Check(SenseKey, AdditionalSense),
    /// Read-only device: DATA PROTECT, whatever the code.
    Protected,
    /// COMPARE AND WRITE on blocks whose contents the model cannot pin.
    GoodOrMiscompare,
}

impl Expect {
    const OUT_OF_RANGE: Expect =
        Expect::Check(SenseKey::IllegalRequest, AdditionalSense::LBA_OUT_OF_RANGE);
    const MISCOMPARE: Expect = Expect::Check(
        SenseKey::Miscompare,
        AdditionalSense::MISCOMPARE_DURING_VERIFY,
    );

    fn met_by(self, outcome: &Outcome) -> bool {
        match self {
            Expect::Good => outcome.is_good(),
            Expect::Check(key, code) => outcome.is_check(key, code),
            Expect::Protected => outcome.sense_key() == Some(SenseKey::DataProtect),
            Expect::GoodOrMiscompare => outcome.is_good() || Expect::MISCOMPARE.met_by(outcome),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Good => f.write_str("GOOD"),
            Expect::Check(key, code) => write!(f, "CHECK CONDITION ({key}, {code})"),
            Expect::Protected => f.write_str("CHECK CONDITION (DATA PROTECT)"),
            Expect::GoodOrMiscompare => f.write_str("GOOD or MISCOMPARE"),
        }
    }
}

/// One sequence on one fresh device.
struct Case<'a> {
    lun: TestLun,
    caps: DeviceCapabilities,
    model: Model,
    /// The steps as sent, for the report.
    trace: Vec<String>,
    options: &'a CheckOptions,
    window: u64,
}

impl Case<'_> {
    fn run(start: &Start<'_>, steps: &[Step], options: &CheckOptions) -> Result<(), String> {
        let lun = start().map_err(|e| format!("could not serve the device: {e}"))?;
        let bs = lun.block_size() as usize;
        let blocks = lun.num_blocks();
        let mut case = Case {
            caps: lun.capabilities(),
            lun,
            model: Model::new(bs, blocks),
            trace: Vec::new(),
            options,
            window: options.window.min(blocks).max(1),
        };
        let result = case.declared().and_then(|()| {
            for (i, step) in steps.iter().enumerate() {
                case.step(i + 1, step)?;
            }
            case.final_read(steps.len() + 1)
        });
        match result {
            Ok(()) => case.lun.shutdown().map_err(|e| e.to_string()),
            Err(why) => {
                let mut report = String::new();
                for line in &case.trace {
                    report.push_str("  ");
                    report.push_str(line);
                    report.push('\n');
                }
                Err(format!("{report}{why}"))
            }
        }
    }

    /// READ CAPACITY and the caching page show what the device declares.
    fn declared(&mut self) -> Result<(), String> {
        let probe = self
            .lun
            .probe()
            .map_err(|e| format!("probing the unit: {e}"))?;
        let mut wrong = Vec::new();
        if !probe.ready.is_good() {
            wrong.push(format!("TEST UNIT READY answered {}", probe.ready));
        }
        if probe.blocks != self.model.blocks || probe.block_size as usize != self.model.block_size {
            wrong.push(format!(
                "READ CAPACITY shows {} blocks of {} bytes, the device has {} of {}",
                probe.blocks, probe.block_size, self.model.blocks, self.model.block_size
            ));
        }
        if probe.lbpme != self.caps.unmap
            || (self.caps.unmap && probe.lbprz != self.caps.unmap_reads_zeroes)
        {
            wrong.push(format!(
                "READ CAPACITY shows LBPME {} LBPRZ {}, the device declares unmap {} unmap_reads_zeroes {}",
                probe.lbpme, probe.lbprz, self.caps.unmap, self.caps.unmap_reads_zeroes
            ));
        }
        if probe.wce != Some(self.caps.write_cache) {
            wrong.push(format!(
                "the caching mode page shows WCE {:?}, the device declares write_cache {}",
                probe.wce, self.caps.write_cache
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("before the first step: {}", wrong.join("; ")))
        }
    }

    fn step(&mut self, n: usize, step: &Step) -> Result<(), String> {
        match step {
            Step::Io(io) => self.io(n, io),
            Step::Together(ios) => self.together(n, ios),
            Step::Flush => {
                let expect = if self.caps.read_only {
                    // Nothing to write back; either answer will do.
                    None
                } else {
                    Some(Expect::Good)
                };
                let outcome = self.send(n, Request::SynchronizeCache, "")?;
                match expect {
                    Some(e) => self.expect(n, &outcome, e),
                    None => Ok(()),
                }
            }
            Step::Unmap(extents) => self.unmap(n, extents),
            Step::WriteSame {
                at,
                blocks,
                fill,
                unmap,
            } => self.write_same(n, *at, *blocks, *fill, *unmap),
            Step::CompareAndWrite {
                at,
                blocks,
                seed,
                miscompare,
            } => self.compare_and_write(n, *at, *blocks, *seed, *miscompare),
            Step::Resize { grow, by } => self.resize(n, *grow, u64::from(*by)),
            Step::WriteCache(on) => {
                if !self.caps.write_cache {
                    return Ok(());
                }
                self.trace.push(format!(
                    "{n}. MODE SELECT: write cache {}",
                    if *on {
                        "on"
                    } else {
                        "off (every write with FUA)"
                    }
                ));
                self.lun
                    .set_write_cache(*on)
                    .map_err(|e| format!("step {n}: {e}"))
            }
        }
    }

    fn io(&mut self, n: usize, io: &Io) -> Result<(), String> {
        match *io {
            Io::Write {
                at,
                blocks,
                seed,
                fua,
            } => {
                let lba = at.resolve(self.model.blocks);
                let (data, written) = self.pattern(n, None, lba, blocks, seed);
                let request = Request::Write { lba, data, fua };
                let note = format!("(data of step {n})");
                let outcome = self.send(n, request, &note)?;
                let expect = self.write_expect(lba, u64::from(blocks));
                self.expect(n, &outcome, expect)?;
                if expect == Expect::Good {
                    for (i, c) in written.into_iter().enumerate() {
                        self.model.set(lba + i as u64, c);
                    }
                }
                Ok(())
            }
            Io::Read { at, blocks } => {
                let lba = at.resolve(self.model.blocks);
                self.read(n, lba, blocks, "")
            }
        }
    }

    /// A READ with nothing else in flight, checked against the model.
    fn read(&mut self, n: usize, lba: u64, blocks: u32, note: &str) -> Result<(), String> {
        let outcome = self.send(n, Request::read(lba, blocks), note)?;
        let expect = self.range_expect(lba, u64::from(blocks));
        self.expect(n, &outcome, expect)?;
        if expect == Expect::Good {
            self.check_data(n, lba, blocks, &outcome.data, &BTreeMap::new())?;
            for (i, block) in outcome.data.chunks(self.model.block_size).enumerate() {
                self.model.settle(lba + i as u64, block, n);
            }
        }
        Ok(())
    }

    /// READs and WRITEs in the ring together: a READ may see a block's
    /// data from before or from any WRITE in flight, or a mix of them byte
    /// by byte (the emulator makes no command atomic against another, and
    /// a page cache copies while another copy runs); afterwards each block
    /// holds the data of the WRITEs that covered it, in the same way.
    fn together(&mut self, n: usize, ios: &[Io]) -> Result<(), String> {
        let mut requests = Vec::new();
        let mut racing: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
        let mut plan = Vec::new();
        for (k, io) in ios.iter().enumerate() {
            match *io {
                Io::Write {
                    at,
                    blocks,
                    seed,
                    fua,
                } => {
                    let lba = at.resolve(self.model.blocks);
                    // Each write of the batch its own data.
                    let (data, written) = self.pattern(n, Some(k), lba, blocks, seed);
                    let expect = self.write_expect(lba, u64::from(blocks));
                    if expect == Expect::Good {
                        for (i, c) in written.into_iter().enumerate() {
                            racing.entry(lba + i as u64).or_default().push(c);
                        }
                    }
                    requests.push(Request::Write { lba, data, fua });
                    plan.push((expect, None));
                }
                Io::Read { at, blocks } => {
                    let lba = at.resolve(self.model.blocks);
                    requests.push(Request::read(lba, blocks));
                    plan.push((
                        self.range_expect(lba, u64::from(blocks)),
                        Some((lba, blocks)),
                    ));
                }
            }
        }
        let bs = self.lun.block_size();
        let names: Vec<String> = requests.iter().map(|r| r.describe(bs)).collect();
        self.trace
            .push(format!("{n}. in flight together: {}", names.join(" | ")));
        let outcomes = self
            .lun
            .run_all(requests)
            .map_err(|e| format!("step {n}: {e}"))?;
        for (((expect, read), outcome), name) in plan.into_iter().zip(&outcomes).zip(&names) {
            if !expect.met_by(outcome) {
                return Err(format!(
                    "step {n}, {name}: expected {expect}, got {outcome}"
                ));
            }
            if let (Expect::Good, Some((lba, blocks))) = (expect, read) {
                self.check_data(n, lba, blocks, &outcome.data, &racing)
                    .map_err(|e| format!("{e} (while the other commands of the step ran)"))?;
            }
        }
        for (lba, candidates) in racing {
            self.model.set_any(lba, candidates);
        }
        Ok(())
    }

    fn unmap(&mut self, n: usize, extents: &[(Lba, u32)]) -> Result<(), String> {
        if !self.caps.unmap {
            return Ok(());
        }
        let end = self.model.blocks;
        let extents: Vec<(u64, u32)> = extents
            .iter()
            .map(|&(at, blocks)| {
                let lba = at.resolve(end);
                (lba, u64::from(blocks).min(end.saturating_sub(lba)) as u32)
            })
            .filter(|&(_, blocks)| blocks > 0)
            .collect();
        if extents.is_empty() {
            return Ok(());
        }
        let outcome = self.send(
            n,
            Request::Unmap {
                extents: extents.clone(),
            },
            "",
        )?;
        let expect = if self.caps.read_only {
            Expect::Protected
        } else {
            Expect::Good
        };
        self.expect(n, &outcome, expect)?;
        if expect == Expect::Good {
            let why = if self.caps.unmap_reads_zeroes {
                format!("unmapped by step {n}, the device declares unmap_reads_zeroes")
            } else {
                format!("unmapped by step {n}")
            };
            for (lba, blocks) in extents {
                for b in lba..lba + u64::from(blocks) {
                    self.model.unmap(b, self.caps.unmap_reads_zeroes, &why);
                }
            }
        }
        Ok(())
    }

    fn write_same(
        &mut self,
        n: usize,
        at: Lba,
        blocks: u32,
        fill: u8,
        unmap: bool,
    ) -> Result<(), String> {
        let lba = at.resolve(self.model.blocks);
        let block = if fill == 0 {
            Candidate::new(
                &vec![0; self.model.block_size],
                format!("zeros (WRITE SAME of step {n})"),
            )
        } else {
            let (_, mut one) = self.pattern(n, None, lba, 1, fill);
            one.remove(0)
        };
        self.model.sent(&block);
        let request = Request::WriteSame {
            lba,
            blocks,
            block: block.bytes.to_vec(),
            unmap: unmap && fill == 0 && self.caps.unmap,
        };
        let outcome = self.send(n, request, "")?;
        let expect = self.write_expect(lba, u64::from(blocks));
        self.expect(n, &outcome, expect)?;
        if expect == Expect::Good {
            for b in lba..lba + u64::from(blocks) {
                self.model.set(b, block.clone());
            }
        }
        Ok(())
    }

    fn compare_and_write(
        &mut self,
        n: usize,
        at: Lba,
        blocks: u8,
        seed: u8,
        miscompare: Option<u16>,
    ) -> Result<(), String> {
        if self.caps.read_only {
            return Ok(());
        }
        let lba = at.resolve(self.model.blocks);
        let bs = self.model.block_size;
        let len = usize::from(blocks) * bs;
        let in_range = self.range_expect(lba, u64::from(blocks)) == Expect::Good;
        let mut compare = vec![0u8; len];
        if in_range {
            // Compare with what the blocks hold: read them first.
            self.read(n, lba, u32::from(blocks), "(for the compare)")?;
            for i in 0..u64::from(blocks) {
                let at = i as usize * bs;
                // Unknown or drifting: zeros, and either answer will do.
                if let Some(c) = self.model.known(lba + i) {
                    compare[at..at + bs].copy_from_slice(&c.bytes);
                }
            }
        }
        let uncertain = (lba..lba + u64::from(blocks)).any(|b| self.model.uncertain(b));
        let note = match miscompare {
            Some(at) => {
                let at = usize::from(at) % len;
                compare[at] ^= 0xA5;
                format!("(compare: the blocks' data with byte {at} changed)")
            }
            None => "(compare: the blocks' data)".to_owned(),
        };
        let (write, written) = self.pattern(n, None, lba, u32::from(blocks), seed);
        let request = Request::CompareAndWrite {
            lba,
            compare,
            write,
        };
        let outcome = self.send(n, request, &note)?;
        let expect = if !in_range {
            Expect::OUT_OF_RANGE
        } else if uncertain {
            Expect::GoodOrMiscompare
        } else if miscompare.is_some() {
            Expect::MISCOMPARE
        } else {
            Expect::Good
        };
        self.expect(n, &outcome, expect)?;
        if outcome.is_good() {
            for (i, c) in written.into_iter().enumerate() {
                self.model.set(lba + i as u64, c);
            }
        }
        Ok(())
    }

    fn resize(&mut self, n: usize, grow: bool, by: u64) -> Result<(), String> {
        if !self.options.resize {
            return Ok(());
        }
        let old = self.model.blocks;
        let new = if grow || old <= by + 8 {
            old + by
        } else {
            old - by
        };
        let name = format!("{n}. resize to {new} blocks");
        match self.lun.resize(new) {
            Err(e) => {
                self.trace.push(format!("{name}: refused ({e})"));
                let now = self.lun.num_blocks();
                if now != old {
                    return Err(format!(
                        "step {n}: the device refused to resize ({e}) but now has {now} blocks, not {old}"
                    ));
                }
                Ok(())
            }
            Ok(()) => {
                self.trace.push(name);
                self.model
                    .resize(new, &format!("blocks that came with step {n}"));
                let probe = self
                    .lun
                    .probe()
                    .map_err(|e| format!("step {n}, after the resize: {e}"))?;
                let attention = Expect::Check(
                    SenseKey::UnitAttention,
                    AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
                );
                if !attention.met_by(&probe.ready) {
                    return Err(format!(
                        "step {n}: the next command after the resize got {}, not {attention}",
                        probe.ready
                    ));
                }
                if probe.blocks != new || self.lun.num_blocks() != new {
                    return Err(format!(
                        "step {n}: after resizing to {new} blocks, READ CAPACITY shows {} and the device has {}",
                        probe.blocks,
                        self.lun.num_blocks()
                    ));
                }
                Ok(())
            }
        }
    }

    /// Read every block the steps may have touched and compare.
    fn final_read(&mut self, n: usize) -> Result<(), String> {
        let end = self.model.blocks;
        let mut lbas: Vec<u64> = (0..self.window.min(end)).collect();
        lbas.extend(end.saturating_sub(4)..end);
        lbas.extend(self.model.tracked());
        lbas.sort_unstable();
        lbas.dedup();
        let mut runs: Vec<(u64, u32)> = Vec::new();
        for lba in lbas {
            match runs.last_mut() {
                Some((start, len)) if *start + u64::from(*len) == lba && *len < 16 => *len += 1,
                _ => runs.push((lba, 1)),
            }
        }
        self.trace
            .push(format!("{n}. final read of every block touched"));
        for (lba, blocks) in runs {
            let name = Request::read(lba, blocks).describe(self.lun.block_size());
            let outcome = self
                .lun
                .run(Request::read(lba, blocks))
                .map_err(|e| format!("final read, step {n}: {e}"))?;
            if !outcome.is_good() {
                return Err(format!("final read, {name}: expected GOOD, got {outcome}"));
            }
            self.check_data(n, lba, blocks, &outcome.data, &BTreeMap::new())
                .map_err(|e| format!("final read, {e}"))?;
        }
        if self.caps.lba_status {
            self.mapped(n)?;
        }
        Ok(())
    }

    /// A device that reports provisioning (GET LBA STATUS) reports every
    /// block holding written data as mapped.
    fn mapped(&mut self, n: usize) -> Result<(), String> {
        let written: Vec<u64> = self
            .model
            .tracked()
            .into_iter()
            .filter(|&lba| self.model.stored(lba))
            .collect();
        if written.is_empty() {
            return Ok(());
        }
        self.trace.push(format!(
            "{n}. GET LBA STATUS of every block holding written data"
        ));
        for lba in written {
            match self.lun.is_mapped(lba) {
                Ok(Some(true)) => {}
                Ok(other) => {
                    let said = match other {
                        Some(false) => "deallocated",
                        _ => "neither mapped nor deallocated",
                    };
                    return Err(format!(
                        "step {n}, GET LBA STATUS LBA {lba}: {said}, but it holds written data \
                         (the device declares lba_status)"
                    ));
                }
                Err(e) => return Err(format!("step {n}: {e}")),
            }
        }
        Ok(())
    }

    /// Send `request` alone and wait; the trace gets its line first.
    fn send(&mut self, n: usize, request: Request, note: &str) -> Result<Outcome, String> {
        let name = request.describe(self.lun.block_size());
        let line = if note.is_empty() {
            format!("{n}. {name}")
        } else {
            format!("{n}. {name} {note}")
        };
        self.trace.push(line);
        self.lun.run(request).map_err(|e| format!("step {n}: {e}"))
    }

    fn expect(&self, n: usize, outcome: &Outcome, expect: Expect) -> Result<(), String> {
        if expect.met_by(outcome) {
            return Ok(());
        }
        // The command as the trace shows it, without its step number.
        let line = self.trace.last().map_or("", |l| l.as_str());
        let name = line.split_once(". ").map_or(line, |(_, name)| name);
        Err(format!(
            "step {n}, {name}: expected {expect}, got {outcome}"
        ))
    }

    fn check_data(
        &self,
        n: usize,
        lba: u64,
        blocks: u32,
        data: &[u8],
        racing: &BTreeMap<u64, Vec<Candidate>>,
    ) -> Result<(), String> {
        let bs = self.model.block_size;
        let name = Request::read(lba, blocks).describe(self.lun.block_size());
        if data.len() != blocks as usize * bs {
            return Err(format!(
                "step {n}, {name}: {} bytes of data, not {}",
                data.len(),
                blocks as usize * bs
            ));
        }
        for (i, block) in data.chunks(bs).enumerate() {
            let at = lba + i as u64;
            let extra = racing.get(&at).map_or(&[][..], |c| c.as_slice());
            self.model
                .check(at, block, extra)
                .map_err(|m| format!("step {n}, {name}: {m}"))?;
        }
        Ok(())
    }

    /// What a WRITE of `blocks` at `lba` must end with.
    fn write_expect(&self, lba: u64, blocks: u64) -> Expect {
        if self.caps.read_only {
            Expect::Protected
        } else {
            self.range_expect(lba, blocks)
        }
    }

    fn range_expect(&self, lba: u64, blocks: u64) -> Expect {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.model.blocks => Expect::Good,
            _ => Expect::OUT_OF_RANGE,
        }
    }

    /// Data for `blocks` blocks at `lba`, different for every step,
    /// command of a step (`part`), block and seed, with a label per block;
    /// remembered as sent.
    fn pattern(
        &mut self,
        n: usize,
        part: Option<usize>,
        lba: u64,
        blocks: u32,
        seed: u8,
    ) -> (Vec<u8>, Vec<Candidate>) {
        let bs = self.model.block_size;
        let mut data = Vec::with_capacity(blocks as usize * bs);
        let mut labels = Vec::new();
        let who = match part {
            None => format!("step {n}"),
            Some(k) => format!("command {} of step {n}", k + 1),
        };
        let salt = part.map_or(0, |k| k as u64 + 1) << 32;
        for i in 0..u64::from(blocks) {
            let mut x = (n as u64) << 40 ^ salt ^ (lba + i) << 8 ^ u64::from(seed);
            let start = data.len();
            while data.len() < start + bs {
                x = splitmix(x);
                data.extend_from_slice(&x.to_le_bytes());
            }
            data.truncate(start + bs);
            let c = Candidate::stored(
                &data[start..],
                format!("the data {who} wrote at LBA {}", lba + i),
            );
            self.model.sent(&c);
            labels.push(c);
        }
        (data, labels)
    }
}

/// A seed that differs from run to run.
fn fresh_seed() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one(now)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
