//! The CDBs and parameter lists the harness sends, built byte by byte as
//! an initiator would (the 16-byte forms, so any LBA fits).

pub(super) const TEST_UNIT_READY: [u8; 6] = [0; 6];

/// READ(16).
pub(super) fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    rw16(0x88, 0, lba, blocks)
}

/// WRITE(16), with FUA when asked.
pub(super) fn write16(lba: u64, blocks: u32, fua: bool) -> Vec<u8> {
    rw16(0x8A, if fua { 0x08 } else { 0 }, lba, blocks)
}

/// WRITE SAME(16), with the UNMAP bit when asked.
pub(super) fn write_same16(lba: u64, blocks: u32, unmap: bool) -> Vec<u8> {
    rw16(0x93, if unmap { 0x08 } else { 0 }, lba, blocks)
}

/// COMPARE AND WRITE of `blocks` blocks (its length field is one byte).
pub(super) fn compare_and_write(lba: u64, blocks: u8) -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = 0x89;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = blocks;
    cdb
}

/// SYNCHRONIZE CACHE(16) of the whole medium.
pub(super) fn synchronize_cache16() -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = 0x91;
    cdb
}

/// UNMAP with its parameter list: the CDB and the data-out.
pub(super) fn unmap(extents: &[(u64, u32)]) -> (Vec<u8>, Vec<u8>) {
    let descriptors = extents.len() * 16;
    let mut list = vec![0u8; 8 + descriptors];
    list[0..2].copy_from_slice(&((6 + descriptors) as u16).to_be_bytes());
    list[2..4].copy_from_slice(&(descriptors as u16).to_be_bytes());
    for (i, &(lba, blocks)) in extents.iter().enumerate() {
        let at = 8 + i * 16;
        list[at..at + 8].copy_from_slice(&lba.to_be_bytes());
        list[at + 8..at + 12].copy_from_slice(&blocks.to_be_bytes());
    }
    let mut cdb = vec![0u8; 10];
    cdb[0] = 0x42;
    cdb[7..9].copy_from_slice(&(list.len() as u16).to_be_bytes());
    (cdb, list)
}

/// READ CAPACITY(16), 32 bytes of answer.
pub(super) fn read_capacity16() -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = 0x9E;
    cdb[1] = 0x10;
    cdb[13] = 32;
    cdb
}

/// MODE SENSE(10) of the caching page, without block descriptors.
pub(super) fn mode_sense_caching() -> Vec<u8> {
    let mut cdb = vec![0u8; 10];
    cdb[0] = 0x5A;
    cdb[1] = 0x08;
    cdb[2] = 0x08;
    cdb[7..9].copy_from_slice(&64u16.to_be_bytes());
    cdb
}

/// GET LBA STATUS from `lba`, room for one descriptor.
pub(super) fn get_lba_status(lba: u64) -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = 0x9E;
    cdb[1] = 0x12;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[13] = 24;
    cdb
}

/// MODE SELECT(10) of a `len`-byte parameter list in page format.
pub(super) fn mode_select10(len: u16) -> Vec<u8> {
    let mut cdb = vec![0u8; 10];
    cdb[0] = 0x55;
    cdb[1] = 0x10;
    cdb[7..9].copy_from_slice(&len.to_be_bytes());
    cdb
}

fn rw16(opcode: u8, flags: u8, lba: u64, blocks: u32) -> Vec<u8> {
    let mut cdb = vec![0u8; 16];
    cdb[0] = opcode;
    cdb[1] = flags;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}
