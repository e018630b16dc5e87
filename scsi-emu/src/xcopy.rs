//! EXTENDED COPY(LID1) (SPC-4 6.4, THIRD-PARTY COPY OUT 83h/00h) and
//! RECEIVE COPY OPERATING PARAMETERS (SPC-4 6.18.4, THIRD-PARTY COPY IN
//! 84h/03h): the copy manager every logical unit is, for block-to-block
//! copies within the unit and, through a
//! [`CopyRegistry`](crate::CopyRegistry), between the logical units of one
//! process.
//!
//! What is implemented, as RECEIVE COPY OPERATING PARAMETERS reports it:
//!
//! * CSCD descriptors: only the identification descriptor (E4h) naming a
//!   logical unit by its 8-byte NAA designator (association 0, designator
//!   type 3), at most [`MAX_CSCD_DESCRIPTORS`]. The unit's own designator
//!   names the unit itself, registry or not; any other is looked up in the
//!   registry. LU ID TYPE and the NUL bit are ignored (SPC-4);
//! * segment descriptors: only block device to block device (02h), at
//!   most [`MAX_SEGMENT_DESCRIPTORS`], each moving at most
//!   [`MAX_SEGMENT_BYTES`]. Source and destination must have the same
//!   block size, so the DC bit (which of the two the NUMBER OF BLOCKS
//!   counts in) and CAT (residues) make no difference;
//! * no inline or embedded data and no held data. LIST ID USAGE 00b and
//!   10b hold the copy's status for RECEIVE COPY STATUS (see
//!   [`copy_status`](crate::copy_status)); 11b (SNLID) holds nothing.
//!
//! Every descriptor is checked, every CSCD a segment uses resolved and
//! every range checked before the first block moves, so a refused list
//! changes nothing. The senses follow what initiators test for (libiscsi's
//! conformance suite among them): descriptor lists longer than the limit
//! or than the parameter list are a PARAMETER LIST LENGTH ERROR before the
//! descriptor counts are looked at; a CSCD index naming no CSCD is an
//! UNREACHABLE COPY TARGET, a designator naming no reachable unit COPY
//! TARGET DEVICE NOT REACHABLE, and a range beyond a unit's capacity COPY
//! ABORTED without additional sense (the reason is logged). Data moves in
//! chunks of at most [`CHUNK_BYTES`] through one buffer.

use std::time::Instant;

use byteorder::{BigEndian, ByteOrder};
use scsi_sense_codes::{AdditionalSense, ScsiStatus, Sense, SenseKey};

use crate::block_device::BlockDevice;
use crate::block_error::BlockError;
use crate::cdb::{Cdb, invalid_field, invalid_parameter, parameter_list_length_error, to_usize};
use crate::copy_registry::{CopyRegistry, CopyTarget, Registered};
use crate::copy_status::CopyInProgress;
use crate::data_buffer::DataBuffer;
use crate::lun::{Lun, NOT_READY_INITIALIZING_COMMAND_REQUIRED};
use crate::medium::{Direction, backend_failure, write_protected};
use crate::response::{ScsiResponse, send_data_in};

/// MAXIMUM CSCD DESCRIPTOR COUNT: a source and a destination need two;
/// a few more let one list fan out to several units.
pub(crate) const MAX_CSCD_DESCRIPTORS: u16 = 4;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub(crate) const MAX_SEGMENT_DESCRIPTORS: u16 = 8;
/// MAXIMUM SEGMENT LENGTH in bytes: bounds the time one segment takes
/// (the kernel times a command out after 30 s by default).
pub(crate) const MAX_SEGMENT_BYTES: u32 = 16 << 20;
/// The bounce buffer's size: a copy never holds more in memory.
pub(crate) const CHUNK_BYTES: u64 = 1 << 20;

const HEADER_LEN: usize = 16;
const CSCD_LEN: usize = 32;
/// A block-to-block segment descriptor: 4-byte header, DESCRIPTOR LENGTH
/// 18h.
const BLOCK_TO_BLOCK_LEN: usize = 28;
/// MAXIMUM DESCRIPTOR LIST LENGTH: the longest list the counts allow.
pub(crate) const MAX_DESCRIPTOR_LIST_LEN: usize = MAX_CSCD_DESCRIPTORS as usize * CSCD_LEN
    + MAX_SEGMENT_DESCRIPTORS as usize * BLOCK_TO_BLOCK_LEN;

/// Descriptor type codes.
const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;
const CSCD_IDENTIFICATION: u8 = 0xE4;
/// Implemented descriptor type codes, in ascending order.
const IMPLEMENTED_DESCRIPTORS: [u8; 2] = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];

/// Longest designator an identification CSCD descriptor holds.
const MAX_DESIGNATOR_LEN: usize = 20;
const DESIGNATOR_TYPE_NAA: u8 = 0x3;
/// PERIPHERAL DEVICE TYPE of a direct-access block device.
const DIRECT_ACCESS: u8 = 0x00;

/// LIST ID USAGE values (parameter list byte 1, bits 4-3).
const LIST_ID_HELD: u8 = 0b00;
const LIST_ID_RESERVED: u8 = 0b01;
const LIST_ID_NOT_HELD: u8 = 0b10;
const NO_LIST_ID: u8 = 0b11;

/// A decoded EXTENDED COPY(LID1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtendedCopy {
    parameter_list_length: usize,
}

impl ExtendedCopy {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Self {
        ExtendedCopy {
            parameter_list_length: to_usize(cdb.be32(10)),
        }
    }
}

/// A decoded RECEIVE COPY OPERATING PARAMETERS (the LIST IDENTIFIER byte
/// is not used by this service action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReceiveCopyResults {
    allocation_length: usize,
}

impl ReceiveCopyResults {
    pub(crate) fn decode(cdb: &Cdb<'_>) -> Self {
        ReceiveCopyResults {
            allocation_length: to_usize(cdb.be32(10)),
        }
    }
}

/// RECEIVE COPY OPERATING PARAMETERS byte 4: SNLID.
const SNLID: u8 = 0x01;

pub(crate) fn operating_parameters<D: BlockDevice>(
    lun: &Lun<D>,
    cmd: &ReceiveCopyResults,
    data: &mut dyn DataBuffer,
) -> ScsiResponse {
    let mut b = vec![0u8; 44];
    b[4] = SNLID;
    BigEndian::write_u16(&mut b[8..10], MAX_CSCD_DESCRIPTORS);
    BigEndian::write_u16(&mut b[10..12], MAX_SEGMENT_DESCRIPTORS);
    BigEndian::write_u32(&mut b[12..16], MAX_DESCRIPTOR_LIST_LEN as u32);
    BigEndian::write_u32(&mut b[16..20], MAX_SEGMENT_BYTES);
    // Bytes 20-31: no inline data, no held data, no stream devices.
    // One copy at a time is what an initiator may count on; more run
    // concurrently when the server has workers.
    BigEndian::write_u16(&mut b[34..36], 1);
    b[36] = 1;
    // DATA SEGMENT GRANULARITY (log2 bytes): copies move whole blocks.
    b[37] = lun.device().block_size().max(1).trailing_zeros() as u8;
    b[43] = IMPLEMENTED_DESCRIPTORS.len() as u8;
    b.extend_from_slice(&IMPLEMENTED_DESCRIPTORS);
    // AVAILABLE DATA: the bytes after the field.
    let available = (b.len() - 4) as u32;
    BigEndian::write_u32(&mut b[0..4], available);
    send_data_in(data, &b, cmd.allocation_length)
}

/// An identification CSCD descriptor, checked but not yet resolved.
#[derive(Debug)]
struct Cscd {
    /// Its offset in the parameter list, for field pointers.
    offset: usize,
    association: u8,
    designator_type: u8,
    designator: Vec<u8>,
    /// DISK BLOCK LENGTH (0: not given).
    block_len: u32,
}

/// A block-to-block segment descriptor.
#[derive(Debug)]
struct Segment {
    offset: usize,
    source: usize,
    destination: usize,
    blocks: u64,
    source_lba: u64,
    destination_lba: u64,
}

/// [`Unit::id`] of the unit the command was sent to; registry ids start
/// at 1, so no registered unit is mistaken for it.
const THIS_UNIT_ID: u64 = 0;

/// A unit a CSCD descriptor names.
#[derive(Clone)]
enum Unit<'a> {
    /// The unit the command was sent to (the copy manager's own).
    This(&'a dyn CopyTarget),
    /// Another unit of the copy registry.
    Other(Registered),
}

impl Unit<'_> {
    fn target(&self) -> &dyn CopyTarget {
        match self {
            Unit::This(target) => *target,
            Unit::Other(registered) => &*registered.target,
        }
    }

    /// Equal for the same unit: a copy within one unit may overlap.
    fn id(&self) -> u64 {
        match self {
            Unit::This(_) => THIS_UNIT_ID,
            Unit::Other(registered) => registered.id,
        }
    }
}

/// Where CSCD designators are looked up: the unit's own NAA first, then
/// the registry, if any.
struct Units<'a> {
    this: &'a dyn CopyTarget,
    this_naa: [u8; 8],
    registry: Option<&'a CopyRegistry>,
}

impl<'a> Units<'a> {
    fn lookup(&self, naa: &[u8; 8]) -> Option<Unit<'a>> {
        if *naa == self.this_naa {
            return Some(Unit::This(self.this));
        }
        self.registry?.lookup(naa).map(Unit::Other)
    }
}

/// A segment whose units are resolved and ranges checked.
struct Copy<'a> {
    source: Unit<'a>,
    destination: Unit<'a>,
    blocks: u64,
    source_lba: u64,
    destination_lba: u64,
    block_size: u64,
}

fn copy_aborted(code: AdditionalSense) -> Sense {
    Sense::new(SenseKey::CopyAborted, code)
}

/// The list identifier whose status the copy manager holds: LIST ID
/// USAGE 00b and 10b (SPC-3 and SPC-4 alike answer COPY STATUS for both).
fn held_list_id(header: &[u8; HEADER_LEN]) -> Option<u8> {
    matches!(list_id_usage(header), LIST_ID_HELD | LIST_ID_NOT_HELD).then_some(header[0])
}

fn list_id_usage(header: &[u8; HEADER_LEN]) -> u8 {
    (header[1] >> 3) & 0x03
}

pub(crate) fn extended_copy<D: BlockDevice>(
    lun: &Lun<D>,
    registry: Option<&CopyRegistry>,
    cmd: &ExtendedCopy,
    data: &dyn DataBuffer,
) -> ScsiResponse {
    let len = cmd.parameter_list_length;
    // No parameter list: nothing to copy, and not an error.
    if len == 0 {
        return ScsiResponse::good();
    }
    if data.len() < len {
        return invalid_field(10, 7).into();
    }
    if len < HEADER_LEN {
        return parameter_list_length_error().into();
    }
    let mut header = [0u8; HEADER_LEN];
    data.read_at(0, &mut header);
    let list_id = held_list_id(&header);
    // The identifier is in use again: whatever an earlier copy left under
    // it is no longer that copy's to report, whether or not this list is
    // accepted.
    if let Some(id) = list_id {
        lun.copy_statuses.forget(id);
    }
    let (cscd_len, segment_len) = match check_header(&header, len) {
        Ok(lengths) => lengths,
        Err(sense) => return sense.into(),
    };
    // Bounded by MAX_DESCRIPTOR_LIST_LEN: read only the descriptors.
    let mut list = vec![0u8; HEADER_LEN + cscd_len + segment_len];
    data.read_at(0, &mut list);
    let (cscds, segments) = match parse(&list, cscd_len) {
        Ok(parsed) => parsed,
        Err(sense) => return sense.into(),
    };
    let units = Units {
        this: lun,
        this_naa: lun.identity().naa(),
        registry,
    };
    let copies = match resolve(&units, &cscds, &segments) {
        Ok(copies) => copies,
        Err(response) => return response,
    };
    let progress = list_id.map(|id| lun.copy_statuses.begin(id, Instant::now()));
    let response = run_all(&copies, progress.as_ref());
    if let Some(progress) = progress {
        progress.finish(response.status == ScsiStatus::Good, Instant::now());
    }
    response
}

/// Check the parameter list header against the limits and the list
/// length; returns the CSCD and segment descriptor list lengths.
fn check_header(h: &[u8; HEADER_LEN], len: usize) -> Result<(usize, usize), Sense> {
    let list_id = h[0];
    match list_id_usage(h) {
        LIST_ID_RESERVED => return Err(invalid_parameter(1, 4)),
        // No list identifier to track: the field must be zero.
        NO_LIST_ID if list_id != 0 => return Err(invalid_parameter(0, 7)),
        _ => {}
    }
    let cscd_len = usize::from(BigEndian::read_u16(&h[2..4]));
    let segment_len = to_usize(BigEndian::read_u32(&h[8..12]));
    if BigEndian::read_u32(&h[12..16]) != 0 {
        // MAXIMUM INLINE DATA LENGTH is zero.
        return Err(Sense::illegal_request(
            AdditionalSense::INLINE_DATA_LENGTH_EXCEEDED,
        ));
    }
    if cscd_len % CSCD_LEN != 0 {
        return Err(invalid_parameter(2, 7));
    }
    // The lengths before the counts: a list too long for the limit is a
    // length error even when it also holds too many descriptors.
    let descriptors = cscd_len.saturating_add(segment_len);
    if descriptors > MAX_DESCRIPTOR_LIST_LEN || HEADER_LEN + descriptors > len {
        return Err(parameter_list_length_error());
    }
    if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(Sense::illegal_request(
            AdditionalSense::TOO_MANY_TARGET_DESCRIPTORS,
        ));
    }
    Ok((cscd_len, segment_len))
}

/// COPY ABORTED, UNREACHABLE COPY TARGET: a segment's CSCD DESCRIPTOR
/// INDEX at `field` names no CSCD descriptor of the list.
fn no_such_cscd(field: usize, index: usize) -> Sense {
    log::debug!("EXTENDED COPY: CSCD descriptor index {index} at byte {field} names no CSCD");
    copy_aborted(AdditionalSense::UNREACHABLE_COPY_TARGET)
}

/// Parse and check the descriptors of `list` (header included).
fn parse(list: &[u8], cscd_len: usize) -> Result<(Vec<Cscd>, Vec<Segment>), Sense> {
    let mut cscds = Vec::new();
    for at in (HEADER_LEN..HEADER_LEN + cscd_len).step_by(CSCD_LEN) {
        let d = &list[at..at + CSCD_LEN];
        if d[0] != CSCD_IDENTIFICATION {
            return Err(Sense::illegal_request(
                AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
            ));
        }
        // Byte 1: LU ID TYPE (bits 7-6) and NUL (bit 5) are ignored.
        if d[1] & 0x1F != DIRECT_ACCESS {
            return Err(invalid_parameter(at + 1, 4));
        }
        let designator_len = usize::from(d[7]);
        if designator_len > MAX_DESIGNATOR_LEN {
            return Err(invalid_parameter(at + 7, 7));
        }
        cscds.push(Cscd {
            offset: at,
            association: (d[5] >> 4) & 0x03,
            designator_type: d[5] & 0x0F,
            designator: d[8..8 + designator_len].to_vec(),
            block_len: BigEndian::read_u24(&d[29..32]),
        });
    }

    // Descriptors of any type carry their length: count them all before
    // looking at their types.
    let mut offsets = Vec::new();
    let mut at = HEADER_LEN + cscd_len;
    while at < list.len() {
        let rest = &list[at..];
        if rest.len() < 4 {
            return Err(parameter_list_length_error());
        }
        let len = 4 + usize::from(BigEndian::read_u16(&rest[2..4]));
        if len > rest.len() {
            return Err(parameter_list_length_error());
        }
        offsets.push(at);
        if offsets.len() > usize::from(MAX_SEGMENT_DESCRIPTORS) {
            return Err(Sense::illegal_request(
                AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS,
            ));
        }
        at += len;
    }

    let mut segments = Vec::new();
    for at in offsets {
        let d = &list[at..];
        if d[0] != SEGMENT_BLOCK_TO_BLOCK {
            return Err(Sense::illegal_request(
                AdditionalSense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
            ));
        }
        if usize::from(BigEndian::read_u16(&d[2..4])) + 4 != BLOCK_TO_BLOCK_LEN {
            return Err(invalid_parameter(at + 2, 7));
        }
        let source = usize::from(BigEndian::read_u16(&d[4..6]));
        if source >= cscds.len() {
            return Err(no_such_cscd(at + 4, source));
        }
        let destination = usize::from(BigEndian::read_u16(&d[6..8]));
        if destination >= cscds.len() {
            return Err(no_such_cscd(at + 6, destination));
        }
        segments.push(Segment {
            offset: at,
            source,
            destination,
            blocks: u64::from(BigEndian::read_u16(&d[10..12])),
            source_lba: BigEndian::read_u64(&d[12..20]),
            destination_lba: BigEndian::read_u64(&d[20..28]),
        });
    }
    Ok((cscds, segments))
}

/// The unit a CSCD descriptor names.
fn resolve_cscd<'a>(units: &Units<'a>, cscd: &Cscd) -> Result<Unit<'a>, Sense> {
    let naa = (cscd.association == 0 && cscd.designator_type == DESIGNATOR_TYPE_NAA)
        .then(|| <[u8; 8]>::try_from(cscd.designator.as_slice()).ok())
        .flatten();
    let unit = naa
        .and_then(|naa| units.lookup(&naa))
        .ok_or_else(|| copy_aborted(AdditionalSense::COPY_TARGET_DEVICE_NOT_REACHABLE))?;
    if cscd.block_len != 0 && cscd.block_len != unit.target().block_size() {
        return Err(invalid_parameter(cscd.offset + 29, 7));
    }
    Ok(unit)
}

/// Resolve the units every segment uses and check what can be checked
/// before copying: state, write protection, block sizes, lengths, ranges.
fn resolve<'a>(
    units: &Units<'a>,
    cscds: &[Cscd],
    segments: &[Segment],
) -> Result<Vec<Copy<'a>>, ScsiResponse> {
    let mut resolved: Vec<Option<Unit<'a>>> = vec![None; cscds.len()];
    let mut unit = |index: usize| -> Result<Unit<'a>, Sense> {
        if let Some(unit) = &resolved[index] {
            return Ok(unit.clone());
        }
        let unit = resolve_cscd(units, &cscds[index])?;
        resolved[index] = Some(unit.clone());
        Ok(unit)
    };
    let mut copies = Vec::new();
    for seg in segments {
        let source = unit(seg.source)?;
        let destination = unit(seg.destination)?;
        let (src, dst) = (source.target(), destination.target());
        if src.stopped() || dst.stopped() {
            return Err(
                Sense::new(SenseKey::NotReady, NOT_READY_INITIALIZING_COMMAND_REQUIRED).into(),
            );
        }
        if dst.read_only() {
            return Err(write_protected().into());
        }
        let block_size = src.block_size();
        if block_size != dst.block_size() {
            return Err(Sense::illegal_request(
                AdditionalSense::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION,
            )
            .into());
        }
        if block_size == 0 {
            return Err(ScsiResponse::internal_failure());
        }
        let block_size = u64::from(block_size);
        if seg.blocks * block_size > u64::from(MAX_SEGMENT_BYTES) {
            return Err(invalid_parameter(seg.offset + 10, 7).into());
        }
        let in_range = |lba: u64, num_blocks: u64| {
            lba.checked_add(seg.blocks)
                .is_some_and(|end| end <= num_blocks)
        };
        let (src_blocks, dst_blocks) = (src.num_blocks(), dst.num_blocks());
        if !in_range(seg.source_lba, src_blocks) || !in_range(seg.destination_lba, dst_blocks) {
            // Initiators expect COPY ABORTED here with a copy target
            // reason or none; none fits, so the log says what it was.
            log::debug!(
                "EXTENDED COPY: segment at byte {} copies {} blocks from LBA {} \
                 ({src_blocks} blocks) to LBA {} ({dst_blocks} blocks): beyond the capacity",
                seg.offset,
                seg.blocks,
                seg.source_lba,
                seg.destination_lba,
            );
            return Err(copy_aborted(AdditionalSense::NO_ADDITIONAL_SENSE).into());
        }
        copies.push(Copy {
            source,
            destination,
            blocks: seg.blocks,
            source_lba: seg.source_lba,
            destination_lba: seg.destination_lba,
            block_size,
        });
    }
    Ok(copies)
}

/// Run every segment in order, reporting to `progress`; the first
/// failure ends the command.
fn run_all(copies: &[Copy<'_>], progress: Option<&CopyInProgress<'_>>) -> ScsiResponse {
    for copy in copies {
        if let Err(response) = run(copy, progress) {
            return response;
        }
        if let Some(progress) = progress {
            progress.segment_processed();
        }
    }
    ScsiResponse::good()
}

/// Move one segment's blocks through a bounded buffer.
fn run(copy: &Copy<'_>, progress: Option<&CopyInProgress<'_>>) -> Result<(), ScsiResponse> {
    if copy.blocks == 0 {
        return Ok(());
    }
    let per_chunk = (CHUNK_BYTES / copy.block_size).max(1);
    let mut buf = vec![0u8; (per_chunk.min(copy.blocks) * copy.block_size) as usize];
    let starts = (0..copy.blocks).step_by(per_chunk as usize);
    // Overlapping ranges on one unit with the destination after the
    // source: copy from the end, so that no source block is overwritten
    // before it has been read.
    let backwards = copy.source.id() == copy.destination.id()
        && copy.destination_lba > copy.source_lba
        && copy.destination_lba < copy.source_lba + copy.blocks;
    let mut starts: Vec<u64> = starts.collect();
    if backwards {
        starts.reverse();
    }
    let (source, destination) = (copy.source.target(), copy.destination.target());
    for start in starts {
        let n = per_chunk.min(copy.blocks - start);
        let chunk = &mut buf[..(n * copy.block_size) as usize];
        let lba = copy.source_lba + start;
        if let Err(err) = source.read(lba, chunk) {
            return Err(copy_failure(&err, lba, Direction::Read));
        }
        let lba = copy.destination_lba + start;
        if let Err(err) = destination.write(lba, chunk) {
            return Err(copy_failure(&err, lba, Direction::Write));
        }
        if let Some(progress) = progress {
            progress.transferred(chunk.len() as u64);
        }
    }
    Ok(())
}

/// A failed read or write of the copy. Errors while segments are processed
/// end in COPY ABORTED (SPC-4 6.4.3.3); the additional sense code says
/// what the device reported. BUSY stays BUSY (retrying may succeed) and
/// write protection stays DATA PROTECT.
fn copy_failure(err: &BlockError, lba: u64, direction: Direction) -> ScsiResponse {
    let response = backend_failure(err, lba, direction);
    match response.sense {
        Some(sense)
            if matches!(
                sense.key,
                SenseKey::MediumError | SenseKey::IllegalRequest | SenseKey::HardwareError
            ) =>
        {
            copy_aborted(sense.code).into()
        }
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::{CopyRegistry, LunIdentity, ScsiStatus};

    fn unit(serial: &str, device: VecDevice, registry: &CopyRegistry) -> Emulator<VecDevice> {
        let identity = LunIdentity::for_device(serial, &device);
        Emulator::new(device, identity).with_copy_registry(registry.clone())
    }

    /// Two 64-block units sharing a registry.
    fn pair() -> (CopyRegistry, Emulator<VecDevice>, Emulator<VecDevice>) {
        let registry = CopyRegistry::new();
        let a = unit("A", VecDevice::new(512, 64), &registry);
        let b = unit("B", VecDevice::new(512, 64), &registry);
        // Different contents, so that a copy is visible.
        b.device().write(0, &vec![0xBB; 64 * 512]).unwrap();
        (registry, a, b)
    }

    fn cscd(naa: [u8; 8], block_len: u32) -> Vec<u8> {
        let mut d = vec![0u8; CSCD_LEN];
        d[0] = CSCD_IDENTIFICATION;
        d[4] = 0x01; // binary
        d[5] = DESIGNATOR_TYPE_NAA;
        d[7] = 8;
        d[8..16].copy_from_slice(&naa);
        BigEndian::write_u24(&mut d[29..32], block_len);
        d
    }

    fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0u8; BLOCK_TO_BLOCK_LEN];
        d[0] = SEGMENT_BLOCK_TO_BLOCK;
        d[3] = 0x18;
        BigEndian::write_u16(&mut d[4..6], src);
        BigEndian::write_u16(&mut d[6..8], dst);
        BigEndian::write_u16(&mut d[10..12], blocks);
        BigEndian::write_u64(&mut d[12..20], src_lba);
        BigEndian::write_u64(&mut d[20..28], dst_lba);
        d
    }

    /// A parameter list with LIST ID USAGE 11b (list identifier 0).
    fn list(cscds: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
        let cscd_bytes: Vec<u8> = cscds.concat();
        let segment_bytes: Vec<u8> = segments.concat();
        let mut l = vec![0u8, 0x18];
        l.extend_from_slice(&(cscd_bytes.len() as u16).to_be_bytes());
        l.extend_from_slice(&[0; 4]);
        l.extend_from_slice(&(segment_bytes.len() as u32).to_be_bytes());
        l.extend_from_slice(&[0; 4]);
        l.extend_from_slice(&cscd_bytes);
        l.extend_from_slice(&segment_bytes);
        l
    }

    fn xcopy(emu: &Emulator<VecDevice>, list: &[u8]) -> ScsiResponse {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        BigEndian::write_u32(&mut cdb[10..14], list.len() as u32);
        emu.execute(&cdb, &mut list.to_vec())
    }

    fn a_to_b(a: &Emulator<VecDevice>, b: &Emulator<VecDevice>, seg: Vec<u8>) -> Vec<u8> {
        list(
            &[cscd(a.identity().naa(), 512), cscd(b.identity().naa(), 512)],
            &[seg],
        )
    }

    fn blocks(emu: &Emulator<VecDevice>, lba: usize, n: usize) -> Vec<u8> {
        emu.device().contents()[lba * 512..(lba + n) * 512].to_vec()
    }

    #[track_caller]
    fn assert_unreachable_copy_target(resp: &ScsiResponse) {
        assert_check(
            resp,
            SenseKey::CopyAborted,
            AdditionalSense::UNREACHABLE_COPY_TARGET,
        );
    }

    #[track_caller]
    fn assert_parameter_field(resp: &ScsiResponse, byte: u16, bit: u8) {
        assert_illegal(resp, AdditionalSense::INVALID_FIELD_IN_PARAMETER_LIST);
        let fp = resp.sense.unwrap().field_pointer.expect("field pointer");
        assert!(!fp.in_cdb);
        assert_eq!((fp.byte, fp.bit), (byte, Some(bit)), "{resp:?}");
    }

    #[test]
    fn copies_between_two_units() {
        let (registry, a, b) = pair();
        let before = b.device().contents();
        let l = a_to_b(&a, &b, segment(0, 1, 16, 8, 40));
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(blocks(&b, 40, 16), blocks(&a, 8, 16));
        let after = b.device().contents();
        assert_eq!(after[..40 * 512], before[..40 * 512]);
        assert_eq!(after[56 * 512..], before[56 * 512..]);
        // A third unit can be the copy manager of a copy it takes no part
        // in; and the copy runs the other way too.
        let c = unit("C", VecDevice::new(512, 8), &registry);
        let l = list(
            &[cscd(b.identity().naa(), 0), cscd(a.identity().naa(), 0)],
            &[segment(0, 1, 4, 0, 60)],
        );
        assert_eq!(xcopy(&c, &l), ScsiResponse::good());
        assert_eq!(blocks(&a, 60, 4), vec![0xBB; 4 * 512]);
        assert!(c.device().calls().is_empty());
    }

    #[test]
    fn several_segments_and_zero_blocks() {
        let (_registry, a, b) = pair();
        let l = list(
            &[cscd(a.identity().naa(), 512), cscd(b.identity().naa(), 512)],
            &[
                segment(0, 1, 2, 0, 10),
                segment(1, 0, 1, 63, 0),
                segment(0, 1, 0, 5, 5),
            ],
        );
        let a_before = a.device().contents();
        assert_eq!(xcopy(&b, &l), ScsiResponse::good());
        assert_eq!(blocks(&b, 10, 2), a_before[..2 * 512]);
        assert_eq!(blocks(&a, 0, 1), vec![0xBB; 512]);
    }

    #[test]
    fn overlapping_copy_within_one_unit_moves_like_memmove() {
        // More than one chunk (2048 blocks of 512 bytes), overlapping.
        let registry = CopyRegistry::new();
        let a = unit("A", VecDevice::new(512, 4096), &registry);
        let before = a.device().contents();
        let naa = a.identity().naa();
        for (src, dst) in [(0u64, 500u64), (1000, 100)] {
            let l = list(&[cscd(naa, 512)], &[segment(0, 0, 3000, src, dst)]);
            let start = a.device().contents();
            assert_eq!(xcopy(&a, &l), ScsiResponse::good());
            let (s, d) = (src as usize * 512, dst as usize * 512);
            assert_eq!(
                a.device().contents()[d..d + 3000 * 512],
                start[s..s + 3000 * 512],
                "{src} -> {dst}"
            );
        }
        assert_ne!(a.device().contents(), before);
        // Reads and writes stay within the 1 MiB buffer.
        assert!(a.device().calls().iter().all(|&(_, _, len)| len <= 1 << 20));
    }

    #[test]
    fn unknown_or_unusable_designators_are_unreachable() {
        let (_registry, a, _b) = pair();
        let unreachable = |resp: &ScsiResponse| {
            assert_check(
                resp,
                SenseKey::CopyAborted,
                AdditionalSense::COPY_TARGET_DEVICE_NOT_REACHABLE,
            )
        };
        let l = list(
            &[cscd(a.identity().naa(), 512), cscd([0x3F; 8], 512)],
            &[segment(0, 1, 1, 0, 0)],
        );
        unreachable(&xcopy(&a, &l));
        // A T10 vendor ID designator, a 16-byte NAA, a port's designator.
        let naa = a.identity().naa();
        let mut t10 = cscd(naa, 512);
        t10[5] = 0x01;
        let mut long = cscd(naa, 512);
        long[7] = 16;
        let mut port = cscd(naa, 512);
        port[5] |= 0x10;
        for other in [t10, long, port] {
            let l = list(&[cscd(naa, 512), other], &[segment(0, 1, 1, 0, 0)]);
            unreachable(&xcopy(&a, &l));
        }
        // An unreachable CSCD no segment uses is fine.
        let l = list(
            &[cscd(naa, 512), cscd([0x3F; 8], 512)],
            &[segment(0, 0, 1, 0, 1)],
        );
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        // A unit that is gone is unreachable.
        let registry = CopyRegistry::new();
        let x = unit("X", VecDevice::new(512, 8), &registry);
        let y = unit("Y", VecDevice::new(512, 8), &registry);
        let l = list(
            &[cscd(x.identity().naa(), 0), cscd(y.identity().naa(), 0)],
            &[segment(0, 1, 1, 0, 0)],
        );
        drop(y);
        unreachable(&xcopy(&x, &l));
    }

    #[test]
    fn too_many_descriptors() {
        let (_registry, a, b) = pair();
        let naa = a.identity().naa();
        let l = list(&vec![cscd(naa, 512); 5], &[segment(0, 0, 1, 0, 1)]);
        assert_illegal(&xcopy(&a, &l), AdditionalSense::TOO_MANY_TARGET_DESCRIPTORS);
        let l = list(&vec![cscd(naa, 512); 4], &[segment(0, 3, 1, 0, 1)]);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        let seg = segment(0, 1, 1, 0, 1);
        let l = list(
            &[cscd(naa, 512), cscd(b.identity().naa(), 512)],
            &vec![seg.clone(); 9],
        );
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS,
        );
        let l = list(
            &[cscd(naa, 512), cscd(b.identity().naa(), 512)],
            &vec![seg.clone(); 8],
        );
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        // Lists longer than MAXIMUM DESCRIPTOR LIST LENGTH (352 bytes) are
        // a length error before the counts are looked at: 5 CSCDs and 9
        // segments (412 bytes), 4 and 9 (380 bytes).
        for cscds in [5, 4] {
            let l = list(&vec![cscd(naa, 512); cscds], &vec![seg.clone(); 9]);
            assert_illegal(&xcopy(&a, &l), AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        }
        // Within the length, each count is checked: 1 CSCD and 9 segments.
        let l = list(&[cscd(naa, 512)], &vec![segment(0, 0, 1, 0, 1); 9]);
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS,
        );
    }

    #[test]
    fn lengths_are_checked() {
        let (_registry, a, b) = pair();
        let good = a_to_b(&a, &b, segment(0, 1, 1, 0, 0));
        // Zero length: nothing happens.
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        assert_eq!(a.execute(&cdb, &mut Vec::<u8>::new()), ScsiResponse::good());
        // Shorter than the header.
        assert_illegal(
            &xcopy(&a, &good[..10]),
            AdditionalSense::PARAMETER_LIST_LENGTH_ERROR,
        );
        // Shorter than the descriptor lists the header announces.
        assert_illegal(
            &xcopy(&a, &good[..good.len() - 1]),
            AdditionalSense::PARAMETER_LIST_LENGTH_ERROR,
        );
        // Longer than the data the transport delivered.
        BigEndian::write_u32(&mut cdb[10..14], good.len() as u32 + 1);
        assert_invalid_field(&a.execute(&cdb, &mut good.clone()), 10, 7);
        // A CSCD list length that is not a multiple of 32.
        let mut l = good.clone();
        l[3] = 65;
        assert_parameter_field(&xcopy(&a, &l), 2, 7);
        // Descriptor lists longer than MAXIMUM DESCRIPTOR LIST LENGTH.
        let mut l = good.clone();
        BigEndian::write_u32(&mut l[8..12], 400);
        l.resize(16 + 64 + 400, 0);
        assert_illegal(&xcopy(&a, &l), AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        // A segment descriptor cut short by the segment list length.
        let mut l = good.clone();
        l[11] = 20;
        assert_illegal(&xcopy(&a, &l), AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        // A block-to-block descriptor of the wrong length.
        let mut l = good.clone();
        l[16 + 64 + 3] = 0x14;
        l[11] = 24;
        l.truncate(16 + 64 + 24);
        assert_parameter_field(&xcopy(&a, &l), 16 + 64 + 2, 7);
        // Inline data.
        let mut l = good.clone();
        l[15] = 4;
        l.extend_from_slice(&[0; 4]);
        assert_illegal(&xcopy(&a, &l), AdditionalSense::INLINE_DATA_LENGTH_EXCEEDED);
        // Trailing bytes after the lists are ignored.
        let mut l = good;
        l.extend_from_slice(&[0xFF; 7]);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
    }

    #[test]
    fn header_and_descriptor_fields_are_checked() {
        let (_registry, a, b) = pair();
        // A to B, block 1 to 1, which stays 0xBB in B unless copied.
        let good = a_to_b(&a, &b, segment(0, 1, 1, 1, 1));
        let seg = 16 + 64;
        // LIST ID USAGE 01b is reserved; 11b needs list identifier 0.
        let mut l = good.clone();
        l[1] = 0x08;
        assert_parameter_field(&xcopy(&a, &l), 1, 4);
        let mut l = good.clone();
        l[0] = 5;
        assert_parameter_field(&xcopy(&a, &l), 0, 7);
        // 00b and 10b with a list identifier, STR and PRIORITY: accepted.
        for byte1 in [0x00, 0x10, 0x21] {
            let mut l = good.clone();
            (l[0], l[1]) = (7, byte1);
            assert_eq!(xcopy(&a, &l), ScsiResponse::good(), "{byte1:#x}");
        }
        assert_eq!(blocks(&b, 1, 1), blocks(&a, 1, 1));
        b.device().write(1, &[0xBB; 512]).unwrap();
        let settled = b.device().contents();
        // CSCD type, device type and designator length.
        let mut l = good.clone();
        l[16 + 32] = 0xE0;
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
        );
        let mut l = good.clone();
        l[16 + 32 + 1] = 0x01;
        assert_parameter_field(&xcopy(&a, &l), 16 + 32 + 1, 4);
        let mut l = good.clone();
        l[16 + 7] = 21;
        assert_parameter_field(&xcopy(&a, &l), 16 + 7, 7);
        // Segment type and CSCD indexes.
        let mut l = good.clone();
        l[seg] = 0x0A;
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
        );
        let mut l = good.clone();
        l[seg + 5] = 2;
        assert_unreachable_copy_target(&xcopy(&a, &l));
        let mut l = good.clone();
        l[seg + 6] = 0x80;
        assert_unreachable_copy_target(&xcopy(&a, &l));
        // DISK BLOCK LENGTH that is not the unit's.
        let mut l = good.clone();
        BigEndian::write_u24(&mut l[16 + 32 + 29..16 + 64], 4096);
        assert_parameter_field(&xcopy(&a, &l), 16 + 32 + 29, 7);
        // A segment longer than MAXIMUM SEGMENT LENGTH.
        let registry = CopyRegistry::new();
        let big = unit("big", VecDevice::geometry(4096, 1 << 20), &registry);
        let naa = big.identity().naa();
        let l = list(&[cscd(naa, 4096)], &[segment(0, 0, 4097, 0, 8192)]);
        assert_parameter_field(&xcopy(&big, &l), 16 + 32 + 10, 7);
        let l = list(&[cscd(naa, 4096)], &[segment(0, 0, 4096, 0, 8192)]);
        assert_eq!(xcopy(&big, &l), ScsiResponse::good());
        // Nothing was copied by any refused list.
        assert_eq!(b.device().contents(), settled);
    }

    #[test]
    fn ranges_are_checked_before_anything_moves() {
        let (_registry, a, b) = pair();
        let before = b.device().contents();
        for (src, dst) in [(63, 0), (0, 63), (u64::MAX, 0), (0, u64::MAX - 1)] {
            // The first segment is fine; the second is out of range.
            let l = list(
                &[cscd(a.identity().naa(), 512), cscd(b.identity().naa(), 512)],
                &[segment(0, 1, 2, 0, 0), segment(0, 1, 2, src, dst)],
            );
            assert_check(
                &xcopy(&a, &l),
                SenseKey::CopyAborted,
                AdditionalSense::NO_ADDITIONAL_SENSE,
            );
        }
        assert_eq!(b.device().contents(), before);
        let l = a_to_b(&a, &b, segment(0, 1, 1, 63, 63));
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
    }

    #[test]
    fn read_only_destination_is_write_protected() {
        let registry = CopyRegistry::new();
        let rw = unit("rw", VecDevice::new(512, 8), &registry);
        let ro = unit("ro", VecDevice::new(512, 8).read_only(), &registry);
        let l = list(
            &[
                cscd(rw.identity().naa(), 512),
                cscd(ro.identity().naa(), 512),
            ],
            &[segment(0, 1, 1, 0, 0)],
        );
        assert_check(
            &xcopy(&rw, &l),
            SenseKey::DataProtect,
            AdditionalSense::WRITE_PROTECTED,
        );
        assert!(ro.device().calls().is_empty());
        // A read-only source, and a read-only copy manager, are fine.
        let l = list(
            &[
                cscd(ro.identity().naa(), 512),
                cscd(rw.identity().naa(), 512),
            ],
            &[segment(0, 1, 1, 0, 0)],
        );
        assert_eq!(xcopy(&ro, &l), ScsiResponse::good());
    }

    #[test]
    fn block_sizes_must_match() {
        let registry = CopyRegistry::new();
        let small = unit("512", VecDevice::new(512, 64), &registry);
        let large = unit("4k", VecDevice::new(4096, 8), &registry);
        let l = list(
            &[
                cscd(small.identity().naa(), 512),
                cscd(large.identity().naa(), 4096),
            ],
            &[segment(0, 1, 8, 0, 0)],
        );
        assert_illegal(
            &xcopy(&small, &l),
            AdditionalSense::INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION,
        );
    }

    #[test]
    fn device_errors_abort_the_copy() {
        let registry = CopyRegistry::new();
        let bad = unit(
            "bad",
            VecDevice::new(512, 8).failing(BlockError::Medium),
            &registry,
        );
        let good = unit("good", VecDevice::new(512, 8), &registry);
        let naas = [
            cscd(bad.identity().naa(), 0),
            cscd(good.identity().naa(), 0),
        ];
        let resp = xcopy(&good, &list(&naas, &[segment(0, 1, 1, 0, 0)]));
        assert_check(
            &resp,
            SenseKey::CopyAborted,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        );
        let resp = xcopy(&good, &list(&naas, &[segment(1, 0, 1, 0, 0)]));
        assert_check(&resp, SenseKey::CopyAborted, AdditionalSense::WRITE_ERROR);
        *bad.device().fail.lock().unwrap() = Some(BlockError::Busy);
        let resp = xcopy(&good, &list(&naas, &[segment(0, 1, 1, 0, 0)]));
        assert_eq!(resp.status, ScsiStatus::Busy);
    }

    #[test]
    fn stopped_units_are_not_ready_and_write_through_is_honoured() {
        let registry = CopyRegistry::new();
        let a = unit("a", VecDevice::new(512, 8).with_write_cache(), &registry);
        let b = unit("b", VecDevice::new(512, 8), &registry);
        let l = list(
            &[cscd(b.identity().naa(), 0), cscd(a.identity().naa(), 0)],
            &[segment(0, 1, 2, 0, 0)],
        );
        // START STOP UNIT, START=0, on the source.
        assert_eq!(
            b.execute(&[0x1B, 0, 0, 0, 0, 0], &mut Vec::<u8>::new()),
            ScsiResponse::good()
        );
        assert_check(
            &xcopy(&a, &l),
            SenseKey::NotReady,
            AdditionalSense::LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED,
        );
        b.execute(&[0x1B, 0, 0, 0, 1, 0], &mut Vec::<u8>::new());
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(a.device().calls(), [('w', 0, 1024)]);
        // MODE SELECT(6) of the caching page with WCE off: writes are FUA.
        let mut caching = vec![0u8; 4 + 20];
        caching[4] = 0x08;
        caching[5] = 0x12;
        let resp = a.execute(&[0x15, 0x10, 0, 0, 24, 0], &mut caching);
        assert_eq!(resp, ScsiResponse::good());
        assert!(!a.write_cache_enabled());
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(a.device().calls().last(), Some(&('f', 0, 1024)));
    }

    fn inquiry_byte5(emu: &Emulator<VecDevice>) -> u8 {
        let mut buf = vec![0u8; 36];
        emu.execute(&[0x12, 0, 0, 0, 36, 0], &mut buf);
        buf[5]
    }

    fn listed(emu: &Emulator<VecDevice>) -> Vec<(u8, u16)> {
        let mut buf = vec![0u8; 4096];
        let cdb = [0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
        let resp = emu.execute(&cdb, &mut buf);
        let n = resp.data_in_len.unwrap();
        buf[4..n]
            .chunks(8)
            .map(|d| (d[0], BigEndian::read_u16(&d[2..4])))
            .collect()
    }

    #[test]
    fn every_unit_is_a_copy_manager_registry_or_not() {
        let plain = emulator(VecDevice::new(512, 8));
        let registered = emulator(VecDevice::new(512, 8)).with_copy_registry(CopyRegistry::new());
        for emu in [&plain, &registered] {
            assert_eq!(inquiry_byte5(emu), 0x08, "3PC only");
            let ops = listed(emu);
            for command in [(0x83, 0x00), (0x84, 0x00), (0x84, 0x03)] {
                assert!(ops.contains(&command), "{command:02x?}");
            }
        }
        assert_eq!(listed(&plain), listed(&registered));
        // A header without descriptors: nothing to copy.
        assert_eq!(xcopy(&plain, &[0u8; 16]), ScsiResponse::good());
    }

    /// The parameter list header of `l` with `list_id` and LIST ID USAGE
    /// `usage`.
    fn with_list_id(mut l: Vec<u8>, list_id: u8, usage: u8) -> Vec<u8> {
        l[0] = list_id;
        l[1] = usage << 3;
        l
    }

    /// RECEIVE COPY STATUS(LID1) of `list_id`, allocation length 1024.
    fn copy_status(emu: &Emulator<VecDevice>, list_id: u8) -> (ScsiResponse, Vec<u8>) {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x84;
        cdb[2] = list_id;
        BigEndian::write_u32(&mut cdb[10..14], 1024);
        let mut buf = vec![0xEEu8; 1024];
        let resp = emu.execute(&cdb, &mut buf);
        buf.truncate(resp.data_in_len.unwrap_or(0));
        (resp, buf)
    }

    #[track_caller]
    fn assert_nothing_held(emu: &Emulator<VecDevice>, list_id: u8) {
        assert_invalid_field(&copy_status(emu, list_id).0, 2, 7);
    }

    #[test]
    fn copies_within_a_unit_without_a_registry() {
        let a = emulator(VecDevice::new(512, 4096));
        assert!(a.copy_registry().is_none());
        let naa = a.identity().naa();
        let before = a.device().contents();
        // The first half to the second half.
        let l = list(&[cscd(naa, 512)], &[segment(0, 0, 2048, 0, 2048)]);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(blocks(&a, 2048, 2048), before[..2048 * 512]);
        // Overlapping ranges within the unit move like memmove.
        for (src, dst) in [(0u64, 500u64), (1000, 100)] {
            let start = a.device().contents();
            let l = list(&[cscd(naa, 0)], &[segment(0, 0, 3000, src, dst)]);
            assert_eq!(xcopy(&a, &l), ScsiResponse::good());
            let (s, d) = (src as usize * 512, dst as usize * 512);
            assert_eq!(
                a.device().contents()[d..d + 3000 * 512],
                start[s..s + 3000 * 512]
            );
        }
        // Any other designator is unreachable without a registry.
        let l = list(
            &[cscd(naa, 512), cscd([0x60; 8], 512)],
            &[segment(0, 1, 1, 0, 0)],
        );
        assert_check(
            &xcopy(&a, &l),
            SenseKey::CopyAborted,
            AdditionalSense::COPY_TARGET_DEVICE_NOT_REACHABLE,
        );
    }

    #[test]
    fn the_own_designator_names_the_unit_itself_before_the_registry() {
        // Two units with one serial: the registry names the newer one, yet
        // each unit's own designator names itself.
        let registry = CopyRegistry::new();
        let first = unit("same", VecDevice::new(512, 8), &registry);
        let second = unit("same", VecDevice::new(512, 8), &registry);
        second.device().write(0, &[0x22; 8 * 512]).unwrap();
        let untouched = second.device().contents();
        let l = list(
            &[cscd(first.identity().naa(), 0)],
            &[segment(0, 0, 1, 0, 7)],
        );
        assert_eq!(xcopy(&first, &l), ScsiResponse::good());
        assert_eq!(blocks(&first, 7, 1), blocks(&first, 0, 1));
        assert_eq!(second.device().contents(), untouched);
    }

    #[test]
    fn lu_id_type_and_nul_are_ignored() {
        let a = emulator(VecDevice::new(512, 64));
        for byte1 in [0x40, 0x80, 0xC0, 0x20, 0xE0] {
            let mut d = cscd(a.identity().naa(), 512);
            d[1] = byte1;
            let l = list(&[d], &[segment(0, 0, 1, 0, 1)]);
            assert_eq!(xcopy(&a, &l), ScsiResponse::good(), "{byte1:#x}");
        }
    }

    /// What libiscsi's ExtendedCopy and ReceiveCopyResults tests send a
    /// lone unit, in the order its suite runs them, and what they accept.
    #[test]
    fn answers_what_libiscsi_expects_from_a_lone_unit() {
        let a = emulator(VecDevice::new(512, 8192));
        let naa = a.identity().naa();
        let end = 8192 - 2048;
        let one = |seg: Vec<u8>| list(&[cscd(naa, 512)], &[seg]);
        // Simple: 2048 blocks from the start to the end, LIST ID USAGE 10b.
        let l = with_list_id(one(segment(0, 0, 2048, 0, end)), 1, 0b10);
        let before = a.device().contents();
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(blocks(&a, end as usize, 2048), before[..2048 * 512]);
        // ParamHdr: a CSCD and a segment cut short by one byte, and no
        // parameter list at all.
        let l = with_list_id(one(segment(0, 0, 2048, 0, end)), 1, 0b00);
        for len in [16 + 32 - 1, 16 + 32 + 28 - 1] {
            assert_illegal(
                &xcopy(&a, &l[..len]),
                AdditionalSense::PARAMETER_LIST_LENGTH_ERROR,
            );
        }
        assert_eq!(xcopy(&a, &[]), ScsiResponse::good());
        // DescrLimits: one CSCD too many, one segment too many, and a list
        // longer than MAXIMUM DESCRIPTOR LIST LENGTH.
        let seg = segment(0, 0, 2048, 0, end);
        let l = with_list_id(
            list(&vec![cscd(naa, 512); 5], std::slice::from_ref(&seg)),
            1,
            0,
        );
        assert_illegal(&xcopy(&a, &l), AdditionalSense::TOO_MANY_TARGET_DESCRIPTORS);
        let l = with_list_id(list(&[cscd(naa, 512)], &vec![seg.clone(); 9]), 2, 0);
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::TOO_MANY_SEGMENT_DESCRIPTORS,
        );
        let l = with_list_id(list(&vec![cscd(naa, 512); 5], &vec![seg; 9]), 3, 0);
        assert_illegal(&xcopy(&a, &l), AdditionalSense::PARAMETER_LIST_LENGTH_ERROR);
        // DescrType: a Fibre Channel N_Port_Name CSCD (E0h), a
        // stream-to-stream segment (03h, 20 bytes).
        let mut l = with_list_id(one(segment(0, 0, 2048, 0, end)), 1, 0);
        l[16] = 0xE0;
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
        );
        let mut stream = vec![0u8; 20];
        (stream[0], stream[3]) = (0x03, 0x10);
        let l = with_list_id(list(&[cscd(naa, 512)], &[stream]), 1, 0);
        assert_illegal(
            &xcopy(&a, &l),
            AdditionalSense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
        );
        // ValidTgtDescr: a reserved LU ID TYPE is ignored (SPC-4).
        let mut l = with_list_id(one(segment(0, 0, 2048, 0, end)), 1, 0);
        l[17] = 0x80;
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        // ValidSegDescr: a destination index naming no CSCD, and a
        // destination range beyond the capacity.
        let l = with_list_id(one(segment(0, 1, 2048, 0, end)), 1, 0);
        assert_unreachable_copy_target(&xcopy(&a, &l));
        let l = with_list_id(one(segment(0, 0, 2048, 0, 8191)), 1, 0);
        assert_check(
            &xcopy(&a, &l),
            SenseKey::CopyAborted,
            AdditionalSense::NO_ADDITIONAL_SENSE,
        );
        // CopyStatus: the refused lists left nothing under list
        // identifier 1 (and discarded what the good ones had left).
        assert_nothing_held(&a, 1);
        let l = with_list_id(one(segment(0, 0, 2048, 0, end)), 1, 0b00);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        let (resp, data) = copy_status(&a, 1);
        assert_eq!(resp, ScsiResponse::data_in(12));
        assert_eq!(data[..8], [0, 0, 0, 8, 0x01, 0, 1, 0x00]);
        assert_eq!(BigEndian::read_u32(&data[8..12]), 2048 * 512);
        // OpParams.
        let mut cdb = [0u8; 16];
        (cdb[0], cdb[1], cdb[12]) = (0x84, 0x03, 4);
        let resp = a.execute(&cdb, &mut vec![0u8; 1024]);
        assert_eq!(resp.status, ScsiStatus::Good);
    }

    #[test]
    fn copy_status_is_held_per_list_identifier() {
        let a = emulator(VecDevice::new(512, 64));
        let naa = a.identity().naa();
        let two = list(
            &[cscd(naa, 512)],
            &[segment(0, 0, 2, 0, 10), segment(0, 0, 3, 20, 30)],
        );
        // 00b and 10b hold the status until it has been read once.
        for (list_id, usage) in [(4, 0b00), (5, 0b10)] {
            assert_nothing_held(&a, list_id);
            let l = with_list_id(two.clone(), list_id, usage);
            assert_eq!(xcopy(&a, &l), ScsiResponse::good());
            let (resp, data) = copy_status(&a, list_id);
            assert_eq!(resp, ScsiResponse::data_in(12));
            assert_eq!(data, [0, 0, 0, 8, 0x01, 0, 2, 0, 0, 0, 0x0A, 0x00]);
            assert_nothing_held(&a, list_id);
        }
        // 11b holds nothing.
        assert_eq!(xcopy(&a, &two), ScsiResponse::good());
        assert_nothing_held(&a, 0);
        // Two identifiers at once, each answered on its own.
        let l = with_list_id(two.clone(), 6, 0);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        let l = with_list_id(list(&[cscd(naa, 512)], &[segment(0, 0, 1, 0, 1)]), 7, 0);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_eq!(copy_status(&a, 7).1[5..7], [0, 1]);
        assert_eq!(copy_status(&a, 6).1[5..7], [0, 2]);
        // A refused list under an identifier discards what was held.
        let l = with_list_id(two.clone(), 8, 0);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        let mut refused = with_list_id(two.clone(), 8, 0);
        refused[16] = 0xE0;
        assert_illegal(
            &xcopy(&a, &refused),
            AdditionalSense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
        );
        assert_nothing_held(&a, 8);
        // A short allocation length returns part of it and keeps it.
        let l = with_list_id(two, 9, 0);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        let mut cdb = [0u8; 16];
        (cdb[0], cdb[2], cdb[13]) = (0x84, 9, 8);
        let mut buf = vec![0u8; 64];
        assert_eq!(a.execute(&cdb, &mut buf), ScsiResponse::data_in(8));
        assert_eq!(buf[..8], [0, 0, 0, 8, 0x01, 0, 2, 0]);
        assert_eq!(copy_status(&a, 9).0, ScsiResponse::data_in(12));
    }

    #[test]
    fn a_copy_that_fails_while_running_completes_with_errors() {
        let a = emulator(VecDevice::new(512, 64).failing(BlockError::Medium));
        let l = with_list_id(
            list(&[cscd(a.identity().naa(), 512)], &[segment(0, 0, 1, 0, 1)]),
            2,
            0,
        );
        assert_check(
            &xcopy(&a, &l),
            SenseKey::CopyAborted,
            AdditionalSense::UNRECOVERED_READ_ERROR,
        );
        let (resp, data) = copy_status(&a, 2);
        assert_eq!(resp, ScsiResponse::data_in(12));
        assert_eq!(data, [0, 0, 0, 8, 0x02, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn copy_statuses_belong_to_the_unit_the_copy_was_sent_to() {
        let (_registry, a, b) = pair();
        let l = with_list_id(a_to_b(&a, &b, segment(0, 1, 1, 0, 0)), 3, 0);
        assert_eq!(xcopy(&a, &l), ScsiResponse::good());
        assert_nothing_held(&b, 3);
        assert_eq!(copy_status(&a, 3).0, ScsiResponse::data_in(12));
    }

    #[test]
    fn receive_copy_operating_parameters_layout() {
        let registry = CopyRegistry::new();
        let emu = unit("a", VecDevice::new(4096, 8), &registry);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x84;
        cdb[1] = 0x03;
        cdb[13] = 0xFF;
        let mut buf = vec![0xEEu8; 255];
        let resp = emu.execute(&cdb, &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(46));
        let b = &buf[..46];
        assert_eq!(BigEndian::read_u32(&b[0..4]), 42, "AVAILABLE DATA");
        assert_eq!(b[4], 0x01, "SNLID");
        assert_eq!(
            BigEndian::read_u16(&b[8..10]),
            4,
            "MAXIMUM CSCD DESCRIPTOR COUNT"
        );
        assert_eq!(
            BigEndian::read_u16(&b[10..12]),
            8,
            "MAXIMUM SEGMENT DESCRIPTOR COUNT"
        );
        assert_eq!(BigEndian::read_u32(&b[12..16]), 4 * 32 + 8 * 28);
        assert_eq!(
            BigEndian::read_u32(&b[16..20]),
            16 << 20,
            "MAXIMUM SEGMENT LENGTH"
        );
        assert_eq!(&b[20..32], &[0; 12], "no inline, held or stream data");
        assert_eq!(BigEndian::read_u16(&b[34..36]), 1);
        assert_eq!(b[36], 1);
        assert_eq!(b[37], 12, "data segment granularity: 4096 bytes");
        assert_eq!(&b[38..43], &[0; 5]);
        assert_eq!(&b[43..], &[2, 0x02, 0xE4]);
        // Truncated to the allocation length.
        cdb[13] = 8;
        let resp = emu.execute(&cdb, &mut buf);
        assert_eq!(resp, ScsiResponse::data_in(8));
        // Other service actions (RECEIVE DATA, FAILED SEGMENT DETAILS,
        // the LID4 ones) are not implemented.
        for sa in [0x01, 0x04, 0x05, 0x07] {
            cdb[1] = sa;
            assert_invalid_field(&emu.execute(&cdb, &mut buf), 1, 4);
        }
    }
}
