//! The NBD wire protocol: magic numbers, options, flags, commands and
//! errors, and reading and writing big-endian fields.

use std::io::{self, IoSlice, Read, Write};

/// The port the IANA reserved for NBD.
pub const NBD_DEFAULT_PORT: u16 = 10809;

// Magic numbers of the handshake and the transmission phase.
pub(super) const NBDMAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
pub(super) const IHAVEOPT: u64 = 0x4948_4156_454f_5054; // "IHAVEOPT"
pub(super) const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
pub(super) const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub(super) const REQUEST_MAGIC: u32 = 0x2560_9513;
pub(super) const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub(super) const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags, which share their bits.
pub(super) const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub(super) const FLAG_NO_ZEROES: u16 = 1 << 1;

// Options and option replies.
pub(super) const OPT_EXPORT_NAME: u32 = 1;
pub(super) const OPT_ABORT: u32 = 2;
pub(super) const OPT_GO: u32 = 7;
pub(super) const REP_ACK: u32 = 1;
pub(super) const REP_INFO: u32 = 3;
pub(super) const REP_ERR: u32 = 1 << 31;
pub(super) const REP_ERR_UNSUP: u32 = REP_ERR + 1;
pub(super) const REP_ERR_POLICY: u32 = REP_ERR + 2;
pub(super) const REP_ERR_INVALID: u32 = REP_ERR + 3;
pub(super) const REP_ERR_PLATFORM: u32 = REP_ERR + 4;
pub(super) const REP_ERR_TLS_REQD: u32 = REP_ERR + 5;
pub(super) const REP_ERR_UNKNOWN: u32 = REP_ERR + 6;
pub(super) const REP_ERR_SHUTDOWN: u32 = REP_ERR + 7;
pub(super) const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR + 8;
pub(super) const REP_ERR_TOO_BIG: u32 = REP_ERR + 9;
pub(super) const INFO_EXPORT: u16 = 0;
pub(super) const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub(super) const TFLAG_HAS_FLAGS: u16 = 1 << 0;
pub(super) const TFLAG_READ_ONLY: u16 = 1 << 1;
pub(super) const TFLAG_SEND_FLUSH: u16 = 1 << 2;
pub(super) const TFLAG_SEND_FUA: u16 = 1 << 3;
pub(super) const TFLAG_SEND_TRIM: u16 = 1 << 5;
pub(super) const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;

// Commands and command flags.
pub(super) const CMD_READ: u16 = 0;
pub(super) const CMD_WRITE: u16 = 1;
pub(super) const CMD_DISC: u16 = 2;
pub(super) const CMD_FLUSH: u16 = 3;
pub(super) const CMD_TRIM: u16 = 4;
pub(super) const CMD_WRITE_ZEROES: u16 = 6;
pub(super) const CMD_FLAG_FUA: u16 = 1 << 0;

// Error values of replies that are not passed on as plain errnos.
pub(super) const NBD_EPERM: u32 = 1;
pub(super) const NBD_ENOMEM: u32 = 12;
pub(super) const NBD_ENOSPC: u32 = 28;
pub(super) const NBD_ENOTSUP: u32 = 95;
pub(super) const NBD_ESHUTDOWN: u32 = 108;
// Not in the protocol's list, but errnos that servers pass through.
pub(super) const EFBIG: u32 = 27;
pub(super) const EROFS: u32 = 30;
pub(super) const EDQUOT: u32 = 122;

/// The payload the protocol lets a client send or ask for in one request
/// without negotiation; also the cap when a server allows more, so that a
/// reply never needs a larger buffer.
pub(super) const DEFAULT_MAX_PAYLOAD: u32 = 1 << 25;

/// Longest option reply accepted during the handshake (strings are at
/// most 4096 bytes; anything far larger is not an NBD server).
pub(super) const MAX_OPTION_REPLY: u32 = 1 << 16;

/// Length of a request header on the wire.
pub(super) const REQUEST_HEADER_LEN: usize = 28;

/// Writes all of `bufs`, gathering them into as few system calls as the
/// kernel allows (a request header and its data usually go in one).
pub(super) fn write_all_vectored(
    stream: &mut impl Write,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0); // drop leading empty slices
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

pub(super) fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

pub(super) fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}
