//! The conformance check's model of the medium: for each block, the
//! contents it may hold, each with where it came from, so a disagreement
//! can be told in words ("the data step 3 wrote at LBA 5").

use std::collections::HashMap;
use std::rc::Rc;

/// Contents a block may hold, and where they came from.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) bytes: Rc<[u8]>,
    pub(super) label: String,
    /// Data a write stored (not zeros): its block must be mapped.
    pub(super) stored: bool,
}

impl Candidate {
    pub(super) fn new(bytes: &[u8], label: String) -> Candidate {
        Candidate {
            bytes: bytes.into(),
            label,
            stored: false,
        }
    }

    /// Data a write stored, not zeros.
    pub(super) fn stored(bytes: &[u8], label: String) -> Candidate {
        Candidate {
            stored: bytes.iter().any(|&b| b != 0),
            ..Candidate::new(bytes, label)
        }
    }
}

/// What a block may hold. A block the model has no cell for may hold
/// anything (its contents when the device was made are unknown).
#[derive(Debug, Clone)]
enum Cell {
    /// One of these, or (with several, left by writes that raced) a mix
    /// of them byte by byte; once read, what was read (nothing else runs
    /// then).
    Settles(Vec<Candidate>),
    /// Deallocated on a device that does not promise zeros: any of these,
    /// and it may go from one to another by itself.
    Drifts(Vec<Candidate>),
}

impl Cell {
    fn candidates(&self) -> &[Candidate] {
        match self {
            Cell::Settles(c) | Cell::Drifts(c) => c,
        }
    }
}

/// A read that disagrees with the model.
#[derive(Debug)]
pub(super) struct Mismatch {
    pub(super) lba: u64,
    pub(super) got: String,
    pub(super) allowed: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LBA {} read back {}, but the model allows only: {}",
            self.lba,
            self.got,
            self.allowed.join("; or ")
        )
    }
}

/// The medium as the model sees it.
pub(super) struct Model {
    pub(super) block_size: usize,
    /// The number of blocks now.
    pub(super) blocks: u64,
    cells: HashMap<u64, Cell>,
    /// Every block of data ever sent, to name what a wrong read returned.
    history: Vec<Candidate>,
}

impl Model {
    pub(super) fn new(block_size: usize, blocks: u64) -> Model {
        Model {
            block_size,
            blocks,
            cells: HashMap::new(),
            history: Vec::new(),
        }
    }

    pub(super) fn zeros(&self, why: &str) -> Candidate {
        Candidate::new(&vec![0; self.block_size], format!("zeros ({why})"))
    }

    /// Remember `candidate` as data sent to the device.
    pub(super) fn sent(&mut self, candidate: &Candidate) {
        self.history.push(candidate.clone());
    }

    /// The block at `lba` holds `candidate`.
    pub(super) fn set(&mut self, lba: u64, candidate: Candidate) {
        self.cells.insert(lba, Cell::Settles(vec![candidate]));
    }

    /// The block at `lba` holds one of `candidates` (writes that raced).
    pub(super) fn set_any(&mut self, lba: u64, candidates: Vec<Candidate>) {
        self.cells.insert(lba, Cell::Settles(candidates));
    }

    /// The block at `lba` was deallocated: zeros if `reads_zeroes`, else
    /// zeros or what it held.
    pub(super) fn unmap(&mut self, lba: u64, reads_zeroes: bool, why: &str) {
        let zeros = self.zeros(why);
        if reads_zeroes {
            self.set(lba, zeros);
            return;
        }
        match self.cells.get(&lba) {
            // Unknown before: unknown still.
            None => {}
            Some(cell) => {
                let mut candidates = cell.candidates().to_vec();
                candidates.push(zeros);
                self.cells.insert(lba, Cell::Drifts(candidates));
            }
        }
    }

    /// The device now has `blocks` blocks; blocks that come (back) read
    /// as zeros.
    pub(super) fn resize(&mut self, blocks: u64, why: &str) {
        self.cells.retain(|&lba, _| lba < blocks);
        for lba in self.blocks..blocks {
            let zeros = self.zeros(why);
            self.set(lba, zeros);
        }
        self.blocks = blocks;
    }

    /// Whether the block at `lba` may change by itself or hold one of
    /// several values, so that reading it proves nothing about the next read.
    pub(super) fn uncertain(&self, lba: u64) -> bool {
        match self.cells.get(&lba) {
            None => true,
            Some(Cell::Drifts(_)) => true,
            Some(Cell::Settles(c)) => c.len() > 1,
        }
    }

    /// The one value the block must hold, if the model knows it.
    pub(super) fn known(&self, lba: u64) -> Option<&Candidate> {
        match self.cells.get(&lba) {
            Some(Cell::Settles(c)) if c.len() == 1 => c.first(),
            _ => None,
        }
    }

    /// Whether every value the block at `lba` may hold is data a write
    /// stored there, so that the block must be mapped.
    pub(super) fn stored(&self, lba: u64) -> bool {
        match self.cells.get(&lba) {
            Some(Cell::Settles(c)) => c.iter().all(|c| c.stored),
            _ => false,
        }
    }

    /// Blocks the model has a cell for, in order.
    pub(super) fn tracked(&self) -> Vec<u64> {
        let mut lbas: Vec<u64> = self.cells.keys().copied().collect();
        lbas.sort_unstable();
        lbas
    }

    /// Check the block `got` read at `lba`, which may also hold any of
    /// `racing` (writes in flight with the read), or a mix of them.
    pub(super) fn check(&self, lba: u64, got: &[u8], racing: &[Candidate]) -> Result<(), Mismatch> {
        let Some(cell) = self.cells.get(&lba) else {
            return Ok(());
        };
        let allowed = cell.candidates().iter().chain(racing);
        if allowed.clone().any(|c| *c.bytes == *got) {
            return Ok(());
        }
        let mixes = !racing.is_empty() || matches!(cell, Cell::Settles(c) if c.len() > 1);
        if mixes && mix_of(got, allowed.clone()) {
            return Ok(());
        }
        Err(Mismatch {
            lba,
            got: self.name(got),
            allowed: allowed.map(|c| c.label.clone()).collect(),
        })
    }

    /// After a read with nothing in flight: the block holds what was read.
    pub(super) fn settle(&mut self, lba: u64, got: &[u8], step: usize) {
        match self.cells.get(&lba) {
            Some(Cell::Drifts(_)) => {}
            Some(Cell::Settles(c)) => {
                let found = match c.iter().find(|c| *c.bytes == *got) {
                    Some(found) => found.clone(),
                    None => Candidate::new(
                        got,
                        format!("the mix of racing writes step {step} read there"),
                    ),
                };
                self.set(lba, found);
            }
            None => {
                let first = Candidate::new(got, format!("what step {step} first read there"));
                self.set(lba, first);
            }
        }
    }

    /// Words for the contents of a block.
    fn name(&self, got: &[u8]) -> String {
        if got.iter().all(|&b| b == 0) {
            return "zeros".into();
        }
        if let Some(c) = self.history.iter().rev().find(|c| *c.bytes == *got) {
            return c.label.clone();
        }
        let head: Vec<String> = got.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("bytes {} ... (no data the check sent)", head.join(" "))
    }
}

/// Whether every byte of `got` is the byte at the same place of one of
/// `candidates`.
fn mix_of<'a>(got: &[u8], candidates: impl Iterator<Item = &'a Candidate> + Clone) -> bool {
    got.iter()
        .enumerate()
        .all(|(i, b)| candidates.clone().any(|c| c.bytes.get(i) == Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(byte: u8) -> Vec<u8> {
        vec![byte; 4]
    }

    fn written(model: &mut Model, lba: u64, byte: u8) -> Candidate {
        let c = Candidate::new(&block(byte), format!("{byte:#x} at {lba}"));
        model.sent(&c);
        model.set(lba, c.clone());
        c
    }

    #[test]
    fn unknown_blocks_take_anything_then_what_was_read() {
        let mut model = Model::new(4, 8);
        assert!(model.check(3, &block(9), &[]).is_ok());
        model.settle(3, &block(9), 1);
        let wrong = model.check(3, &block(8), &[]).unwrap_err();
        assert_eq!(wrong.lba, 3);
        assert_eq!(wrong.allowed, ["what step 1 first read there"]);
    }

    #[test]
    fn unmapped_blocks_read_zeros_or_also_their_old_data() {
        let mut model = Model::new(4, 8);
        written(&mut model, 1, 7);
        written(&mut model, 2, 8);
        model.unmap(1, true, "LBPRZ");
        model.unmap(2, false, "no LBPRZ");
        let stale = model.check(1, &block(7), &[]).unwrap_err();
        assert_eq!(stale.got, "0x7 at 1");
        assert_eq!(stale.allowed, ["zeros (LBPRZ)"]);
        assert!(model.check(2, &block(8), &[]).is_ok());
        assert!(model.check(2, &block(0), &[]).is_ok());
        assert!(model.check(2, &block(7), &[]).is_err());
        // Reading does not pin a block that may still drift.
        model.settle(2, &block(8), 3);
        assert!(model.check(2, &block(0), &[]).is_ok());
    }

    #[test]
    fn racing_writes_may_mix_byte_by_byte_but_bring_nothing_else() {
        let mut model = Model::new(4, 8);
        let old = written(&mut model, 0, 1);
        let new = Candidate::new(&block(2), "new".into());
        assert!(
            model
                .check(0, &[1, 2, 2, 1], std::slice::from_ref(&new))
                .is_ok()
        );
        let wrong = model
            .check(0, &[1, 3, 2, 1], std::slice::from_ref(&new))
            .unwrap_err();
        assert_eq!(wrong.got, "bytes 01 03 02 01 ... (no data the check sent)");
        // Without a racing write, the old data only.
        assert!(model.check(0, &[1, 2, 2, 1], &[]).is_err());
        model.set_any(0, vec![old, new]);
        assert!(model.check(0, &[2, 1, 1, 2], &[]).is_ok());
        model.settle(0, &[2, 1, 1, 2], 4);
        assert!(
            model.check(0, &block(2), &[]).is_err(),
            "settled by the read"
        );
    }

    #[test]
    fn resizing_drops_cut_blocks_and_brings_zeros() {
        let mut model = Model::new(4, 8);
        written(&mut model, 7, 5);
        model.resize(6, "shrunk");
        model.resize(8, "grown");
        assert_eq!(model.tracked(), [6, 7]);
        let old = model.check(7, &block(5), &[]).unwrap_err();
        assert_eq!(old.allowed, ["zeros (grown)"]);
        assert_eq!(old.got, "0x5 at 7");
    }
}
