//! A row of a command table: what REPORT SUPPORTED OPERATION CODES says
//! about a command, what it needs and does, and how to decode it. Generic
//! in the decoded type, so the report can list a table without knowing
//! every command family.

use scsi_sense_codes::Sense;

use crate::capabilities::Capabilities;
use crate::cdb::Cdb;

/// How a command touches the medium: decides NOT READY while the unit is
/// stopped and DATA PROTECT on a read-only device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No medium access (inquiry data, mode pages, capacity, ...).
    None,
    /// Reads the medium.
    Read,
    /// Changes the medium.
    Write,
}

/// Decodes a CDB into the table's command type.
pub(crate) type Decoder<C> = fn(&Cdb<'_>) -> Result<C, Sense>;

/// One row of the command table.
pub(crate) struct CommandSpec<C> {
    pub(crate) opcode: u8,
    /// The service action for opcodes that multiplex several commands.
    pub(crate) service_action: Option<u8>,
    /// The command's name in the standard.
    pub(crate) name: &'static str,
    /// CDB USAGE DATA (SPC-5 6.35.3): the operation code, then for every
    /// CDB byte the bits the decoder evaluates. Its length is the CDB
    /// length.
    pub(crate) usage: &'static [u8],
    /// Whether a logical unit with these capabilities supports it.
    pub(crate) supported: fn(&Capabilities) -> bool,
    pub(crate) access: Access,
    pub(crate) decode: Decoder<C>,
}

impl<C> CommandSpec<C> {
    pub(crate) fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

impl<C> std::fmt::Debug for CommandSpec<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("opcode", &self.opcode)
            .field("service_action", &self.service_action)
            .field("name", &self.name)
            .finish()
    }
}

/// The row of a command, supported or not.
pub(crate) fn spec_for<C>(
    table: &'static [CommandSpec<C>],
    op: u8,
    service_action: Option<u8>,
) -> Option<&'static CommandSpec<C>> {
    table
        .iter()
        .find(|s| s.opcode == op && s.service_action == service_action)
}

/// Every row a logical unit with `caps` supports, in table order.
pub(crate) fn supported_commands<'a, C>(
    table: &'static [CommandSpec<C>],
    caps: &'a Capabilities,
) -> impl Iterator<Item = &'static CommandSpec<C>> + 'a {
    table.iter().filter(move |s| (s.supported)(caps))
}
