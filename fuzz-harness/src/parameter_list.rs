//! The `parameter_list` target: arbitrary parameter lists behind
//! well-formed CDBs.

use scsi_emu::{ScsiResponse, ScsiStatus};
use scsi_sense_codes::{AdditionalSense, SenseKey};

use crate::buffer::Buffer;
use crate::input::Input;
use crate::lun::{Executed, GEOMETRIES, Lun, hex};

/// Largest parameter list sent (a 16-bit length field's maximum).
const MAX_LIST_LEN: usize = 0xFFFF;

/// The command a [`ParameterListCase`] sends; the selector byte picks one
/// modulo the number of variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ParameterListCommand {
    /// UNMAP (42h) with the payload as the parameter list.
    Unmap = 0,
    /// UNMAP with a valid header and block descriptors built from the
    /// payload (LBA knob, block count).
    UnmapDescriptors,
    /// MODE SELECT(6) (15h) with the payload as the parameter list.
    ModeSelect6,
    /// MODE SELECT(10) (55h) with the payload as the parameter list.
    ModeSelect10,
    /// MODE SELECT(6) of a page the unit reports (MODE SENSE first), its
    /// changeable bits flipped by the payload.
    ModeSelect6Page,
    /// MODE SELECT(10), likewise.
    ModeSelect10Page,
    /// COMPARE AND WRITE (89h) over blocks preset to a known pattern; the
    /// compare half matches unless the flags say otherwise.
    CompareAndWrite,
    /// WRITE SAME(10) (41h) of one block built from the payload.
    WriteSame10,
    /// WRITE SAME(16) (93h), with UNMAP, ANCHOR and NDOB from the flags.
    WriteSame16,
    /// EXTENDED COPY(LID1) (83h/00h) with the payload as the parameter list.
    ExtendedCopy,
    /// EXTENDED COPY(LID1) with an identification CSCD descriptor naming
    /// this unit (from VPD page 83h) and block-to-block segments.
    ExtendedCopySegments,
    /// PERSISTENT RESERVE OUT (5Fh): REGISTER, then the service action the
    /// flags pick, then PERSISTENT RESERVE IN to read the result.
    PersistentReserveOut,
    /// WRITE(16) of a scattered buffer, then READ(16) into another.
    WriteReadBack,
    /// VERIFY(10) (2Fh) with BYTCHK set, against blocks preset to a known
    /// pattern.
    VerifyBytes,
    /// LOG SELECT (4Ch) with the payload as the parameter list.
    LogSelect,
    /// SEND DIAGNOSTIC (1Dh) with the payload as the parameter list.
    SendDiagnostic,
    /// FORMAT UNIT (04h) with FMTDATA and the payload after a short header
    /// whose defect list length matches it.
    FormatUnit,
    /// ORWRITE(16) (8Bh) of data built from the payload over blocks preset
    /// to a known pattern.
    OrWrite,
    /// SANITIZE (48h) OVERWRITE with the payload as the parameter list
    /// (IMMED clear, so the overwrite is over when the command ends).
    SanitizeOverwrite,
}

impl ParameterListCommand {
    /// Every command, in selector order.
    pub const ALL: [ParameterListCommand; 19] = [
        ParameterListCommand::Unmap,
        ParameterListCommand::UnmapDescriptors,
        ParameterListCommand::ModeSelect6,
        ParameterListCommand::ModeSelect10,
        ParameterListCommand::ModeSelect6Page,
        ParameterListCommand::ModeSelect10Page,
        ParameterListCommand::CompareAndWrite,
        ParameterListCommand::WriteSame10,
        ParameterListCommand::WriteSame16,
        ParameterListCommand::ExtendedCopy,
        ParameterListCommand::ExtendedCopySegments,
        ParameterListCommand::PersistentReserveOut,
        ParameterListCommand::WriteReadBack,
        ParameterListCommand::VerifyBytes,
        ParameterListCommand::LogSelect,
        ParameterListCommand::SendDiagnostic,
        ParameterListCommand::FormatUnit,
        ParameterListCommand::OrWrite,
        ParameterListCommand::SanitizeOverwrite,
    ];

    /// The command a selector byte picks.
    pub fn from_selector(selector: u8) -> ParameterListCommand {
        Self::ALL[usize::from(selector) % Self::ALL.len()]
    }
}

/// The input of the `parameter_list` target, decoded.
///
/// Layout: `command flags count lba geometry segmentation payload...`:
///
/// * `command` picks a [`ParameterListCommand`];
/// * `flags` sets command bits (FUA, UNMAP, SP, a deliberate miscompare,
///   ...; see each command);
/// * `count` is a block or descriptor count;
/// * `lba` picks the starting LBA: below 80h it is taken modulo the
///   capacity, from 80h up it counts back from the end of the device, so
///   that ranges running past the end occur;
/// * `geometry` picks one of the small [`GEOMETRIES`] (the one beyond 2^32
///   blocks is left out: a WRITE SAME to the end of it would be 2 TiB);
/// * `segmentation` shapes the data-out buffer as in
///   [`CdbCommand`](crate::CdbCommand);
/// * `payload` is the parameter list or the data it is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterListCase {
    /// The command sent.
    pub command: ParameterListCommand,
    /// Command bits.
    pub flags: u8,
    /// Block or descriptor count.
    pub count: u8,
    /// LBA selector.
    pub lba: u8,
    /// Geometry selector.
    pub geometry: u8,
    /// Shape of the data-out buffer.
    pub segmentation: u8,
    /// The parameter list, or what it is built from.
    pub payload: Vec<u8>,
}

impl ParameterListCase {
    /// Decode fuzz input; every byte string is a case.
    pub fn from_bytes(bytes: &[u8]) -> ParameterListCase {
        let mut input = Input::new(bytes);
        ParameterListCase {
            command: ParameterListCommand::from_selector(input.u8()),
            flags: input.u8(),
            count: input.u8(),
            lba: input.u8(),
            geometry: input.u8(),
            segmentation: input.u8(),
            payload: input.rest().to_vec(),
        }
    }

    /// Encode; `from_bytes(&case.to_bytes()) == case`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![
            self.command as u8,
            self.flags,
            self.count,
            self.lba,
            self.geometry,
            self.segmentation,
        ];
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Run a `parameter_list` input (see [`ParameterListCase`] for the layout)
/// and check every response, and the device contents where the outcome is
/// known; panics on a violation. Returns what ran.
pub fn run_parameter_list_case(bytes: &[u8]) -> Vec<Executed> {
    let case = ParameterListCase::from_bytes(bytes);
    // The last geometry is the huge one (see the layout above).
    let small = case.geometry % (GEOMETRIES.len() as u8 - 1);
    let mut run = Run {
        lun: Lun::new(small),
        case: &case,
    };
    match case.command {
        ParameterListCommand::Unmap => run.unmap_raw(),
        ParameterListCommand::UnmapDescriptors => run.unmap_descriptors(),
        ParameterListCommand::ModeSelect6 => run.mode_select_raw(false),
        ParameterListCommand::ModeSelect10 => run.mode_select_raw(true),
        ParameterListCommand::ModeSelect6Page => run.mode_select_page(false),
        ParameterListCommand::ModeSelect10Page => run.mode_select_page(true),
        ParameterListCommand::CompareAndWrite => run.compare_and_write(),
        ParameterListCommand::WriteSame10 => run.write_same(false),
        ParameterListCommand::WriteSame16 => run.write_same(true),
        ParameterListCommand::ExtendedCopy => run.extended_copy_raw(),
        ParameterListCommand::ExtendedCopySegments => run.extended_copy_segments(),
        ParameterListCommand::PersistentReserveOut => run.persistent_reserve_out(),
        ParameterListCommand::WriteReadBack => run.write_read_back(),
        ParameterListCommand::VerifyBytes => run.verify_bytes(),
        ParameterListCommand::LogSelect => run.log_select(),
        ParameterListCommand::SendDiagnostic => run.send_diagnostic(),
        ParameterListCommand::FormatUnit => run.format_unit(),
        ParameterListCommand::OrWrite => run.orwrite(),
        ParameterListCommand::SanitizeOverwrite => run.sanitize_overwrite(),
    }
    run.health_check();
    run.lun.log
}

/// A bit of `flags`.
fn bit(flags: u8, n: u8) -> bool {
    flags & (1 << n) != 0
}

/// `len` bytes derived from `seed` and `salt`, never all zero, so that
/// stored data is told apart from a fresh (zero) device.
fn pattern(seed: &[u8], len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let s = if seed.is_empty() {
                0
            } else {
                seed[i % seed.len()]
            };
            s ^ (i as u8).wrapping_mul(31) ^ salt ^ 0x5A
        })
        .collect()
}

struct Run<'a> {
    lun: Lun,
    case: &'a ParameterListCase,
}

impl<'a> Run<'a> {
    fn flags(&self, n: u8) -> bool {
        bit(self.case.flags, n)
    }

    fn payload(&self) -> &'a [u8] {
        &self.case.payload
    }

    /// The LBA the `lba` selector picks (see [`ParameterListCase`]).
    fn pick_lba(&self, knob: u8) -> u64 {
        let cap = self.lun.num_blocks();
        if knob & 0x80 != 0 {
            cap.saturating_sub(u64::from(knob & 0x7F))
        } else {
            u64::from(knob) % cap
        }
    }

    fn in_range(&self, lba: u64, blocks: u64) -> bool {
        lba.checked_add(blocks)
            .is_some_and(|end| end <= self.lun.num_blocks())
    }

    fn block_len(&self) -> usize {
        self.lun.block_size() as usize
    }

    /// A data-out buffer holding exactly `data`, shaped by the case.
    fn data_out(&self, data: &[u8]) -> Buffer {
        Buffer::new(data, data.len(), self.case.segmentation)
    }

    /// Execute with a data-in buffer of `len` bytes; the data-in produced.
    fn data_in(&mut self, cdb: &[u8], len: usize) -> (ScsiResponse, Vec<u8>) {
        let mut buffer = Buffer::new(&[], len, self.case.segmentation.rotate_left(3));
        let response = self.lun.execute(cdb, &mut buffer);
        let produced = response.data_in_len.unwrap_or(0);
        let mut data = buffer.to_vec();
        data.truncate(produced);
        (response, data)
    }

    fn execute(&mut self, cdb: &[u8], data: &[u8]) -> ScsiResponse {
        let mut buffer = self.data_out(data);
        self.lun.execute(cdb, &mut buffer)
    }

    /// Commands any unit must still answer after whatever came before.
    fn health_check(&mut self) {
        self.execute(&[0x00, 0, 0, 0, 0, 0], &[]);
        self.data_in(&[0x03, 0, 0, 0, 252, 0], 252);
        self.data_in(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32);
    }

    fn unmap_cdb(&self, len: usize) -> [u8; 10] {
        let [hi, lo] = (len as u16).to_be_bytes();
        let anchor = u8::from(self.flags(0));
        [0x42, anchor, 0, 0, 0, 0, 0, hi, lo, 0]
    }

    fn unmap_raw(&mut self) {
        let list = &self.case.payload[..self.payload().len().min(MAX_LIST_LEN)];
        let cdb = self.unmap_cdb(list.len());
        self.execute(&cdb, list);
    }

    fn unmap_descriptors(&mut self) {
        // Each descriptor takes two payload bytes: an LBA selector and a
        // block count.
        let n = usize::from(self.case.count % 8);
        let mut list = Vec::with_capacity(8 + 16 * n);
        list.extend_from_slice(&((6 + 16 * n) as u16).to_be_bytes());
        list.extend_from_slice(&((16 * n) as u16).to_be_bytes());
        list.extend_from_slice(&[0; 4]);
        let mut input = Input::new(self.payload());
        for _ in 0..n {
            let lba = self.pick_lba(input.u8());
            let blocks = u32::from(input.u8());
            list.extend_from_slice(&lba.to_be_bytes());
            list.extend_from_slice(&blocks.to_be_bytes());
            list.extend_from_slice(&[0; 4]);
        }
        let cdb = self.unmap_cdb(list.len());
        self.execute(&cdb, &list);
    }

    /// PF set (the pages follow the standard format), SP from flag 0.
    fn mode_select_cdb(&self, ten: bool, len: usize) -> Vec<u8> {
        let b1 = 0x10 | u8::from(self.flags(0));
        if ten {
            let [hi, lo] = (len as u16).to_be_bytes();
            vec![0x55, b1, 0, 0, 0, 0, 0, hi, lo, 0]
        } else {
            vec![0x15, b1, 0, 0, len as u8, 0]
        }
    }

    fn mode_select_raw(&mut self, ten: bool) {
        let max = if ten { MAX_LIST_LEN } else { 0xFF };
        let list = self.case.payload[..self.payload().len().min(max)].to_vec();
        let cdb = self.mode_select_cdb(ten, list.len());
        self.execute(&cdb, &list);
    }

    /// MODE SENSE of one page; the page (without the header and block
    /// descriptors) if the unit returned it whole.
    fn mode_sense_page(&mut self, ten: bool, page: u8, control: u8) -> Option<Vec<u8>> {
        let pc_page = control << 6 | page;
        let (response, data) = if ten {
            self.data_in(&[0x5A, 0x08, pc_page, 0, 0, 0, 0, 0x01, 0x00, 0], 256)
        } else {
            self.data_in(&[0x1A, 0x08, pc_page, 0, 0xFF, 0], 255)
        };
        if response.status != ScsiStatus::Good {
            return None;
        }
        let (header, descriptors) = if ten {
            (
                8,
                usize::from(u16::from_be_bytes([*data.get(6)?, *data.get(7)?])),
            )
        } else {
            (4, usize::from(*data.get(3)?))
        };
        let at = header + descriptors;
        let len = 2 + usize::from(*data.get(at + 1)?);
        let body = data.get(at..at + len)?;
        (body[0] & 0x3F == page).then(|| body.to_vec())
    }

    fn mode_select_page(&mut self, ten: bool) {
        // Caching, control, informational exceptions control, read-write
        // error recovery.
        const PAGES: [u8; 4] = [0x08, 0x0A, 0x1C, 0x01];
        let page = PAGES[usize::from(self.case.count) % PAGES.len()];
        let current = self.mode_sense_page(ten, page, 0);
        let changeable = self.mode_sense_page(ten, page, 1);
        let mut body = match current {
            Some(current) => current,
            // Not reported: make one up of the payload.
            None => {
                let len = self.payload().len().min(0x20);
                let mut body = vec![page, len as u8];
                body.extend_from_slice(&self.case.payload[..len]);
                body
            }
        };
        // Flip bits the unit says are changeable (all bits with flag 2,
        // to provoke INVALID FIELD IN PARAMETER LIST).
        let mut flips = Input::new(self.payload());
        for (i, byte) in body.iter_mut().enumerate().skip(2) {
            let mask = match (&changeable, self.flags(2)) {
                (_, true) => 0xFF,
                (Some(c), false) => c.get(i).copied().unwrap_or(0),
                (None, false) => 0,
            };
            *byte ^= flips.u8() & mask;
        }
        body[0] &= 0x7F; // PS is reserved in MODE SELECT
        let mut list = if ten { vec![0; 8] } else { vec![0; 4] };
        if self.flags(1) {
            // A short block descriptor that matches the geometry.
            let blocks = u32::try_from(self.lun.num_blocks()).unwrap_or(u32::MAX);
            let mut desc = blocks.to_be_bytes().to_vec();
            desc.extend_from_slice(&self.lun.block_size().to_be_bytes());
            if ten {
                list[7] = 8;
            } else {
                list[3] = 8;
            }
            list.extend_from_slice(&desc);
        }
        list.extend_from_slice(&body);
        if !ten {
            list.truncate(0xFF); // MODE SELECT(6) has a 1-byte length
        }
        let cdb = self.mode_select_cdb(ten, list.len());
        self.execute(&cdb, &list);
        // Whatever was accepted must read back cleanly.
        self.mode_sense_page(ten, 0x3F, 0);
    }

    fn compare_and_write(&mut self) {
        // Flag 7 sends NUMBER OF LOGICAL BLOCKS 0 (nothing to do).
        let blocks = if self.flags(7) {
            0
        } else {
            1 + u64::from(self.case.count % 4)
        };
        let lba = self.pick_lba(self.case.lba);
        let len = blocks as usize * self.block_len();
        let old = pattern(self.payload(), len, 0x11);
        let in_range = self.in_range(lba, blocks);
        if in_range && blocks > 0 {
            self.lun.device_write(lba, &old);
        }
        let mut verify = old.clone();
        let miscompare_at = (self.flags(0) && len > 0).then(|| {
            let at = usize::from(self.payload().first().copied().unwrap_or(0)) * 7 % len;
            verify[at] ^= 0x01;
            at
        });
        let new = pattern(self.payload(), len, 0xC3);
        let mut data = verify;
        data.extend_from_slice(&new);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x89;
        cdb[1] = if self.flags(3) { 0x08 } else { 0 }; // FUA
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[13] = blocks as u8;
        let response = self.execute(&cdb, &data);
        if !in_range || blocks == 0 {
            return;
        }
        let stored = self.lun.device_read(lba, blocks);
        match miscompare_at {
            None if response.status == ScsiStatus::Good => {
                assert!(
                    stored == new,
                    "COMPARE AND WRITE {} matched and returned GOOD but did not store the data",
                    hex(&cdb)
                );
            }
            None => {}
            Some(at) => {
                assert_ne!(
                    response.status,
                    ScsiStatus::Good,
                    "COMPARE AND WRITE {} returned GOOD despite a miscompare at byte {at}",
                    hex(&cdb)
                );
                assert!(
                    stored == old,
                    "COMPARE AND WRITE {} wrote despite a miscompare",
                    hex(&cdb)
                );
                if let Some(sense) = response.sense.filter(|s| s.key == SenseKey::Miscompare) {
                    assert_eq!(
                        sense.code,
                        AdditionalSense::MISCOMPARE_DURING_VERIFY,
                        "COMPARE AND WRITE {}",
                        hex(&cdb)
                    );
                    assert_eq!(
                        sense.information,
                        Some(at as u64),
                        "COMPARE AND WRITE {}: INFORMATION must be the offset of the first \
                         miscompared byte",
                        hex(&cdb)
                    );
                }
            }
        }
    }

    fn write_same(&mut self, sixteen: bool) {
        let blocks = u64::from(self.case.count); // 0: to the end of the device
        let lba = self.pick_lba(self.case.lba);
        let unmap = self.flags(1);
        let anchor = self.flags(2);
        let ndob = sixteen && self.flags(3);
        let span = if blocks == 0 {
            self.lun.num_blocks().saturating_sub(lba)
        } else {
            blocks
        };
        // Preset the range, so that a WRITE SAME that stores nothing shows.
        let checked = span.min(8);
        let in_range = self.in_range(lba, span) && span > 0;
        if in_range {
            let preset = vec![0xEE; checked as usize * self.block_len()];
            self.lun.device_write(lba, &preset);
        }
        let block = if ndob {
            Vec::new()
        } else {
            pattern(self.payload(), self.block_len(), 0x77)
        };
        let b1 = u8::from(unmap) << 3 | u8::from(anchor) << 4 | u8::from(ndob);
        let cdb = if sixteen {
            let mut cdb = vec![0x93, b1];
            cdb.extend_from_slice(&lba.to_be_bytes());
            cdb.extend_from_slice(&(blocks as u32).to_be_bytes());
            cdb.extend_from_slice(&[0, 0]);
            cdb
        } else {
            let mut cdb = vec![0x41, b1];
            cdb.extend_from_slice(&(lba as u32).to_be_bytes());
            cdb.push(0);
            cdb.extend_from_slice(&(blocks as u16).to_be_bytes());
            cdb.push(0);
            cdb
        };
        let response = self.execute(&cdb, &block);
        // The 10-byte CDB only holds 32 bits of LBA.
        let addressed = sixteen || lba <= u64::from(u32::MAX);
        if response.status != ScsiStatus::Good || unmap || !in_range || !addressed {
            return;
        }
        let expected = if ndob {
            vec![0; self.block_len()]
        } else {
            block
        };
        let stored = self.lun.device_read(lba, checked);
        for (i, chunk) in stored.chunks(self.block_len()).enumerate() {
            assert!(
                chunk == expected.as_slice(),
                "WRITE SAME {} returned GOOD but block {} does not hold the data",
                hex(&cdb),
                lba + i as u64
            );
        }
    }

    fn extended_copy_cdb(len: usize) -> [u8; 16] {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        cdb[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        cdb
    }

    fn extended_copy_raw(&mut self) {
        let list = self.payload().to_vec();
        let cdb = Self::extended_copy_cdb(list.len());
        self.execute(&cdb, &list);
    }

    /// The first logical-unit designator of VPD page 83h: (code set,
    /// designator type, designator).
    fn lu_designator(&mut self) -> Option<(u8, u8, Vec<u8>)> {
        let (response, page) = self.data_in(&[0x12, 0x01, 0x83, 0x01, 0x00, 0], 256);
        if response.status != ScsiStatus::Good {
            return None;
        }
        let mut rest = page.get(4..)?;
        while let [code_set, assoc_type, _, len, ..] = *rest {
            let body = rest.get(4..4 + usize::from(len))?;
            if assoc_type & 0x30 == 0 {
                return Some((code_set & 0x0F, assoc_type & 0x0F, body.to_vec()));
            }
            rest = &rest[4 + usize::from(len)..];
        }
        None
    }

    fn extended_copy_segments(&mut self) {
        let (code_set, designator_type, designator) =
            self.lu_designator()
                .unwrap_or((1, 3, vec![0x60, 0, 0, 0, 0, 0, 0, 0]));
        // An identification CSCD descriptor (E4h) for this unit; flag 1
        // lists it twice, flag 2 gives it a wrong block length.
        let mut cscd = vec![0xE4, 0x00, 0, 0, code_set, designator_type, 0];
        let designator = &designator[..designator.len().min(20)];
        cscd.push(designator.len() as u8);
        cscd.extend_from_slice(designator);
        // Bytes 28-31: flags (PAD 0) and the 3-byte DISK BLOCK LENGTH.
        cscd.resize(29, 0);
        let block_len = if self.flags(2) {
            self.lun.block_size() * 2
        } else {
            self.lun.block_size()
        };
        cscd.extend_from_slice(&block_len.to_be_bytes()[1..]);
        let cscds = if self.flags(1) { 2 } else { 1 };

        // Block-to-block segments (02h); each takes three payload bytes:
        // source and destination LBA selectors and a block count.
        let n = 1 + usize::from(self.case.count % 3);
        let mut input = Input::new(self.payload());
        let mut segments = Vec::new();
        let mut copies = Vec::new();
        for _ in 0..n {
            let src = self.pick_lba(input.u8());
            let dst = self.pick_lba(input.u8());
            let blocks = 1 + u64::from(input.u8() % 8);
            let mut seg = vec![0x02, 0x00, 0x00, 0x18, 0, 0, 0, (cscds - 1) as u8, 0, 0];
            seg.extend_from_slice(&(blocks as u16).to_be_bytes());
            seg.extend_from_slice(&src.to_be_bytes());
            seg.extend_from_slice(&dst.to_be_bytes());
            segments.extend_from_slice(&seg);
            copies.push((src, dst, blocks));
        }

        let mut list = vec![self.case.count, 0];
        // LIST ID USAGE 11b: no list identifier to track (flag 0 clears it).
        if !self.flags(0) {
            list[1] = 0x18;
        }
        list.extend_from_slice(&((32 * cscds) as u16).to_be_bytes());
        list.extend_from_slice(&[0; 4]);
        list.extend_from_slice(&(segments.len() as u32).to_be_bytes());
        list.extend_from_slice(&[0; 4]); // no inline data
        for _ in 0..cscds {
            list.extend_from_slice(&cscd);
        }
        list.extend_from_slice(&segments);

        // Give every source range known contents.
        for (i, &(src, _, blocks)) in copies.iter().enumerate() {
            if self.in_range(src, blocks) {
                let data = pattern(self.payload(), blocks as usize * self.block_len(), i as u8);
                self.lun.device_write(src, &data);
            }
        }
        let before: Vec<Option<Vec<u8>>> = copies
            .iter()
            .map(|&(src, _, blocks)| {
                self.in_range(src, blocks)
                    .then(|| self.lun.device_read(src, blocks))
            })
            .collect();
        let cdb = Self::extended_copy_cdb(list.len());
        let response = self.execute(&cdb, &list);
        // With one segment whose ranges do not overlap, GOOD means the
        // destination now holds the source's data.
        if response.status == ScsiStatus::Good && copies.len() == 1 {
            let (src, dst, blocks) = copies[0];
            let disjoint = src + blocks <= dst || dst + blocks <= src;
            if let (Some(data), true, true) = (&before[0], disjoint, self.in_range(dst, blocks)) {
                assert!(
                    self.lun.device_read(dst, blocks) == *data,
                    "EXTENDED COPY {} of {blocks} blocks from {src} to {dst} returned GOOD \
                     but the destination differs; list {}",
                    hex(&cdb),
                    hex(&list)
                );
            }
        }
        // RECEIVE COPY STATUS(LID1) and OPERATING PARAMETERS.
        let list_id = self.case.count;
        self.data_in(
            &[0x84, 0x00, list_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            256,
        );
        self.data_in(&[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256);
    }

    fn persistent_reserve_out_cdb(service_action: u8, kind: u8, len: usize) -> [u8; 10] {
        let mut cdb = [0x5F, service_action, kind & 0x0F, 0, 0, 0, 0, 0, 0, 0];
        cdb[5..9].copy_from_slice(&(len as u32).to_be_bytes());
        cdb
    }

    fn persistent_reserve_out(&mut self) {
        let mut input = Input::new(self.payload());
        let key: Vec<u8> = input.take(8).to_vec();
        let mut key8 = [0u8; 8];
        key8[..key.len()].copy_from_slice(&key);
        // REGISTER the key first, so that the chosen action has something
        // to act on.
        let mut register = vec![0u8; 24];
        register[8..16].copy_from_slice(&key8);
        let cdb = Self::persistent_reserve_out_cdb(0x00, 0, 24);
        self.execute(&cdb, &register);

        let service_action = self.case.flags & 0x07;
        let kind = self.case.count;
        let mut list = vec![0u8; 24];
        list[..8].copy_from_slice(&key8);
        let rest = input.rest();
        let n = rest.len().min(16);
        list[8..8 + n].copy_from_slice(&rest[..n]);
        if rest.len() > 16 {
            list[20] = rest[16] & 0x0D; // SPEC_I_PT, ALL_TG_PT, APTPL
        }
        // Flag 7 sends the rest of the payload too (a length that is not
        // 24 bytes, or REGISTER AND MOVE's transport ID).
        if self.flags(7) {
            list.extend_from_slice(rest.get(17..).unwrap_or(&[]));
        }
        let list = &list[..list.len().min(MAX_LIST_LEN)];
        let cdb = Self::persistent_reserve_out_cdb(service_action, kind, list.len());
        self.execute(&cdb, list);
        // READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS.
        for action in 0..4u8 {
            self.data_in(&[0x5E, action, 0, 0, 0, 0, 0, 0x04, 0x00, 0], 1024);
        }
    }

    fn write_read_back(&mut self) {
        let blocks = 1 + u64::from(self.case.count % 16);
        let lba = self.pick_lba(self.case.lba);
        let data = pattern(self.payload(), blocks as usize * self.block_len(), 0x3C);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8A;
        cdb[1] = if self.flags(3) { 0x08 } else { 0 }; // FUA
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
        let response = self.execute(&cdb, &data);
        if response.status != ScsiStatus::Good {
            return;
        }
        assert!(
            self.in_range(lba, blocks),
            "WRITE(16) {} past the end of a {}-block device returned GOOD",
            hex(&cdb),
            self.lun.num_blocks()
        );
        assert!(
            self.lun.device_read(lba, blocks) == data,
            "WRITE(16) {} returned GOOD but did not store the data",
            hex(&cdb)
        );
        cdb[0] = 0x88;
        let (response, back) = self.data_in(&cdb, data.len());
        if response.status == ScsiStatus::Good {
            assert!(
                back == data,
                "READ(16) {} did not return what WRITE(16) stored",
                hex(&cdb)
            );
        }
    }

    /// GOOD only in range, and then the blocks hold the OR of what they
    /// held and the data; nothing changes otherwise.
    fn orwrite(&mut self) {
        let blocks = 1 + u64::from(self.case.count % 8);
        let lba = self.pick_lba(self.case.lba);
        let len = blocks as usize * self.block_len();
        let stored = pattern(self.payload(), len, 0x5A);
        let in_range = self.in_range(lba, blocks);
        if in_range {
            self.lun.device_write(lba, &stored);
        }
        let data = pattern(self.payload(), len, 0xA3);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8B;
        cdb[1] = if self.flags(3) { 0x08 } else { 0 }; // FUA
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&(blocks as u32).to_be_bytes());
        let response = self.execute(&cdb, &data);
        if response.status != ScsiStatus::Good {
            if in_range {
                assert!(
                    self.lun.device_read(lba, blocks) == stored,
                    "ORWRITE(16) {} failed but changed the blocks",
                    hex(&cdb)
                );
            }
            return;
        }
        assert!(
            in_range,
            "ORWRITE(16) {} past the end of a {}-block device returned GOOD",
            hex(&cdb),
            self.lun.num_blocks()
        );
        let expected: Vec<u8> = stored.iter().zip(&data).map(|(s, d)| s | d).collect();
        assert!(
            self.lun.device_read(lba, blocks) == expected,
            "ORWRITE(16) {} returned GOOD but the blocks are not the OR",
            hex(&cdb)
        );
    }

    /// GOOD only for a valid list (OVERWRITE COUNT at least 1, TEST 0, a
    /// pattern of 1 to block-length bytes that fills the rest of the
    /// list), and then every block holds the pattern repeated: the last
    /// pass writes the pattern itself, INVERT or not.
    fn sanitize_overwrite(&mut self) {
        let list = self.payload();
        let Ok(len) = u16::try_from(list.len()) else {
            return;
        };
        let mut cdb = [0x48, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        if self.flags(5) {
            cdb[1] |= 0x20; // AUSE
        }
        cdb[7..9].copy_from_slice(&len.to_be_bytes());
        let response = self.execute(&cdb, list);
        if response.status != ScsiStatus::Good {
            return;
        }
        let block_len = self.block_len();
        let pattern_len = list
            .get(2..4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        let valid = list.len() > 4
            && list[0] & 0x1F != 0
            && list[0] & 0x60 == 0
            && pattern_len.is_some_and(|p| p >= 1 && p <= block_len && p + 4 == list.len());
        assert!(
            valid,
            "SANITIZE OVERWRITE {} accepted the list {}",
            hex(&cdb),
            hex(list)
        );
        let pattern = &list[4..];
        let block: Vec<u8> = pattern.iter().copied().cycle().take(block_len).collect();
        let blocks = self.lun.num_blocks().min(8);
        let expected = block.repeat(blocks as usize);
        assert!(
            self.lun.device_read(0, blocks) == expected,
            "SANITIZE OVERWRITE {} returned GOOD but the blocks do not hold the pattern",
            hex(&cdb)
        );
    }

    fn verify_bytes(&mut self) {
        let blocks = 1 + u64::from(self.case.count % 8);
        let lba = self.pick_lba(self.case.lba);
        let stored = pattern(self.payload(), blocks as usize * self.block_len(), 0x99);
        let in_range = self.in_range(lba, blocks);
        if in_range {
            self.lun.device_write(lba, &stored);
        }
        // BYTCHK 01b compares every block; 11b (flag 1) compares one block
        // with each of them, so then every block holds the same data.
        let same = self.flags(1);
        let mut data = if same {
            let first = stored[..self.block_len()].to_vec();
            if in_range {
                for i in 0..blocks {
                    self.lun.device_write(lba + i, &first);
                }
            }
            first
        } else {
            stored
        };
        let miscompare = self.flags(0);
        if miscompare {
            let at = usize::from(self.case.count) * 13 % data.len();
            data[at] ^= 0x80;
        }
        let bytchk = if same { 0x06 } else { 0x02 };
        let mut cdb = [0x2F, bytchk, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        cdb[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
        let response = self.execute(&cdb, &data);
        if miscompare && in_range && lba <= u64::from(u32::MAX) {
            assert_ne!(
                response.status,
                ScsiStatus::Good,
                "VERIFY(10) {} returned GOOD despite a miscompare",
                hex(&cdb)
            );
            if let Some(sense) = response.sense.filter(|s| s.key == SenseKey::Miscompare) {
                assert_eq!(
                    sense.code,
                    AdditionalSense::MISCOMPARE_DURING_VERIFY,
                    "VERIFY(10) {}",
                    hex(&cdb)
                );
            }
        }
    }

    fn log_select(&mut self) {
        let list = &self.case.payload[..self.payload().len().min(MAX_LIST_LEN)];
        let [hi, lo] = (list.len() as u16).to_be_bytes();
        let b1 = self.case.flags & 0x03; // PCR, SP
        let b2 = self.case.count; // PC and PAGE CODE
        let cdb = [0x4C, b1, b2, self.case.lba, 0, 0, 0, hi, lo, 0];
        self.execute(&cdb, list);
    }

    fn send_diagnostic(&mut self) {
        let list = &self.case.payload[..self.payload().len().min(MAX_LIST_LEN)];
        let [hi, lo] = (list.len() as u16).to_be_bytes();
        // SELF-TEST CODE, PF, SELFTEST, DEVOFFL, UNITOFFL; bit 3 reserved.
        let b1 = self.case.flags & 0xF7;
        let cdb = [0x1D, b1, 0, hi, lo, 0];
        self.execute(&cdb, list);
    }

    fn format_unit(&mut self) {
        // FMTDATA with a short parameter list header whose DEFECT LIST
        // LENGTH covers the rest of the payload (flag 7: the payload
        // alone, header and all).
        let list = if self.flags(7) {
            self.payload().to_vec()
        } else {
            let defects = &self.case.payload[..self.payload().len().min(MAX_LIST_LEN - 4)];
            let mut list = vec![0, self.case.count & 0xFE];
            list.extend_from_slice(&(defects.len() as u16).to_be_bytes());
            list.extend_from_slice(defects);
            list
        };
        // FMTPINFO 0, FMTDATA set, CMPLST and DEFECT LIST FORMAT from the
        // flags.
        let b1 = 0x10 | (self.case.flags & 0x0F);
        let cdb = [0x04, b1, 0, 0, 0, 0];
        self.execute(&cdb, &list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_covers_every_command() {
        for (i, c) in ParameterListCommand::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(ParameterListCommand::from_selector(i as u8), *c);
        }
        assert_eq!(
            ParameterListCommand::from_selector(ParameterListCommand::ALL.len() as u8),
            ParameterListCommand::Unmap
        );
    }

    #[test]
    fn case_bytes_round_trip() {
        let case = ParameterListCase {
            command: ParameterListCommand::WriteSame16,
            flags: 0x0A,
            count: 3,
            lba: 0x81,
            geometry: 2,
            segmentation: 5,
            payload: vec![1, 2, 3],
        };
        assert_eq!(ParameterListCase::from_bytes(&case.to_bytes()), case);
    }

    #[test]
    fn pattern_is_never_all_zero_and_depends_on_the_salt() {
        for seed in [&[][..], &[0x5A][..], &[0; 7][..]] {
            let p = pattern(seed, 512, 0);
            assert!(p.iter().any(|&b| b != 0));
            assert_ne!(p, pattern(seed, 512, 1));
        }
    }

    #[test]
    fn every_command_runs_on_empty_input() {
        for c in ParameterListCommand::ALL {
            let executed = run_parameter_list_case(&[c as u8]);
            // The command itself (and its set-up) plus the health check.
            assert!(executed.len() >= 4, "{c:?}: {executed:?}");
        }
    }
}
