//! The `cdb_parser` target: raw CDBs with arbitrary data buffers.

use crate::buffer::Buffer;
use crate::input::Input;
use crate::lun::{Executed, Lun};

/// Longest CDB a case sends (variable-length CDBs go up to 260 bytes, but
/// nothing a disk supports needs more than 32).
pub const MAX_CDB_LEN: usize = 32;
/// Most commands one case runs against the same logical unit.
pub const MAX_COMMANDS: usize = 8;
/// Most device bytes one command may legitimately touch before the harness
/// declines to send it (see [`CdbCase`]).
const WORK_BUDGET_BYTES: u64 = 64 << 20;

/// One command of a [`CdbCase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbCommand {
    /// The CDB, at most [`MAX_CDB_LEN`] bytes (possibly empty or short).
    pub cdb: Vec<u8>,
    /// Length of the data buffer.
    pub buffer_len: u16,
    /// How the buffer is split into segments (see `Buffer::new`): bits
    /// 1-0 give the number of segments minus one (0: a flat buffer), bits
    /// 7-2 shift the cuts.
    pub segmentation: u8,
    /// The start of the buffer (data-out); at most 255 bytes, zeros after.
    pub data: Vec<u8>,
}

/// The input of the `cdb_parser` target, decoded.
///
/// Layout: one geometry selector byte (see [`GEOMETRIES`]), then up to
/// [`MAX_COMMANDS`] records of
///
/// ```text
/// cdb_len  segmentation  buffer_len (2 bytes, big-endian)  data_len  cdb...  data...
/// ```
///
/// where `cdb_len` is taken modulo 33. Missing bytes read as zero, and a
/// CDB or data cut short by the end of the input is kept short.
///
/// The commands run in order against one fresh logical unit, so state one
/// leaves behind (mode pages, reservations, unit attentions) meets the
/// next. The harness does not send a WRITE SAME or VERIFY whose range
/// covers more than 64 MiB of the device: a correct emulator may really
/// touch every block of it, which proves nothing but takes minutes.
///
/// [`GEOMETRIES`]: crate::GEOMETRIES
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbCase {
    /// Index into [`GEOMETRIES`](crate::GEOMETRIES) (modulo its length).
    pub geometry: u8,
    /// The commands, in order.
    pub commands: Vec<CdbCommand>,
}

impl CdbCase {
    /// Decode fuzz input; every byte string is a case.
    pub fn from_bytes(bytes: &[u8]) -> CdbCase {
        let mut input = Input::new(bytes);
        let geometry = input.u8();
        let mut commands = Vec::new();
        while !input.is_empty() && commands.len() < MAX_COMMANDS {
            let cdb_len = usize::from(input.u8()) % (MAX_CDB_LEN + 1);
            let segmentation = input.u8();
            let buffer_len = input.be16();
            let data_len = usize::from(input.u8());
            let cdb = input.take(cdb_len).to_vec();
            let data = input.take(data_len).to_vec();
            commands.push(CdbCommand {
                cdb,
                buffer_len,
                segmentation,
                data,
            });
        }
        CdbCase { geometry, commands }
    }

    /// Encode; `from_bytes(&case.to_bytes())` gives the case back when
    /// every CDB is at most 32 bytes and every data at most 255.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.geometry];
        for c in &self.commands {
            out.push(c.cdb.len().min(MAX_CDB_LEN) as u8);
            out.push(c.segmentation);
            out.extend_from_slice(&c.buffer_len.to_be_bytes());
            out.push(c.data.len().min(255) as u8);
            out.extend_from_slice(&c.cdb[..c.cdb.len().min(MAX_CDB_LEN)]);
            out.extend_from_slice(&c.data[..c.data.len().min(255)]);
        }
        out
    }
}

/// Run a `cdb_parser` input (see [`CdbCase`] for the layout) and check
/// every response; panics on a violated invariant. Returns what ran.
pub fn run_cdb_case(bytes: &[u8]) -> Vec<Executed> {
    let case = CdbCase::from_bytes(bytes);
    let mut lun = Lun::new(case.geometry);
    for command in &case.commands {
        if over_budget(&command.cdb, lun.block_size(), lun.num_blocks()) {
            continue;
        }
        let mut buffer = Buffer::new(
            &command.data,
            usize::from(command.buffer_len),
            command.segmentation,
        );
        lun.execute(&command.cdb, &mut buffer);
    }
    lun.log
}

/// Most passes a SANITIZE OVERWRITE may ask for (OVERWRITE COUNT is five
/// bits; the parameter list is not looked at here).
const MAX_OVERWRITE_PASSES: u64 = 31;

/// Whether `cdb` is a command that may legitimately read or write far more
/// of the device than its data buffer holds (WRITE SAME, VERIFY without a
/// byte check, SANITIZE), over more than [`WORK_BUDGET_BYTES`].
fn over_budget(cdb: &[u8], block_size: u32, num_blocks: u64) -> bool {
    let be = |at: usize, n: usize| -> u64 {
        (at..at + n).fold(0, |acc, i| {
            acc << 8 | u64::from(cdb.get(i).copied().unwrap_or(0))
        })
    };
    let capacity = num_blocks.saturating_mul(u64::from(block_size));
    let (lba, blocks) = match cdb.first() {
        // SANITIZE covers the whole medium: OVERWRITE (service action 01h)
        // as many times as it asks, the others once.
        Some(0x48) => {
            let passes = if cdb.get(1).is_some_and(|b| b & 0x1F == 0x01) {
                MAX_OVERWRITE_PASSES
            } else {
                1
            };
            return capacity.saturating_mul(passes) > WORK_BUDGET_BYTES;
        }
        // WRITE SAME(10), VERIFY(10)
        Some(0x41 | 0x2F) => (be(2, 4), be(7, 2)),
        // VERIFY(12)
        Some(0xAF) => (be(2, 4), be(6, 4)),
        // WRITE SAME(16), VERIFY(16)
        Some(0x93 | 0x8F) => (be(2, 8), be(10, 4)),
        // Variable length: WRITE SAME(32) is service action 000Dh,
        // VERIFY(32) 000Ah.
        Some(0x7F) if matches!(be(8, 2), 0x000A | 0x000D) => (be(12, 8), be(28, 4)),
        _ => return false,
    };
    // NUMBER OF LOGICAL BLOCKS 0 asks WRITE SAME for the rest of the device.
    let blocks = if blocks == 0 {
        num_blocks.saturating_sub(lba)
    } else {
        blocks
    };
    blocks.saturating_mul(u64::from(block_size)) > WORK_BUDGET_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_records_in_order() {
        let bytes = [
            3, // geometry
            6, 0, 0, 0, 0, 0x00, 0, 0, 0, 0, 0, // TEST UNIT READY
            6, 1, 0, 36, 2, 0x12, 0, 0, 0, 36, 0, 0xAA, 0xBB, // INQUIRY
            40, 0, // cdb_len 40 % 33 = 7, cut short by the end
        ];
        let case = CdbCase::from_bytes(&bytes);
        assert_eq!(case.geometry, 3);
        assert_eq!(case.commands.len(), 3);
        assert_eq!(case.commands[0].cdb, vec![0; 6]);
        assert_eq!(case.commands[1].buffer_len, 36);
        assert_eq!(case.commands[1].segmentation, 1);
        assert_eq!(case.commands[1].data, vec![0xAA, 0xBB]);
        assert_eq!(case.commands[2].cdb, Vec::<u8>::new());
        assert_eq!(
            CdbCase::from_bytes(&case.to_bytes()).commands[..2],
            case.commands[..2]
        );
    }

    #[test]
    fn empty_input_runs_nothing() {
        assert!(run_cdb_case(&[]).is_empty());
        assert!(run_cdb_case(&[7]).is_empty());
    }

    #[test]
    fn budget_declines_only_huge_ranges() {
        let huge = (1u64 << 32) + 16;
        // WRITE SAME(16), 0 blocks = to the end of a 2 TiB device.
        assert!(over_budget(
            &[0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            512,
            huge
        ));
        assert!(!over_budget(
            &[0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0],
            512,
            huge
        ));
        // The same on a 64-block device is cheap.
        assert!(!over_budget(&[0x93; 1], 512, 64));
        // VERIFY(10) of 65535 blocks of 4 KiB: 256 MiB.
        assert!(over_budget(
            &[0x2F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0],
            4096,
            huge
        ));
        assert!(!over_budget(
            &[0x28, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0],
            4096,
            huge
        ));
        let mut ws32 = [0u8; 32];
        ws32[0] = 0x7F;
        ws32[7] = 0x18;
        ws32[9] = 0x0D;
        assert!(over_budget(&ws32, 512, huge));
        ws32[31] = 1;
        assert!(!over_budget(&ws32, 512, huge));
        // SANITIZE: the whole device, OVERWRITE up to 31 times.
        let overwrite = [0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0];
        let block_erase = [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(over_budget(&overwrite, 512, huge));
        assert!(over_budget(&block_erase, 512, huge));
        assert!(!over_budget(&overwrite, 512, 4096));
        assert!(over_budget(&overwrite, 4096, 4096));
        assert!(!over_budget(&block_erase, 4096, 4096));
    }
}
