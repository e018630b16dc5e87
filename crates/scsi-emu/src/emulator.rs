//! The emulator: decode a CDB, run it against the device, report status.

use crate::block_device::BlockDevice;
use crate::command::Command;
use crate::data_buffer::DataBuffer;
use crate::identity::LunIdentity;
use crate::response::ScsiResponse;
use crate::{inquiry, misc, mode_sense, read_capacity, read_write};

/// A SCSI direct-access logical unit (SPC-5/SBC-4) backed by a
/// [`BlockDevice`].
///
/// The emulator holds no per-command state, so it is `Send + Sync`
/// whenever the device is and can execute commands from several threads
/// at once; ordering between overlapping commands is the initiator's
/// business, as SCSI's unrestricted queue algorithm allows. State added
/// later (unit attentions, reservations) must keep it so (Mutex/atomics).
pub struct Emulator<D: BlockDevice> {
    device: D,
    identity: LunIdentity,
}

impl<D: BlockDevice> Emulator<D> {
    /// A logical unit on `device` that identifies itself as `identity`.
    pub fn new(device: D, identity: LunIdentity) -> Self {
        Emulator { device, identity }
    }

    /// The backing device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The identity reported by INQUIRY.
    pub fn identity(&self) -> &LunIdentity {
        &self.identity
    }

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
        let command = match Command::decode(cdb) {
            Ok(command) => command,
            Err(sense) => {
                log::debug!("refused CDB {:02x?}: {sense}", &cdb[..cdb.len().min(16)]);
                return ScsiResponse::check_condition(sense);
            }
        };
        let device = &self.device;
        match &command {
            Command::TestUnitReady => misc::test_unit_ready(),
            Command::RequestSense(cmd) => misc::request_sense(cmd, data),
            Command::Inquiry(cmd) => inquiry::inquiry(&self.identity, cmd, data),
            Command::ModeSense(cmd) => mode_sense::mode_sense(device, cmd, data),
            Command::ReadCapacity10 => read_capacity::read_capacity_10(device, data),
            Command::ReadCapacity16(cmd) => read_capacity::read_capacity_16(device, cmd, data),
            Command::Read(cmd) => read_write::read(device, cmd, data),
            Command::Write(cmd) => read_write::write(device, cmd, data),
            Command::SynchronizeCache(cmd) => misc::synchronize_cache(device, cmd),
        }
    }
}

impl<D: BlockDevice + std::fmt::Debug> std::fmt::Debug for Emulator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("device", &self.device)
            .field("identity", &self.identity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use scsi_sense_codes::{AdditionalSense, SenseKey};

    use super::*;
    use crate::testutil::*;
    use crate::{BlockError, status};

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
            &[0x15, 0, 0, 0, 0, 0],                   // MODE SELECT(6)
            &[0x2F, 0, 0, 0, 0, 0, 0, 0, 0, 0],       // VERIFY(10)
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
        assert_invalid_field(&emu.execute(&[0x12, 0, 0, 0, 36], &mut buf));
        assert_invalid_field(&emu.execute(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1], &mut buf));
        assert_invalid_field(&emu.execute(&[0x12, 0, 0, 0, 36, 0x04], &mut buf));
        assert_invalid_field(&emu.execute(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x04], &mut buf));
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
            assert_eq!(resp.status, status::GOOD, "{cdb:02x?}");
            assert_eq!(resp.sense, None);
        }
    }

    /// Opcodes we implement, so random CDBs reach the command code, not
    /// just the unknown-opcode path.
    const OPCODES: &[u8] = &[
        0x00, 0x03, 0x08, 0x0A, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x5A, 0x88, 0x8A, 0x91, 0x9E,
        0xA8, 0xAA,
    ];

    fn cdb_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            (
                proptest::sample::select(OPCODES),
                proptest::collection::vec(any::<u8>(), 0..39)
            )
                .prop_map(|(op, mut rest)| {
                    rest.insert(0, op);
                    rest
                }),
            // Mostly-zero CDBs with a small LBA and length hit the
            // in-range read/write paths.
            (
                proptest::sample::select(OPCODES),
                0u8..4,
                0u8..4,
                0usize..16,
                any::<u8>()
            )
                .prop_map(|(op, b1, small, at, byte)| {
                    let mut cdb = vec![0u8; 16];
                    cdb[0] = op;
                    cdb[1] = b1 << 3;
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
            error in error_strategy(),
        ) {
            let mut dev = VecDevice::new(block_size, 16);
            dev.read_only = read_only;
            *dev.fail.lock().unwrap() = error.clone();
            *dev.fail_flush.lock().unwrap() = error;
            let emu = emulator(dev);
            let mut data = segments;
            let len = DataBuffer::len(&data);
            let resp = emu.execute(&cdb, &mut data);
            prop_assert!(
                [status::GOOD, status::CHECK_CONDITION, status::BUSY].contains(&resp.status),
                "status {:#x}", resp.status
            );
            prop_assert_eq!(resp.sense.is_some(), resp.status == status::CHECK_CONDITION);
            if let Some(n) = resp.data_in_len {
                prop_assert!(n <= len);
                prop_assert_eq!(resp.status, status::GOOD);
            }
            if let Some(sense) = resp.sense {
                prop_assert_ne!(sense.key, SenseKey::NoSense);
            }
        }
    }
}
