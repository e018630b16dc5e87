//! SANITIZE (SBC-4 5.30): make every block's old contents unrecoverable.
//!
//! OVERWRITE writes an initialization pattern over the whole medium, as
//! many passes as asked; BLOCK ERASE unmaps the whole medium (offered only
//! when unmapped blocks read as zeros, so nothing old can be read back);
//! EXIT FAILURE MODE leaves the failure a sanitize left behind.
//!
//! Once the CDB and the parameter list are validated, the sanitize runs
//! on a thread of its own: with IMMED the command completes at once, and
//! the initiator polls REQUEST SENSE for the progress. While it runs the
//! unit answers almost everything NOT READY, SANITIZE IN PROGRESS (see
//! [`SanitizeState`](crate::sanitize_state::SanitizeState)) and the
//! sanitize holds the range lock of the whole medium, so no write that
//! was admitted just before it can land in the middle.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::Sense;

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::cdb::{Cdb, invalid_field, invalid_parameter};
use crate::data_buffer::DataBuffer;
use crate::extent::Extent;
use crate::lun::Lun;
use crate::opcode::sanitize_action;
use crate::response::ScsiResponse;
use crate::sanitize_state::sanitize_failed;

/// The most an OVERWRITE writes per device call: one buffer this size is
/// filled with the pattern and reused for the whole medium.
const OVERWRITE_CHUNK_BYTES: u64 = 1 << 20;

/// The OVERWRITE parameter list header: flags and count, a reserved
/// byte, INITIALIZATION PATTERN LENGTH.
const OVERWRITE_HEADER_LEN: usize = 4;

/// What a SANITIZE asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// OVERWRITE with a parameter list of this many bytes (more than the
    /// header: checked).
    Overwrite {
        parameter_list_length: usize,
    },
    BlockErase,
    ExitFailureMode,
}

/// A decoded SANITIZE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sanitize {
    /// IMMED: complete once the sanitize has started.
    immediate: bool,
    /// AUSE: a failure of this sanitize may be left with EXIT FAILURE MODE.
    ause: bool,
    action: Action,
}

impl Sanitize {
    const IMMED: u8 = 0x80;
    /// ZNR only means something on a zoned device, which this is not: it
    /// is refused like a reserved bit.
    const ZNR: u8 = 0x40;
    const AUSE: u8 = 0x20;

    pub(crate) fn decode(cdb: &Cdb<'_>) -> Result<Self, Sense> {
        let flags = cdb.byte(1);
        if flags & Self::ZNR != 0 {
            return Err(invalid_field(1, 6));
        }
        // Bytes 2-6 are reserved; libiscsi checks that they are refused.
        if let Some(byte) = (2..=6u16).find(|&b| cdb.byte(usize::from(b)) != 0) {
            return Err(invalid_field(byte, 7));
        }
        let parameter_list_length = usize::from(cdb.be16(7));
        let action = match cdb.service_action() {
            sanitize_action::OVERWRITE if parameter_list_length <= OVERWRITE_HEADER_LEN => {
                return Err(invalid_field(7, 7));
            }
            sanitize_action::OVERWRITE => Action::Overwrite {
                parameter_list_length,
            },
            // BLOCK ERASE and EXIT FAILURE MODE take no parameters.
            _ if parameter_list_length != 0 => return Err(invalid_field(7, 7)),
            sanitize_action::BLOCK_ERASE => Action::BlockErase,
            // The table only routes supported service actions here.
            _ => Action::ExitFailureMode,
        };
        Ok(Sanitize {
            immediate: flags & Self::IMMED != 0,
            ause: flags & Self::AUSE != 0,
            action,
        })
    }
}

/// How the medium is sanitized, once validated.
#[derive(Debug)]
enum Method {
    Overwrite {
        /// One logical block of the pattern, repeated and cut at the
        /// block's end.
        block: Vec<u8>,
        invert: bool,
        passes: u8,
    },
    BlockErase,
}

impl Method {
    /// Units of work on a medium of `blocks` blocks, for the progress
    /// indication: blocks written or unmapped.
    fn work(&self, blocks: u64) -> u64 {
        match self {
            Method::Overwrite { passes, .. } => blocks.saturating_mul(u64::from(*passes)),
            Method::BlockErase => blocks,
        }
    }
}

/// The OVERWRITE parameter list: INVERT, TEST (zero), OVERWRITE COUNT,
/// INITIALIZATION PATTERN LENGTH and the pattern.
fn overwrite_method(block_size: usize, parameters: &[u8]) -> Result<Method, Sense> {
    const INVERT: u8 = 0x80;
    const TEST: u8 = 0x60;
    const OVERWRITE_COUNT: u8 = 0x1F;
    let flags = parameters[0];
    if flags & TEST != 0 {
        return Err(invalid_parameter(0, 6));
    }
    let passes = flags & OVERWRITE_COUNT;
    if passes == 0 {
        return Err(invalid_parameter(0, 4));
    }
    let pattern_length = usize::from(BigEndian::read_u16(&parameters[2..4]));
    let pattern = &parameters[OVERWRITE_HEADER_LEN..];
    if pattern_length == 0 || pattern_length > block_size || pattern_length != pattern.len() {
        return Err(invalid_parameter(2, 7));
    }
    Ok(Method::Overwrite {
        block: pattern.iter().cycle().take(block_size).copied().collect(),
        invert: flags & INVERT != 0,
        passes,
    })
}

/// Validate `cmd` against the unit and its parameter list, then start the
/// sanitize; the response once started (IMMED) or once done.
pub(crate) fn sanitize<D: BlockDevice + 'static>(
    lun: &Arc<Lun<D>>,
    cmd: &Sanitize,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let block_size = lun.device().block_size() as usize;
    let method = match cmd.action {
        Action::ExitFailureMode => {
            return match lun.sanitize.exit_failure_mode() {
                Ok(()) => ScsiResponse::good(),
                Err(sense) => sense.into(),
            };
        }
        Action::BlockErase => Method::BlockErase,
        Action::Overwrite {
            parameter_list_length,
        } => {
            // A pattern longer than a block has nowhere to go; libiscsi
            // expects the length field to be blamed.
            if parameter_list_length > block_size + OVERWRITE_HEADER_LEN
                || data.len() < parameter_list_length
            {
                return invalid_field(7, 7).into();
            }
            let mut parameters = vec![0u8; parameter_list_length];
            data.read_at(0, &mut parameters);
            match overwrite_method(block_size, &parameters) {
                Ok(method) => method,
                Err(sense) => return sense.into(),
            }
        }
    };
    let blocks = lun.device().num_blocks();
    if let Err(sense) = lun.sanitize.begin(method.work(blocks), cmd.ause) {
        return sense.into();
    }
    let job = Arc::new(SanitizeJob {
        lun: lun.clone(),
        method,
        ause: cmd.ause,
    });
    let worker = job.clone();
    let succeeded = match std::thread::Builder::new()
        .name("sanitize".into())
        .spawn(move || worker.run())
    {
        Ok(_) if cmd.immediate => return ScsiResponse::good(),
        Ok(thread) => thread.join().unwrap_or(false),
        // No thread to be had: sanitize on this one, IMMED or not.
        Err(err) => {
            log::warn!("no sanitize thread ({err}); sanitizing on the command's own");
            job.run()
        }
    };
    if succeeded {
        ScsiResponse::good()
    } else {
        sanitize_failed().into()
    }
}

/// A validated sanitize and the unit it runs on.
struct SanitizeJob<D> {
    lun: Arc<Lun<D>>,
    method: Method,
    ause: bool,
}

impl<D: BlockDevice> SanitizeJob<D> {
    /// Sanitize the whole medium and leave the unit idle, or in failure
    /// mode when the device failed (or panicked); whether it succeeded.
    fn run(&self) -> bool {
        let device = self.lun.device();
        let blocks = device.num_blocks();
        let outcome = {
            let _whole_medium = self.lun.locks.lock(0, blocks);
            catch_unwind(AssertUnwindSafe(|| match &self.method {
                Method::Overwrite {
                    block,
                    invert,
                    passes,
                } => self.overwrite(blocks, block, *invert, *passes),
                Method::BlockErase => self.block_erase(blocks),
            }))
        };
        let succeeded = matches!(outcome, Ok(Ok(())));
        match outcome {
            Ok(Ok(())) => log::info!("sanitize of {blocks} blocks done"),
            Ok(Err(err)) => log::warn!("sanitize failed: {err}"),
            Err(_) => log::warn!("sanitize failed: the device panicked"),
        }
        self.lun.sanitize.finish(succeeded, self.ause);
        succeeded
    }

    /// Write `passes` passes of `block` over every block. With `invert`
    /// the pattern is inverted between passes, starting so that the last
    /// pass writes the pattern itself (SBC-4: an even count starts with
    /// the inversion).
    fn overwrite(
        &self,
        blocks: u64,
        block: &[u8],
        invert: bool,
        passes: u8,
    ) -> Result<(), BlockError> {
        let device = self.lun.device();
        let block_size = block.len();
        let chunk_blocks =
            (OVERWRITE_CHUNK_BYTES / block_size.max(1) as u64).clamp(1, blocks.max(1));
        let mut chunk = block.repeat(chunk_blocks as usize);
        if invert && passes % 2 == 0 {
            invert_bytes(&mut chunk);
        }
        let flags = self.lun.write_flags(false);
        let mut done = 0;
        for pass in 0..passes {
            if pass > 0 && invert {
                invert_bytes(&mut chunk);
            }
            let mut lba = 0;
            while lba < blocks {
                let n = chunk_blocks.min(blocks - lba);
                device.write_vectored(lba, &[&chunk[..n as usize * block_size]], flags)?;
                lba += n;
                done += n;
                self.lun.sanitize.advance(done);
            }
        }
        device.flush()
    }

    /// Unmap every block, in pieces no larger than the MAXIMUM UNMAP LBA
    /// COUNT the unit reports.
    fn block_erase(&self, blocks: u64) -> Result<(), BlockError> {
        let device = self.lun.device();
        let piece = self.lun.limits.max_unmap.max(1);
        let mut lba = 0;
        while lba < blocks {
            let n = piece.min(blocks - lba);
            device.unmap(Extent::new(lba, n))?;
            lba += n;
            self.lun.sanitize.advance(lba);
        }
        device.flush()
    }
}

fn invert_bytes(bytes: &mut [u8]) {
    bytes.iter_mut().for_each(|b| *b = !*b);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, mpsc};

    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;
    use crate::{AsyncEmulator, DeviceFilter, WriteFlags};

    const BS: usize = 512;
    const OVERWRITE: u8 = 0x01;
    const BLOCK_ERASE: u8 = 0x02;
    const EXIT_FAILURE_MODE: u8 = 0x1F;
    const IMMED: u8 = 0x80;
    const AUSE: u8 = 0x20;
    const TUR: [u8; 6] = [0; 6];

    fn sanitize_cdb(byte1: u8, parameter_list_length: u16) -> Vec<u8> {
        let [hi, lo] = parameter_list_length.to_be_bytes();
        vec![0x48, byte1, 0, 0, 0, 0, 0, hi, lo, 0]
    }

    /// An OVERWRITE parameter list: `flags` (INVERT, TEST, OVERWRITE
    /// COUNT), then the pattern with its length.
    fn overwrite_list(flags: u8, pattern: &[u8]) -> Vec<u8> {
        let mut list = vec![flags, 0];
        list.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
        list.extend_from_slice(pattern);
        list
    }

    /// OVERWRITE with `list` as its whole parameter list.
    fn overwrite<D: BlockDevice + 'static>(
        emu: &Emulator<D>,
        byte1: u8,
        mut list: Vec<u8>,
    ) -> ScsiResponse {
        let cdb = sanitize_cdb(byte1 | OVERWRITE, list.len() as u16);
        emu.execute(&cdb, &mut list)
    }

    #[track_caller]
    fn assert_invalid_parameter(resp: &ScsiResponse, byte: u16, bit: u8) {
        assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST);
        let fp = resp.sense.unwrap().field_pointer.unwrap();
        assert_eq!((fp.in_cdb, fp.byte, fp.bit), (false, byte, Some(bit)));
    }

    #[track_caller]
    fn assert_sanitizing(resp: &ScsiResponse, progress: u16) {
        assert_check(
            resp,
            SenseKey::NotReady,
            AdditionalSense::LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
        );
        assert_eq!(resp.sense.unwrap().progress, Some(progress), "{resp:?}");
    }

    #[track_caller]
    fn assert_sanitize_failed(resp: &ScsiResponse) {
        assert_check(
            resp,
            SenseKey::MediumError,
            AdditionalSense::SANITIZE_COMMAND_FAILED,
        );
    }

    #[test]
    fn cdb_fields_are_checked_before_anything_runs() {
        let emu = emulator(VecDevice::new(BS as u32, 16).with_unmap());
        let mut none = Vec::<u8>::new();
        // OVERWRITE needs more than the 4-byte header.
        for length in 0..=4 {
            let mut data = vec![0u8; 8];
            assert_invalid_field(
                &emu.execute(&sanitize_cdb(OVERWRITE, length), &mut data),
                7,
                7,
            );
        }
        // BLOCK ERASE and EXIT FAILURE MODE take no parameter list.
        for sa in [BLOCK_ERASE, EXIT_FAILURE_MODE] {
            let mut data = vec![0u8; 8];
            assert_invalid_field(&emu.execute(&sanitize_cdb(sa, 8), &mut data), 7, 7);
        }
        // ZNR (a non-zoned unit) and the reserved bytes.
        assert_invalid_field(
            &emu.execute(&sanitize_cdb(0x40 | BLOCK_ERASE, 0), &mut none),
            1,
            6,
        );
        for byte in 2..=6 {
            let mut cdb = sanitize_cdb(BLOCK_ERASE, 0);
            cdb[byte] = 1;
            assert_invalid_field(&emu.execute(&cdb, &mut none), byte as u16, 7);
        }
        // CRYPTOGRAPHIC ERASE and undefined service actions.
        for sa in [0x00, 0x03, 0x04, 0x1E] {
            assert_invalid_field(&emu.execute(&sanitize_cdb(sa, 0), &mut none), 1, 4);
        }
        assert!(emu.device().calls().is_empty());
    }

    #[test]
    fn block_erase_is_offered_only_when_unmapped_blocks_read_zeroes() {
        let mut none = Vec::<u8>::new();
        for device in [
            VecDevice::new(BS as u32, 16),
            VecDevice::new(BS as u32, 16).with_unmap_keeping_data(),
        ] {
            let emu = emulator(device);
            assert_invalid_field(&emu.execute(&sanitize_cdb(BLOCK_ERASE, 0), &mut none), 1, 4);
            assert_eq!(
                one_command(&emu, BLOCK_ERASE)[1] & 0x07,
                0x01,
                "not supported"
            );
            assert_eq!(one_command(&emu, OVERWRITE)[1] & 0x07, 0x03, "supported");
        }
        let emu = emulator(VecDevice::new(BS as u32, 16).with_unmap());
        for sa in [OVERWRITE, BLOCK_ERASE, EXIT_FAILURE_MODE] {
            let report = one_command(&emu, sa);
            assert_eq!(report[1] & 0x07, 0x03, "{sa:#x} supported");
            assert_eq!(
                report[2..14],
                [
                    0, 10, 0x48, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x04
                ]
            );
        }
        assert_eq!(
            one_command(&emu, 0x03)[1] & 0x07,
            0x01,
            "no CRYPTOGRAPHIC ERASE"
        );
    }

    /// REPORT SUPPORTED OPERATION CODES for SANITIZE with service action `sa`.
    fn one_command(emu: &Emulator<VecDevice>, sa: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let cdb = [0xA3, 0x0C, 0x02, 0x48, 0, sa, 0, 0, 0, 64, 0, 0];
        let resp = emu.execute(&cdb, &mut buf);
        buf.truncate(resp.data_in_len.expect("data-in"));
        buf
    }

    #[test]
    fn overwrite_parameter_list_is_checked() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        // Longer than a block and its header.
        let mut long = vec![0u8; BS + 8];
        assert_invalid_field(
            &emu.execute(&sanitize_cdb(OVERWRITE, BS as u16 + 5), &mut long),
            7,
            7,
        );
        // Less data than announced.
        let mut short = overwrite_list(1, &[0xAA; 4]);
        assert_invalid_field(&emu.execute(&sanitize_cdb(OVERWRITE, 16), &mut short), 7, 7);
        // OVERWRITE COUNT 0, TEST set.
        assert_invalid_parameter(&overwrite(&emu, 0, overwrite_list(0, &[0xAA; BS])), 0, 4);
        assert_invalid_parameter(&overwrite(&emu, 0, overwrite_list(0x21, &[0xAA; 4])), 0, 6);
        // Pattern length 0, beyond a block, or not what the list holds.
        let mut empty = overwrite_list(1, &[]);
        empty.extend_from_slice(&[0; 4]);
        assert_invalid_parameter(&overwrite(&emu, 0, empty), 2, 7);
        let mut beyond = overwrite_list(1, &[0xAA; BS]);
        beyond[2..4].copy_from_slice(&(BS as u16 + 4).to_be_bytes());
        assert_invalid_parameter(&overwrite(&emu, 0, beyond), 2, 7);
        let mut mismatch = overwrite_list(1, &[0xAA; 8]);
        mismatch[3] = 4;
        assert_invalid_parameter(&overwrite(&emu, 0, mismatch), 2, 7);
        assert!(emu.device().calls().is_empty());
        assert_eq!(
            emu.execute(&TUR, &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
    }

    #[test]
    fn overwrite_repeats_the_pattern_in_every_block() {
        let emu = emulator(VecDevice::new(BS as u32, 16));
        for pattern in [vec![1u8, 2, 3], vec![0xAA; BS], pattern(BS / 2, 7)] {
            assert_eq!(
                overwrite(&emu, 0, overwrite_list(1, &pattern)),
                ScsiResponse::good()
            );
            let expected: Vec<u8> = pattern.iter().cycle().take(BS).copied().collect();
            for block in emu.device().contents().chunks(BS) {
                assert_eq!(block, expected);
            }
        }
        // One write of the whole (small) medium and a flush per sanitize.
        assert_eq!(emu.device().calls(), [('w', 0, 16 * BS); 3]);
        assert_eq!(
            emu.device()
                .flushes
                .load(std::sync::atomic::Ordering::SeqCst),
            3
        );
    }

    #[test]
    fn overwrite_writes_at_most_a_mebibyte_at_a_time() {
        // 300 blocks of 4 KiB: 256 blocks, then the 44 left.
        let emu = emulator(VecDevice::new(4096, 300));
        assert_eq!(
            overwrite(&emu, 0, overwrite_list(2, &[0x5A])),
            ScsiResponse::good()
        );
        let pass = [('w', 0, 1 << 20), ('w', 256, 44 * 4096)];
        assert_eq!(emu.device().calls(), [pass, pass].concat());
        assert!(emu.device().contents().iter().all(|&b| b == 0x5A));
    }

    /// A device over a [`VecDevice`] that records the first byte of every
    /// write and, with a gate, stops in every write and unmap until the
    /// test lets it go on.
    struct Watched {
        inner: VecDevice,
        first_bytes: Mutex<Vec<u8>>,
        gate: Option<Gate>,
    }

    /// The device's side of a gate: it says it arrived, then waits.
    struct Gate {
        arrived: mpsc::Sender<()>,
        go_on: Mutex<mpsc::Receiver<()>>,
    }

    /// The test's side: when the device arrived, and letting it go on.
    /// Dropping it opens the gate for good.
    struct GateControl {
        arrived: mpsc::Receiver<()>,
        go_on: mpsc::Sender<()>,
    }

    impl GateControl {
        fn wait_arrival(&self) {
            self.arrived.recv().expect("the device reached the gate");
        }
        fn let_through(&self) {
            self.go_on.send(()).unwrap();
        }
    }

    impl Watched {
        fn new(inner: VecDevice) -> Self {
            Watched {
                inner,
                first_bytes: Mutex::new(Vec::new()),
                gate: None,
            }
        }

        fn gated(inner: VecDevice) -> (Self, GateControl) {
            let (arrived_tx, arrived) = mpsc::channel();
            let (go_on, go_on_rx) = mpsc::channel();
            let device = Watched {
                gate: Some(Gate {
                    arrived: arrived_tx,
                    go_on: Mutex::new(go_on_rx),
                }),
                ..Watched::new(inner)
            };
            (device, GateControl { arrived, go_on })
        }

        fn pass_gate(&self) {
            if let Some(gate) = &self.gate {
                // A test that has let go of its control opens the gate.
                let _ = gate.arrived.send(());
                let _ = gate.go_on.lock().unwrap().recv();
            }
        }
    }

    impl DeviceFilter for Watched {
        type Inner = VecDevice;
        fn inner(&self) -> &VecDevice {
            &self.inner
        }
        fn write_vectored(
            &self,
            lba: u64,
            bufs: &[&[u8]],
            flags: WriteFlags,
        ) -> Result<(), BlockError> {
            self.first_bytes.lock().unwrap().push(bufs[0][0]);
            self.pass_gate();
            BlockDevice::write_vectored(&self.inner, lba, bufs, flags)
        }
        fn unmap(&self, extent: Extent) -> Result<(), BlockError> {
            self.pass_gate();
            BlockDevice::unmap(&self.inner, extent)
        }
    }

    fn watched_emulator(device: Watched) -> Emulator<Watched> {
        let identity = LunIdentity::for_device("SN0001", &device);
        Emulator::new(device, identity)
    }

    #[test]
    fn invert_alternates_passes_and_ends_with_the_pattern() {
        for (flags, first_bytes) in [
            (0x02, vec![0x3C, 0x3C]),
            (0x81, vec![0x3C]),
            (0x82, vec![0xC3, 0x3C]),
            (0x83, vec![0x3C, 0xC3, 0x3C]),
        ] {
            let emu = watched_emulator(Watched::new(VecDevice::new(BS as u32, 8)));
            assert_eq!(
                overwrite(&emu, 0, overwrite_list(flags, &[0x3C])),
                ScsiResponse::good()
            );
            assert_eq!(
                *emu.device().first_bytes.lock().unwrap(),
                first_bytes,
                "{flags:#x}"
            );
            assert!(emu.device().inner.contents().iter().all(|&b| b == 0x3C));
        }
    }

    #[test]
    fn block_erase_unmaps_the_medium_and_reads_return_zeros() {
        let emu = emulator(VecDevice::new(BS as u32, 16).with_unmap().with_lba_status());
        let mut none = Vec::<u8>::new();
        assert_eq!(
            emu.execute(&sanitize_cdb(BLOCK_ERASE, 0), &mut none),
            ScsiResponse::good()
        );
        assert_eq!(emu.device().calls(), [('u', 0, 16 * BS)]);
        let mut read = vec![0xFFu8; 16 * BS];
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 16), &mut read),
            ScsiResponse::data_in(16 * BS)
        );
        assert!(read.iter().all(|&b| b == 0));
        // GET LBA STATUS: one deallocated extent covering the medium.
        let mut status = vec![0u8; 24];
        let gls = [0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0];
        assert_eq!(emu.execute(&gls, &mut status), ScsiResponse::data_in(24));
        assert_eq!(u32::from_be_bytes(status[16..20].try_into().unwrap()), 16);
        assert_eq!(status[20] & 0x0F, 1, "deallocated");
    }

    #[test]
    fn block_erase_unmaps_in_maximum_unmap_pieces() {
        // 2^20 blocks of 512 bytes per UNMAP; a sparse 3 x 2^20-block disk.
        let emu = emulator(VecDevice::geometry(BS as u32, 3 << 20).with_unmap());
        let mut none = Vec::<u8>::new();
        assert_eq!(
            emu.execute(&sanitize_cdb(BLOCK_ERASE, 0), &mut none),
            ScsiResponse::good()
        );
        let piece = (1usize << 20) * BS;
        assert_eq!(
            emu.device().calls(),
            [
                ('u', 0, piece),
                ('u', 1 << 20, piece),
                ('u', 2 << 20, piece)
            ]
        );
    }

    #[test]
    fn read_only_units_refuse_to_sanitize() {
        let emu = emulator(VecDevice::new(BS as u32, 16).with_unmap().read_only());
        for resp in [
            overwrite(&emu, 0, overwrite_list(1, &[0xAA; 4])),
            emu.execute(&sanitize_cdb(BLOCK_ERASE, 0), &mut Vec::<u8>::new()),
        ] {
            assert_check(
                &resp,
                SenseKey::DataProtect,
                AdditionalSense::WRITE_PROTECTED,
            );
        }
        assert!(emu.device().calls().is_empty());
    }

    /// REQUEST SENSE's data, in descriptor format when `descriptor`.
    fn request_sense<D: BlockDevice + 'static>(emu: &Emulator<D>, descriptor: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 32];
        let resp = emu.execute(&[0x03, u8::from(descriptor), 0, 0, 32, 0], &mut buf);
        buf.truncate(resp.data_in_len.expect("REQUEST SENSE returns data"));
        buf
    }

    #[test]
    fn immediate_sanitize_returns_at_once_and_reports_its_progress() {
        let (device, gate) = Watched::gated(VecDevice::new(BS as u32, 16));
        let emu = watched_emulator(device);
        let mut buf = vec![0u8; 4096];
        // Two passes of one write each: the first write is stopped at the
        // gate, so GOOD came before any block was overwritten.
        assert_eq!(
            overwrite(&emu, IMMED, overwrite_list(2, &[0xEE])),
            ScsiResponse::good()
        );
        gate.wait_arrival();
        assert_sanitizing(&emu.execute(&TUR, &mut buf), 0);
        assert_sanitizing(&emu.execute(&rw10(false, 0, 0, 1), &mut buf), 0);
        assert_sanitizing(&emu.execute(&rw10(true, 0, 0, 1), &mut buf), 0);
        assert_sanitizing(&emu.execute(&[0x1B, 0, 0, 0, 1, 0], &mut buf), 0);
        assert_sanitizing(&emu.execute(&[0x1A, 0, 0x3F, 0, 255, 0], &mut buf), 0);
        // A second SANITIZE, of any kind, waits its turn like the rest.
        assert_sanitizing(&overwrite(&emu, 0, overwrite_list(1, &[0xEE])), 0);
        let mut none = Vec::<u8>::new();
        assert_sanitizing(
            &emu.execute(&sanitize_cdb(EXIT_FAILURE_MODE, 0), &mut none),
            0,
        );
        // What the unit says about itself is still answered.
        assert_eq!(
            emu.execute(&[0x12, 0, 0, 0, 36, 0], &mut buf).status,
            ScsiStatus::Good
        );
        let rsoc = [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert_eq!(emu.execute(&rsoc, &mut buf).status, ScsiStatus::Good);
        let tmfs = [0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0];
        assert_eq!(emu.execute(&tmfs, &mut buf).status, ScsiStatus::Good);

        // Half done after the first pass: progress 8000h.
        gate.let_through();
        gate.wait_arrival();
        let fixed = request_sense(&emu, false);
        assert_eq!(
            (fixed[0], fixed[2], fixed[12], fixed[13]),
            (0x70, 0x02, 0x04, 0x1B)
        );
        assert_eq!(fixed[15..18], [0x80, 0x80, 0x00]);
        assert_eq!(
            request_sense(&emu, true),
            [
                0x72, 0x02, 0x04, 0x1B, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0x80, 0x80, 0x00, 0
            ]
        );
        assert_sanitizing(&emu.execute(&TUR, &mut buf), 0x8000);

        // Done: poll as an initiator would, until the unit is ready.
        gate.let_through();
        while emu.execute(&TUR, &mut none) != ScsiResponse::good() {
            std::thread::yield_now();
        }
        assert_eq!(request_sense(&emu, false)[2], 0x00, "NO SENSE");
        assert!(emu.device().inner.contents().iter().all(|&b| b == 0xEE));
    }

    #[test]
    fn waiting_sanitize_answers_when_done() {
        let (device, gate) = Watched::gated(VecDevice::new(BS as u32, 16).with_unmap());
        let emu = Arc::new(watched_emulator(device));
        let sanitizing = {
            let emu = emu.clone();
            std::thread::spawn(move || {
                emu.execute(&sanitize_cdb(BLOCK_ERASE, 0), &mut Vec::<u8>::new())
            })
        };
        gate.wait_arrival();
        let mut buf = vec![0u8; BS];
        assert_sanitizing(&emu.execute(&rw10(false, 0, 0, 1), &mut buf), 0);
        assert!(!sanitizing.is_finished());
        gate.let_through();
        assert_eq!(sanitizing.join().unwrap(), ScsiResponse::good());
        // Answered only once done: the unit is ready at once.
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 1), &mut buf),
            ScsiResponse::data_in(BS)
        );
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn async_fast_paths_are_refused_while_sanitizing() {
        let (device, gate) = Watched::gated(VecDevice::new(BS as u32, 16));
        let identity = LunIdentity::for_device("SN0001", &device);
        let emu = AsyncEmulator::new(Yielding(device), identity).unwrap();
        let run = |cdb: Vec<u8>, data: Vec<u8>| {
            let (done, answer) = mpsc::channel();
            emu.start(Job { cdb, data, done });
            answer.recv().unwrap().0
        };
        let list = overwrite_list(1, &[0x11]);
        let cdb = sanitize_cdb(IMMED | OVERWRITE, list.len() as u16);
        assert_eq!(run(cdb, list), ScsiResponse::good());
        gate.wait_arrival();
        assert_sanitizing(&run(rw10(false, 0, 0, 2), vec![0; 2 * BS]), 0);
        assert_sanitizing(&run(rw16(true, 0, 4, 1), vec![0; BS]), 0);
        assert_sanitizing(&run(vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![]), 0);
        drop(gate);
        while run(TUR.to_vec(), vec![]) != ScsiResponse::good() {
            std::thread::yield_now();
        }
        assert_eq!(
            run(rw10(false, 0, 0, 2), vec![0; 2 * BS]),
            ScsiResponse::data_in(2 * BS)
        );
    }

    #[test]
    fn a_failed_sanitize_leaves_failure_mode_through_exit_or_another_sanitize() {
        let emu = emulator(VecDevice::new(BS as u32, 16).failing(BlockError::Io(EIO)));
        let fail = |healthy: bool| {
            *emu.device().fail.lock().unwrap() = (!healthy).then_some(BlockError::Io(EIO))
        };
        let mut buf = vec![0u8; BS];
        let mut none = Vec::<u8>::new();
        let exit = sanitize_cdb(EXIT_FAILURE_MODE, 0);
        // Nothing to leave yet.
        assert_eq!(emu.execute(&exit, &mut none), ScsiResponse::good());

        // Unrestricted (AUSE): EXIT FAILURE MODE is a way out.
        assert_sanitize_failed(&overwrite(&emu, AUSE, overwrite_list(1, &[0xAA])));
        fail(true);
        assert_sanitize_failed(&emu.execute(&rw10(false, 0, 0, 1), &mut buf));
        assert_sanitize_failed(&emu.execute(&rw10(true, 0, 0, 1), &mut buf));
        assert_eq!(emu.execute(&TUR, &mut none), ScsiResponse::good());
        assert_eq!(
            emu.execute(&[0x12, 0, 0, 0, 36, 0], &mut buf).status,
            ScsiStatus::Good
        );
        let sense = request_sense(&emu, false);
        assert_eq!((sense[2], sense[12], sense[13]), (0x03, 0x31, 0x03));
        assert_eq!(emu.execute(&exit, &mut none), ScsiResponse::good());
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 1), &mut buf),
            ScsiResponse::data_in(BS)
        );

        // Restricted: only a sanitize that completes, itself without AUSE.
        fail(false);
        assert_sanitize_failed(&overwrite(&emu, 0, overwrite_list(1, &[0xAA])));
        fail(true);
        assert_invalid_field(&emu.execute(&exit, &mut none), 1, 4);
        assert_invalid_field(&overwrite(&emu, AUSE, overwrite_list(1, &[0xAA])), 1, 5);
        assert_sanitize_failed(&emu.execute(&rw10(false, 0, 0, 1), &mut buf));
        assert_eq!(
            overwrite(&emu, 0, overwrite_list(1, &[0xAA])),
            ScsiResponse::good()
        );
        assert_eq!(
            emu.execute(&rw10(false, 0, 0, 1), &mut buf),
            ScsiResponse::data_in(BS)
        );
        assert!(buf.iter().all(|&b| b == 0xAA));
        assert_eq!(request_sense(&emu, false)[2], 0x00, "NO SENSE");
    }
}
