//! One command for a [`TestLun`](super::TestLun), typed, and its CDB.

use super::cdb;

/// A command to send, for [`TestLun::submit`](super::TestLun::submit) and
/// [`TestLun::run_all`](super::TestLun::run_all). Data lengths are whole
/// blocks of the unit; the 16-byte CDB forms are used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// READ(16) of `blocks` blocks at `lba`.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// WRITE(16) of `data` at `lba`, with FUA when `fua`.
    Write {
        /// First block.
        lba: u64,
        /// Whole blocks of data.
        data: Vec<u8>,
        /// Force unit access: durable before GOOD.
        fua: bool,
    },
    /// UNMAP of `(lba, blocks)` extents.
    Unmap {
        /// The extents.
        extents: Vec<(u64, u32)>,
    },
    /// WRITE SAME(16): `block` (one block) to `blocks` blocks at `lba`,
    /// with the UNMAP bit when `unmap`.
    WriteSame {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// The one block of data.
        block: Vec<u8>,
        /// Allow deallocating (for a block of zeros).
        unmap: bool,
    },
    /// COMPARE AND WRITE at `lba`: `compare` and `write` have the same
    /// whole number of blocks.
    CompareAndWrite {
        /// First block.
        lba: u64,
        /// Data expected on the medium.
        compare: Vec<u8>,
        /// Data written if it matches.
        write: Vec<u8>,
    },
    /// SYNCHRONIZE CACHE(16) of the whole medium.
    SynchronizeCache,
    /// Any CDB: a data-out buffer, or (when `data_out` is empty) a
    /// data-in buffer of `data_in_len` bytes.
    Raw {
        /// The CDB.
        cdb: Vec<u8>,
        /// Data to the device.
        data_out: Vec<u8>,
        /// Room for data from the device.
        data_in_len: usize,
    },
}

fn plural(blocks: usize) -> String {
    if blocks == 1 {
        "1 block".into()
    } else {
        format!("{blocks} blocks")
    }
}

/// A request as the ring carries it.
pub(super) struct Wire {
    pub(super) cdb: Vec<u8>,
    pub(super) data_out: Vec<u8>,
    pub(super) data_in_len: usize,
    pub(super) name: String,
}

impl Request {
    /// READ of `blocks` blocks at `lba`.
    pub fn read(lba: u64, blocks: u32) -> Request {
        Request::Read { lba, blocks }
    }

    /// WRITE of `data` at `lba` (no FUA).
    pub fn write(lba: u64, data: impl Into<Vec<u8>>) -> Request {
        Request::Write {
            lba,
            data: data.into(),
            fua: false,
        }
    }

    /// WRITE of `data` at `lba` with FUA.
    pub fn write_fua(lba: u64, data: impl Into<Vec<u8>>) -> Request {
        Request::Write {
            lba,
            data: data.into(),
            fua: true,
        }
    }

    /// How the request is named in messages, e.g. `READ(16) LBA 8, 2 blocks`.
    pub fn describe(&self, block_size: u32) -> String {
        let blocks = |len: usize| plural(len / block_size.max(1) as usize);
        match self {
            Request::Read { lba, blocks } => {
                format!("READ(16) LBA {lba}, {}", plural(*blocks as usize))
            }
            Request::Write { lba, data, fua } => format!(
                "WRITE(16){} LBA {lba}, {}",
                if *fua { " FUA" } else { "" },
                blocks(data.len())
            ),
            Request::Unmap { extents } => {
                let list: Vec<String> = extents
                    .iter()
                    .map(|(lba, n)| format!("LBA {lba} +{n}"))
                    .collect();
                format!("UNMAP {}", list.join(", "))
            }
            Request::WriteSame {
                lba, blocks, unmap, ..
            } => format!(
                "WRITE SAME(16){} LBA {lba}, {}",
                if *unmap { " UNMAP" } else { "" },
                plural(*blocks as usize)
            ),
            Request::CompareAndWrite { lba, write, .. } => {
                format!("COMPARE AND WRITE LBA {lba}, {}", blocks(write.len()))
            }
            Request::SynchronizeCache => "SYNCHRONIZE CACHE(16)".into(),
            Request::Raw { cdb, .. } => format!("CDB {cdb:02x?}"),
        }
    }

    pub(super) fn into_wire(self, block_size: u32) -> Wire {
        let name = self.describe(block_size);
        let bs = block_size.max(1) as usize;
        let (cdb, data_out, data_in_len) = match self {
            Request::Read { lba, blocks } => {
                (cdb::read16(lba, blocks), Vec::new(), blocks as usize * bs)
            }
            Request::Write { lba, data, fua } => {
                (cdb::write16(lba, (data.len() / bs) as u32, fua), data, 0)
            }
            Request::Unmap { extents } => {
                let (cdb, list) = cdb::unmap(&extents);
                (cdb, list, 0)
            }
            Request::WriteSame {
                lba,
                blocks,
                block,
                unmap,
            } => (cdb::write_same16(lba, blocks, unmap), block, 0),
            Request::CompareAndWrite {
                lba,
                compare,
                write,
            } => {
                let blocks = (write.len() / bs) as u8;
                let mut data = compare;
                data.extend_from_slice(&write);
                (cdb::compare_and_write(lba, blocks), data, 0)
            }
            Request::SynchronizeCache => (cdb::synchronize_cache16(), Vec::new(), 0),
            Request::Raw {
                cdb,
                data_out,
                data_in_len,
            } => (cdb, data_out, data_in_len),
        };
        Wire {
            cdb,
            data_out,
            data_in_len,
            name,
        }
    }
}
