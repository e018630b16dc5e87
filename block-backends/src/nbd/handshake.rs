//! The fixed newstyle handshake: NBD_OPT_GO, or NBD_OPT_EXPORT_NAME for
//! older servers.

use std::io::{self, Read, Write};

use super::error::NbdError;
use super::protocol::*;
use super::stream::Stream;

/// What the handshake learnt about the export.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExportInfo {
    pub(super) size: u64,
    pub(super) flags: u16,
    /// Minimum block size and maximum payload, when the server told.
    pub(super) block_sizes: Option<(u32, u32)>,
}

/// Sends one option request.
pub(super) fn send_option(stream: &mut Stream, option: u32, data: &[u8]) -> io::Result<()> {
    let mut msg = Vec::with_capacity(16 + data.len());
    msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
    msg.extend_from_slice(&option.to_be_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    msg.extend_from_slice(data);
    stream.write_all(&msg)
}

/// Runs the newstyle handshake up to the transmission phase.
pub(super) fn handshake(stream: &mut Stream, export: &str) -> Result<ExportInfo, NbdError> {
    let io = NbdError::Handshake;
    if read_u64(stream).map_err(io)? != NBDMAGIC {
        return Err(NbdError::NotNbd);
    }
    match read_u64(stream).map_err(io)? {
        IHAVEOPT => {}
        OLDSTYLE_MAGIC => return Err(NbdError::Oldstyle),
        _ => return Err(NbdError::NotNbd),
    }
    let server_flags = read_u16(stream).map_err(io)?;
    // Echo only the flags this client knows and the server offers.
    let client_flags = server_flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    stream
        .write_all(&u32::from(client_flags).to_be_bytes())
        .map_err(io)?;
    let no_zeroes = client_flags & FLAG_NO_ZEROES != 0;

    // Without fixed newstyle, NBD_OPT_EXPORT_NAME is the only option a
    // server is sure to understand (others may make it hang up).
    if client_flags & FLAG_FIXED_NEWSTYLE != 0
        && let Some(info) = option_go(stream, export)?
    {
        return Ok(info);
    }
    option_export_name(stream, export, no_zeroes)
}

/// `NBD_OPT_GO`; `None` when the server does not know the option.
pub(super) fn option_go(stream: &mut Stream, export: &str) -> Result<Option<ExportInfo>, NbdError> {
    let io = NbdError::Handshake;
    let mut data = Vec::with_capacity(export.len() + 8);
    data.extend_from_slice(&(export.len() as u32).to_be_bytes());
    data.extend_from_slice(export.as_bytes());
    data.extend_from_slice(&1u16.to_be_bytes()); // one information request
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(stream, OPT_GO, &data).map_err(io)?;

    let mut export_info: Option<(u64, u16)> = None;
    let mut block_sizes = None;
    loop {
        if read_u64(stream).map_err(io)? != OPTION_REPLY_MAGIC {
            return Err(NbdError::Protocol("bad option reply magic".into()));
        }
        let option = read_u32(stream).map_err(io)?;
        let reply = read_u32(stream).map_err(io)?;
        let len = read_u32(stream).map_err(io)?;
        if option != OPT_GO {
            return Err(NbdError::Protocol(format!(
                "reply to option {option} while NBD_OPT_GO was asked"
            )));
        }
        if len > MAX_OPTION_REPLY {
            return Err(NbdError::Protocol(format!("option reply of {len} bytes")));
        }
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).map_err(io)?;

        match reply {
            REP_INFO => {
                let Some(kind) = payload.get(..2) else {
                    return Err(NbdError::Protocol("NBD_REP_INFO without a type".into()));
                };
                let body = &payload[2..];
                match u16::from_be_bytes([kind[0], kind[1]]) {
                    INFO_EXPORT => {
                        let body: [u8; 10] = body.try_into().map_err(|_| {
                            NbdError::Protocol("NBD_INFO_EXPORT of the wrong length".into())
                        })?;
                        let [s0, s1, s2, s3, s4, s5, s6, s7, f0, f1] = body;
                        let size = u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
                        export_info = Some((size, u16::from_be_bytes([f0, f1])));
                    }
                    INFO_BLOCK_SIZE => {
                        let body: [u8; 12] = body.try_into().map_err(|_| {
                            NbdError::Protocol("NBD_INFO_BLOCK_SIZE of the wrong length".into())
                        })?;
                        let word = |i: usize| {
                            u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]])
                        };
                        block_sizes = Some((word(0), word(8)));
                    }
                    _ => {} // information this client did not ask for
                }
            }
            REP_ACK => {
                let Some((size, flags)) = export_info else {
                    return Err(NbdError::Protocol(
                        "NBD_OPT_GO succeeded without NBD_INFO_EXPORT".into(),
                    ));
                };
                return Ok(Some(ExportInfo {
                    size,
                    flags,
                    block_sizes,
                }));
            }
            REP_ERR_UNSUP => return Ok(None),
            reply if reply & REP_ERR != 0 => {
                // Say goodbye politely; the answer does not matter.
                let _ = send_option(stream, OPT_ABORT, &[]);
                let message = String::from_utf8_lossy(&payload).into_owned();
                let export = export.to_owned();
                return Err(match reply {
                    REP_ERR_UNKNOWN => NbdError::UnknownExport { export, message },
                    REP_ERR_TLS_REQD => NbdError::TlsRequired { export },
                    _ => NbdError::Refused {
                        export,
                        reason: describe_option_error(reply, &message),
                    },
                });
            }
            other => {
                return Err(NbdError::Protocol(format!(
                    "unexpected reply type {other} to NBD_OPT_GO"
                )));
            }
        }
    }
}

pub(super) fn describe_option_error(reply: u32, message: &str) -> String {
    let what = match reply {
        REP_ERR_POLICY => "forbidden by server policy".to_owned(),
        REP_ERR_INVALID => "request judged invalid".to_owned(),
        REP_ERR_PLATFORM => "not supported on the server's platform".to_owned(),
        REP_ERR_SHUTDOWN => "server is shutting down".to_owned(),
        REP_ERR_BLOCK_SIZE_REQD => "server requires block size negotiation".to_owned(),
        REP_ERR_TOO_BIG => "request too big".to_owned(),
        other => format!("error {}", other & !REP_ERR),
    };
    if message.is_empty() {
        what
    } else {
        format!("{what} ({message})")
    }
}

/// `NBD_OPT_EXPORT_NAME`, which enters transmission or makes the server
/// hang up (it cannot say why).
pub(super) fn option_export_name(
    stream: &mut Stream,
    export: &str,
    no_zeroes: bool,
) -> Result<ExportInfo, NbdError> {
    send_option(stream, OPT_EXPORT_NAME, export.as_bytes()).map_err(NbdError::Handshake)?;
    let mut reply = [0u8; 10 + 124];
    let len = if no_zeroes { 10 } else { reply.len() };
    match stream.read_exact(&mut reply[..len]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(NbdError::Refused {
                export: export.to_owned(),
                reason: "the server closed the connection on NBD_OPT_EXPORT_NAME \
                         (most likely there is no such export)"
                    .into(),
            });
        }
        Err(e) => return Err(NbdError::Handshake(e)),
    }
    Ok(ExportInfo {
        size: u64::from_be_bytes(reply[..8].try_into().unwrap_or_default()),
        flags: u16::from_be_bytes([reply[8], reply[9]]),
        block_sizes: None,
    })
}
