//! The emulator: decode a CDB, run it against the device, report status.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use scsi_sense_codes::{AdditionalSense, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::command::{COMMANDS, Command};
use crate::command_spec::Access;
use crate::copy_registry::CopyRegistry;
use crate::data_buffer::DataBuffer;
use crate::identity::LunIdentity;
use crate::lun::{Lun, not_ready};
use crate::port_groups::PortGroupSource;
use crate::response::ScsiResponse;
use crate::{
    compare_and_write, copy_status, inquiry, lba_status, mode_select, mode_sense, orwrite,
    prefetch, read_capacity, read_defect_data, read_write, report_opcodes,
    report_target_port_groups, request_sense, sanitize, start_stop_unit, synchronize_cache, unmap,
    verify, write_atomic, write_same, xcopy,
};

/// Largest data transfer of one command by default (MAXIMUM TRANSFER
/// LENGTH in the Block Limits VPD page): 1 MiB, as `tcmu-serve --max-io`.
pub const DEFAULT_MAX_IO_BYTES: u32 = 1 << 20;

/// A SCSI direct-access logical unit (SPC-5/SBC-4) backed by a
/// [`BlockDevice`].
///
/// The emulator is `Send + Sync` whenever the device is and can execute
/// commands from several threads at once. Its state (mode parameters,
/// the stopped flag, locked LBA ranges) lives behind atomics and mutexes.
/// Commands that change the medium lock their LBA range, so COMPARE AND
/// WRITE is atomic against them, and WRITE ATOMIC also against the
/// commands that read the medium; otherwise ordering between overlapping
/// commands is the initiator's business, as SCSI's unrestricted queue
/// algorithm allows.
pub struct Emulator<D: BlockDevice> {
    /// The unit, shared with the copy registry so that EXTENDED COPY on
    /// another unit can reach it.
    pub(crate) lun: Arc<Lun<D>>,
    /// The copy registry this unit is registered in, and its entry's id.
    /// The registry, this unit's entry in it, and the designator it was
    /// registered under (the serial may change later).
    copy: Option<(CopyRegistry, u64, [u8; 8])>,
}

impl<D: BlockDevice> Emulator<D> {
    /// A logical unit on `device` that identifies itself as `identity`.
    ///
    /// The device's [`capabilities`](BlockDevice::capabilities) are read
    /// once, here: `unmap` and `unmap_reads_zeroes` decide logical block
    /// provisioning (UNMAP, LBPME), `lba_status` enables GET LBA STATUS,
    /// `atomic_write_blocks` WRITE ATOMIC(16), `read_only` write-protects
    /// the unit, and the write cache starts as `write_cache` says.
    pub fn new(device: D, identity: LunIdentity) -> Self {
        Emulator {
            lun: Arc::new(Lun::new(device, identity, DEFAULT_MAX_IO_BYTES)),
            copy: None,
        }
    }

    /// The unit, to change its settings while nothing else holds it: the
    /// builder methods run before the emulator serves and leave the copy
    /// registry first.
    fn lun_mut(&mut self) -> &mut Lun<D> {
        Arc::get_mut(&mut self.lun)
            .expect("an emulator being configured shares its unit with no one")
    }

    /// The same logical unit copying to and from other units: it
    /// registers itself in `registry` under its NAA designator (until it
    /// is dropped), so that EXTENDED COPY(LID1) sent to it may name any
    /// unit registered there, and EXTENDED COPY sent to them may name it.
    /// Without a registry a unit still executes EXTENDED COPY, copying
    /// within itself.
    pub fn with_copy_registry(mut self, registry: CopyRegistry) -> Self
    where
        D: 'static,
    {
        self.leave_copy_registry();
        let naa = self.lun.identity().naa();
        let id = registry.register(naa, self.lun.clone());
        self.copy = Some((registry, id, naa));
        self
    }

    /// The copy registry, when the unit copies between units.
    pub fn copy_registry(&self) -> Option<&CopyRegistry> {
        self.copy.as_ref().map(|(registry, _, _)| registry)
    }

    /// Leave the copy registry (if any) and give it back.
    fn leave_copy_registry(&mut self) -> Option<CopyRegistry> {
        let (registry, id, naa) = self.copy.take()?;
        registry.unregister(&naa, id);
        Some(registry)
    }

    /// The same logical unit accepting at most `bytes` of data per command
    /// (MAXIMUM TRANSFER LENGTH, at least one block; default
    /// [`DEFAULT_MAX_IO_BYTES`]). Set it to what the transport
    /// allows, e.g. the TCMU device's `hw_max_sectors` × 512.
    pub fn with_max_io_bytes(mut self, bytes: u32) -> Self
    where
        D: 'static,
    {
        let registry = self.leave_copy_registry();
        self.lun_mut().set_max_io_bytes(bytes);
        match registry {
            Some(registry) => self.with_copy_registry(registry),
            None => self,
        }
    }

    /// The same logical unit reporting asymmetric access (ALUA) as
    /// `source` tells, asked again for every INQUIRY and REPORT TARGET
    /// PORT GROUPS: INQUIRY sets TPGS to implicit and VPD page 0x83 names
    /// the relative target port and its group while the source reports a
    /// local port, and REPORT TARGET PORT GROUPS lists the groups. Access
    /// states only change implicitly (by the source); SET TARGET PORT
    /// GROUPS is not supported. Enforcing a state (refusing I/O in
    /// standby) is the transport's business: LIO does it for TCMU.
    pub fn with_port_groups(mut self, source: impl PortGroupSource) -> Self
    where
        D: 'static,
    {
        let registry = self.leave_copy_registry();
        self.lun_mut().set_port_groups(Arc::new(source));
        match registry {
            Some(registry) => self.with_copy_registry(registry),
            None => self,
        }
    }

    /// The largest data transfer of one command, in bytes.
    pub fn max_io_bytes(&self) -> u32 {
        self.lun.max_io_bytes
    }

    /// The backing device.
    pub fn device(&self) -> &D {
        self.lun.device()
    }

    /// The identity reported by INQUIRY.
    pub fn identity(&self) -> LunIdentity {
        self.lun.identity()
    }

    /// Report `serial` as the unit serial number from the next INQUIRY on
    /// (VPD page 0x80, and the NAA designator of page 0x83 that derives
    /// from it). For handlers whose serial is set after the unit starts:
    /// rtslib writes a TCMU backstore's `wwn/vpd_unit_serial` only after
    /// enabling it. A unit in a [`CopyRegistry`] stays registered under the
    /// designator it had when it joined.
    pub fn set_serial(&self, serial: impl Into<String>) {
        self.lun.set_serial(serial.into());
    }

    /// Whether CHECK CONDITION sense data goes out in descriptor format
    /// (the control mode page's D_SENSE bit, changeable with MODE SELECT).
    /// Transports encode a response's sense with
    /// [`ScsiResponse::sense_bytes`]`(emulator.descriptor_sense())`.
    pub fn descriptor_sense(&self) -> bool {
        self.lun.descriptor_sense()
    }

    /// Whether the write cache is enabled (the caching mode page's WCE
    /// bit). With WCE off on a device that has a volatile cache, every
    /// write is made durable before it completes.
    pub fn write_cache_enabled(&self) -> bool {
        self.lun.write_cache_enabled()
    }

    /// Set the write cache on or off (the caching mode page's WCE bit), as
    /// MODE SELECT would; e.g. when the kernel's `emulate_write_cache`
    /// attribute changes.
    pub fn set_write_cache_enabled(&self, on: bool) {
        self.lun.modes.lock().wce = on;
    }

    /// Change the capacity to `bytes` (a whole, non-zero number of blocks)
    /// through [`BlockDevice::resize`]. On success the next command
    /// (other than INQUIRY and REQUEST SENSE) is answered with the unit
    /// attention CAPACITY DATA HAS CHANGED, so the initiator reads the
    /// capacity again. TCMU does not say which initiator sent a command, so
    /// the attention is reported once, to whoever comes first.
    pub fn resize(&self, bytes: u64) -> Result<(), BlockError> {
        let device = self.lun.device();
        let block_size = u64::from(device.block_size());
        if bytes == 0 || bytes % block_size != 0 {
            return Err(BlockError::OutOfRange);
        }
        let blocks = bytes / block_size;
        if blocks == device.num_blocks() {
            return Ok(());
        }
        device.resize(blocks)?;
        self.lun.capacity_changed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Executing commands needs a device that lives as long as the unit: a
/// sanitize runs on a thread of its own, holding the unit.
impl<D: BlockDevice + 'static> Emulator<D> {
    /// Execute one CDB.
    ///
    /// `data` is the command's whole data buffer: the data-out contents for
    /// commands that send data (WRITE), the space to fill for commands that
    /// return data (READ, INQUIRY, ...). For the latter the response's
    /// `data_in_len` says how many bytes from the start were produced;
    /// the caller deals with the rest (zero-fill, residual count).
    ///
    /// Never panics, whatever the bytes: malformed or unsupported CDBs end
    /// in CHECK CONDITION with ILLEGAL REQUEST sense.
    pub fn execute(&self, cdb: &[u8], data: &mut dyn DataBuffer) -> ScsiResponse {
        match self.admit(cdb) {
            Ok(command) => self.dispatch(&command, data),
            Err(response) => response,
        }
    }

    /// Decode `cdb` and make the checks every command passes before it
    /// runs (a pending unit attention, a sanitize running or failed, a
    /// stopped unit, write protection); the decoded command, or the
    /// response that ends it.
    pub(crate) fn admit(&self, cdb: &[u8]) -> Result<Command, ScsiResponse> {
        let lun = &*self.lun;
        let (command, spec) = match Command::decode(cdb, &lun.caps) {
            Ok(found) => found,
            Err(sense) => {
                log::debug!("refused CDB {:02x?}: {sense}", &cdb[..cdb.len().min(16)]);
                return Err(ScsiResponse::check_condition(sense));
            }
        };
        if lun.capacity_changed.load(Ordering::Relaxed)
            && !matches!(command, Command::Inquiry(_) | Command::RequestSense(_))
            && lun.capacity_changed.swap(false, Ordering::SeqCst)
        {
            return Err(ScsiResponse::check_condition(Sense::new(
                SenseKey::UnitAttention,
                AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
            )));
        }
        // SANITIZE itself is the way out of a failed sanitize.
        let medium_access = spec.access != Access::None && !matches!(command, Command::Sanitize(_));
        if let Some(sense) = lun
            .sanitize
            .refusal(command.runs_during_sanitize(), medium_access)
        {
            return Err(ScsiResponse::check_condition(sense));
        }
        if spec.access != Access::None && lun.is_stopped() {
            return Err(ScsiResponse::check_condition(not_ready()));
        }
        if spec.access == Access::Write
            && let Some(sense) = lun.write_protection()
        {
            return Err(ScsiResponse::check_condition(sense));
        }
        Ok(command)
    }

    /// Run an admitted command to its end.
    pub(crate) fn dispatch(&self, command: &Command, data: &mut dyn DataBuffer) -> ScsiResponse {
        let lun = &*self.lun;
        let device = lun.device();
        match command {
            Command::TestUnitReady => start_stop_unit::test_unit_ready(lun),
            Command::RequestSense(cmd) => request_sense::request_sense(lun, cmd, data),
            Command::Inquiry(cmd) => inquiry::inquiry(lun, cmd, data),
            Command::ModeSense(cmd) => mode_sense::mode_sense(lun, cmd, data),
            Command::ModeSelect(cmd) => mode_select::mode_select(lun, cmd, data),
            Command::StartStopUnit(cmd) => start_stop_unit::start_stop_unit(lun, cmd),
            Command::ReadCapacity10 => read_capacity::read_capacity_10(device, data),
            Command::ReadCapacity16(cmd) => read_capacity::read_capacity_16(lun, cmd, data),
            Command::GetLbaStatus(cmd) => lba_status::get_lba_status(lun, cmd, data),
            Command::Read(cmd) => read_write::read(lun, cmd, data),
            Command::Write(cmd) => read_write::write(lun, cmd, data),
            Command::Verify(cmd) => verify::verify(lun, cmd, data),
            Command::WriteAndVerify(cmd) => verify::write_and_verify(lun, cmd, data),
            Command::CompareAndWrite(cmd) => compare_and_write::compare_and_write(lun, cmd, data),
            Command::WriteSame(cmd) => write_same::write_same(lun, cmd, data),
            Command::Unmap(cmd) => unmap::unmap(lun, cmd, data),
            Command::SynchronizeCache(cmd) => synchronize_cache::synchronize_cache(device, cmd),
            Command::ReportOpcodes(cmd) => {
                report_opcodes::report_opcodes(COMMANDS, &lun.caps, cmd, data)
            }
            Command::ReportTmf(cmd) => report_opcodes::report_tmf(cmd, data),
            Command::ReportTargetPortGroups(cmd) => {
                report_target_port_groups::report_target_port_groups(
                    lun.port_groups.as_deref(),
                    cmd,
                    data,
                )
            }
            Command::ExtendedCopy(cmd) => {
                xcopy::extended_copy(lun, self.copy_registry(), cmd, data)
            }
            Command::CopyStatus(cmd) => {
                copy_status::receive_copy_status(&lun.copy_statuses, cmd, data, Instant::now())
            }
            Command::CopyOperatingParameters(cmd) => xcopy::operating_parameters(lun, cmd, data),
            Command::Prefetch(cmd) => prefetch::prefetch(device, cmd),
            Command::ReadDefectData(cmd) => read_defect_data::read_defect_data(cmd, data),
            Command::OrWrite(cmd) => orwrite::orwrite(lun, cmd, data),
            Command::Sanitize(cmd) => sanitize::sanitize(&self.lun, cmd, data),
            Command::WriteAtomic(cmd) => write_atomic::write_atomic(lun, cmd, data),
        }
    }
}

impl<D: BlockDevice> Drop for Emulator<D> {
    fn drop(&mut self) {
        self.leave_copy_registry();
    }
}

impl<D: BlockDevice + std::fmt::Debug> std::fmt::Debug for Emulator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lun = &self.lun;
        f.debug_struct("Emulator")
            .field("device", &lun.device)
            .field("identity", &lun.identity())
            .field("max_io_bytes", &lun.max_io_bytes)
            .field("modes", &lun.modes.current())
            .field("stopped", &lun.stopped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;
    use crate::{BlockError, ScsiStatus};

    #[test]
    fn emulator_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Emulator<VecDevice>>();
        check::<Emulator<std::sync::Arc<dyn BlockDevice>>>();
    }

    #[test]
    fn commands_run_from_several_threads() {
        let emu = std::sync::Arc::new(emulator(VecDevice::new(512, 64)));
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let emu = emu.clone();
                std::thread::spawn(move || {
                    let lba = u32::from(t) * 8;
                    let mut cdb = [0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0];
                    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
                    let mut out = vec![vec![t; 1000], vec![t; 8 * 512 - 1000]];
                    assert_eq!(emu.execute(&cdb, &mut out), ScsiResponse::good());
                    cdb[0] = 0x28;
                    let mut back = vec![0u8; 8 * 512];
                    assert_eq!(emu.execute(&cdb, &mut back), ScsiResponse::data_in(8 * 512));
                    assert!(back.iter().all(|&b| b == t));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let contents = emu.device().contents();
        for (i, block) in contents.chunks(512).enumerate() {
            assert!(block.iter().all(|&b| usize::from(b) == i / 8));
        }
    }

    #[test]
    fn unknown_opcodes_are_refused() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0u8; 64];
        for cdb in [
            &[][..],
            &[0x01, 0, 0, 0, 0, 0],
            &[0x04, 0, 0, 0, 0, 0],                   // FORMAT UNIT
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],      // UNMAP, no unmap support
            &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // REPORT LUNS
            &[0x7F, 0, 0, 0, 0, 0, 0, 24],
            &[0xFF; 16],
        ] {
            assert_illegal(
                &emu.execute(cdb, &mut buf),
                AdditionalSense::INVALID_COMMAND_OPERATION_CODE,
            );
        }
    }

    #[test]
    fn short_cdb_and_naca_are_invalid_fields() {
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0u8; 64];
        assert_invalid_field(&emu.execute(&[0x12, 0, 0, 0, 36], &mut buf), 0, 7);
        assert_invalid_field(
            &emu.execute(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1], &mut buf),
            0,
            7,
        );
        assert_invalid_field(&emu.execute(&[0x12, 0, 0, 0, 36, 0x04], &mut buf), 5, 2);
        assert_invalid_field(
            &emu.execute(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x04], &mut buf),
            9,
            2,
        );
    }

    #[test]
    fn read_only_refuses_every_command_that_writes() {
        let emu = emulator(
            VecDevice::new(512, 8)
                .read_only()
                .with_unmap()
                .with_atomic_writes(8),
        );
        let mut checked = 0;
        for spec in crate::command::COMMANDS {
            let mut cdb = vec![0u8; spec.cdb_len()];
            cdb[0] = spec.opcode;
            if let Some(sa) = spec.service_action {
                cdb[1] = sa;
            }
            // One block, so that WRITE SAME's non-zero rule is met.
            let len_lsb = match spec.cdb_len() {
                6 => 4,
                10 => 8,
                12 => 9,
                _ => 13,
            };
            cdb[len_lsb] = 1;
            // SANITIZE's length is its parameter list's: OVERWRITE needs
            // more than a header, the others none.
            if spec.opcode == crate::opcode::SANITIZE {
                let overwrite = spec.service_action == Some(0x01);
                cdb[len_lsb] = if overwrite { 8 } else { 0 };
            }
            let resp = emu.execute(&cdb, &mut vec![0u8; 4096]);
            let protected = resp.sense.is_some_and(|s| {
                (s.key, s.code) == (SenseKey::DataProtect, AdditionalSense::WRITE_PROTECTED)
            });
            assert_eq!(protected, spec.access == Access::Write, "{}", spec.name);
            checked += usize::from(protected);
        }
        // WRITE 6/10/12/16, WRITE AND VERIFY 10/12/16, WRITE SAME 10/16,
        // UNMAP, COMPARE AND WRITE, ORWRITE, SANITIZE OVERWRITE and BLOCK
        // ERASE, WRITE ATOMIC.
        assert_eq!(checked, 15);
        // Reads reached the device; nothing else did.
        let calls = emu.device().calls();
        assert!(calls.iter().all(|&(kind, _, _)| kind == 'r'), "{calls:?}");
        assert!(!calls.is_empty());
    }

    #[test]
    fn limits_follow_block_size_and_configuration() {
        let emu = emulator(VecDevice::new(512, 8));
        let l = emu.lun.limits;
        assert_eq!(l.max_transfer, 2048);
        assert_eq!(l.optimal_transfer, 2048);
        assert_eq!(l.transfer_granularity, 8);
        assert_eq!(l.max_compare_and_write, 16);
        assert_eq!(l.max_write_same, 1 << 21);
        assert_eq!((l.max_unmap, l.max_unmap_descriptors), (0, 0));

        let emu = emulator(VecDevice::new(4096, 8).with_unmap()).with_max_io_bytes(8192);
        let l = emu.lun.limits;
        assert_eq!(emu.max_io_bytes(), 8192);
        assert_eq!((l.max_transfer, l.optimal_transfer), (2, 2));
        assert_eq!(l.transfer_granularity, 1);
        assert_eq!(l.max_compare_and_write, 2);
        assert_eq!(l.max_unmap, 1 << 17);
        assert_eq!(l.max_unmap_descriptors, 256);

        // Less than a page: no optimal size; never below one block.
        let emu = emulator(VecDevice::new(512, 8)).with_max_io_bytes(100);
        assert_eq!(
            (emu.lun.limits.max_transfer, emu.lun.limits.optimal_transfer),
            (1, 0)
        );
    }

    #[test]
    fn every_response_is_consistent() {
        // A few valid commands of each family, end to end.
        let emu = emulator(VecDevice::new(512, 8));
        let mut buf = vec![0u8; 4096];
        let cdbs: [&[u8]; 6] = [
            &[0x00, 0, 0, 0, 0, 0],
            &[0x12, 0, 0, 0, 96, 0],
            &[0x1A, 0, 0x3F, 0, 255, 0],
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for cdb in cdbs {
            let resp = emu.execute(cdb, &mut buf);
            assert_eq!(resp.status, ScsiStatus::Good, "{cdb:02x?}");
            assert_eq!(resp.sense, None);
        }
    }

    /// Opcodes we implement, so random CDBs reach the command code, not
    /// just the unknown-opcode path.
    fn opcodes() -> Vec<u8> {
        let mut ops: Vec<u8> = crate::command::COMMANDS.iter().map(|s| s.opcode).collect();
        ops.dedup();
        ops
    }

    fn cdb_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            (
                proptest::sample::select(opcodes()),
                proptest::collection::vec(any::<u8>(), 0..39)
            )
                .prop_map(|(op, mut rest)| {
                    rest.insert(0, op);
                    rest
                }),
            // Mostly-zero CDBs with a small LBA and length hit the
            // in-range paths; byte 1 sometimes holds a service action.
            (
                proptest::sample::select(opcodes()),
                0u8..32,
                0u8..4,
                0usize..16,
                any::<u8>()
            )
                .prop_map(|(op, b1, small, at, byte)| {
                    let mut cdb = vec![0u8; 16];
                    cdb[0] = op;
                    cdb[1] = b1;
                    cdb[at] = byte;
                    cdb[8] = small;
                    cdb[9] = small;
                    cdb[13] = small;
                    cdb.truncate(crate::cdb::cdb_length(op).unwrap_or(16));
                    cdb
                }),
        ]
    }

    fn error_strategy() -> impl Strategy<Value = Option<BlockError>> {
        prop_oneof![
            4 => Just(None),
            1 => prop_oneof![
                Just(BlockError::OutOfRange),
                Just(BlockError::Medium),
                Just(BlockError::Busy),
                Just(BlockError::ReadOnly),
                Just(BlockError::NoSpace),
                Just(BlockError::Unsupported),
                any::<i32>().prop_map(BlockError::Io),
            ]
            .prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_cdbs_never_panic(
            cdb in cdb_strategy(),
            segments in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..1200), 0..5),
            block_size in proptest::sample::select(&[512u32, 1024, 4096][..]),
            read_only in any::<bool>(),
            unmap in any::<bool>(),
            error in error_strategy(),
        ) {
            let mut dev = VecDevice::new(block_size, 16);
            dev.read_only = read_only;
            if unmap {
                dev = dev.with_unmap().with_lba_status();
            }
            *dev.fail.lock().unwrap() = error.clone();
            *dev.fail_flush.lock().unwrap() = error;
            let emu = emulator(dev);
            let mut data = segments;
            let len = DataBuffer::len(&data);
            let resp = emu.execute(&cdb, &mut data);
            prop_assert!(
                [ScsiStatus::Good, ScsiStatus::CheckCondition, ScsiStatus::Busy].contains(&resp.status),
                "status {}", resp.status
            );
            prop_assert_eq!(resp.sense.is_some(), resp.status == ScsiStatus::CheckCondition);
            if let Some(n) = resp.data_in_len {
                prop_assert!(n <= len);
                prop_assert_eq!(resp.status, ScsiStatus::Good);
            }
            if let Some(sense) = resp.sense {
                prop_assert_ne!(sense.key, SenseKey::NoSense);
                if sense.code == AdditionalSense::INVALID_FIELD_IN_CDB {
                    // Every refused CDB field is pointed at.
                    let fp = sense.field_pointer.expect("field pointer");
                    prop_assert!(fp.in_cdb);
                    prop_assert!(usize::from(fp.byte) < cdb.len().max(1));
                    prop_assert!(fp.bit.is_some());
                }
                if sense.code == AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST {
                    let fp = sense.field_pointer.expect("field pointer");
                    prop_assert!(!fp.in_cdb);
                    prop_assert!(usize::from(fp.byte) < len);
                }
            }
        }
    }

    fn last_lba(emu: &Emulator<Resizable>) -> u32 {
        let mut buf = vec![0u8; 8];
        let resp = emu.execute(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        u32::from_be_bytes(buf[..4].try_into().unwrap())
    }

    #[test]
    fn a_resize_is_reported_once_as_a_unit_attention() {
        let dev = Resizable::new(100);
        let identity = LunIdentity::for_device("SN0002", &dev);
        let emu = Emulator::new(dev, identity);
        assert_eq!(last_lba(&emu), 99);
        emu.resize(200 * 512).unwrap();
        // INQUIRY does not consume the attention; the next other command does.
        let mut buf = vec![0u8; 36];
        assert_eq!(
            emu.execute(&[0x12, 0, 0, 0, 36, 0], &mut buf).status,
            ScsiStatus::Good
        );
        let tur = emu.execute(&[0, 0, 0, 0, 0, 0], &mut buf);
        assert_check(
            &tur,
            SenseKey::UnitAttention,
            AdditionalSense::CAPACITY_DATA_HAS_CHANGED,
        );
        assert_eq!(
            emu.execute(&[0, 0, 0, 0, 0, 0], &mut buf),
            ScsiResponse::good()
        );
        assert_eq!(last_lba(&emu), 199);

        // The same size again changes nothing and reports nothing.
        emu.resize(200 * 512).unwrap();
        assert_eq!(
            emu.execute(&[0, 0, 0, 0, 0, 0], &mut buf),
            ScsiResponse::good()
        );
        // Refused sizes leave the capacity alone.
        assert_eq!(emu.resize(2000 * 512), Err(BlockError::NoSpace));
        assert_eq!(emu.resize(100 * 512 + 1), Err(BlockError::OutOfRange));
        assert_eq!(emu.resize(0), Err(BlockError::OutOfRange));
        assert_eq!(
            emu.execute(&[0, 0, 0, 0, 0, 0], &mut buf),
            ScsiResponse::good()
        );
        assert_eq!(last_lba(&emu), 199);
    }

    #[test]
    fn a_device_without_resize_refuses_it() {
        let emu = emulator(VecDevice::new(512, 8));
        assert_eq!(emu.resize(16 * 512), Err(BlockError::Unsupported));
        let mut buf = vec![0u8; 8];
        assert_eq!(
            emu.execute(&[0, 0, 0, 0, 0, 0], &mut buf),
            ScsiResponse::good()
        );
    }

    #[test]
    fn the_write_cache_can_be_switched_from_outside() {
        let emu = emulator(VecDevice::new(512, 8).with_write_cache());
        assert!(emu.write_cache_enabled());
        emu.set_write_cache_enabled(false);
        assert!(!emu.write_cache_enabled());
        assert!(emu.lun.write_through());
        emu.set_write_cache_enabled(true);
        assert!(emu.write_cache_enabled());
    }
}
