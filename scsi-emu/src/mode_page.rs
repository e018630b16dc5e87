//! The mode pages (read-write error recovery, SBC-4 6.5.9; caching,
//! SBC-4 6.5.5; control, SPC-5 7.5.8), their changeable fields and the
//! logical unit's current mode parameters, shared by MODE SENSE and MODE
//! SELECT.
//!
//! Three parameters are changeable: WCE (write cache enable), D_SENSE
//! (descriptor-format sense data) and SWP (software write protect: the
//! unit refuses every write with DATA PROTECT, LOGICAL UNIT SOFTWARE WRITE
//! PROTECTED until it is cleared). WCE is changeable on every device:
//! turning it on for a device without a volatile cache is harmless (its
//! writes are durable anyway, SYNCHRONIZE CACHE still calls `flush`), and
//! turning it off on a device with one makes every write durable before
//! it completes (writes carry `WriteFlags::FUA`). Parameters are not
//! savable: they start from the defaults whenever the emulator is built.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Caching page byte 2: WCE.
pub(crate) const WCE: u8 = 0x04;
/// Control page byte 2: D_SENSE.
pub(crate) const D_SENSE: u8 = 0x04;
/// Control page byte 4: SWP.
pub(crate) const SWP: u8 = 0x08;
/// Control page byte 3: QUEUE ALGORITHM MODIFIER 1 (unrestricted
/// reordering): commands run concurrently and overlapping ones are not
/// ordered, so claiming restricted ordering would be false.
const QAM_UNRESTRICTED: u8 = 0x10;

/// PAGE CONTROL field of MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    /// A mask of the changeable fields.
    Changeable,
    Default,
}

/// The changeable mode parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeValues {
    /// Caching page WCE.
    pub(crate) wce: bool,
    /// Control page D_SENSE.
    pub(crate) d_sense: bool,
    /// Control page SWP.
    pub(crate) swp: bool,
}

/// The current mode parameters of a logical unit and their defaults.
#[derive(Debug)]
pub(crate) struct ModeState {
    defaults: ModeValues,
    current: Mutex<ModeValues>,
}

impl ModeState {
    /// Defaults: WCE as the device reports its cache, fixed-format sense.
    pub(crate) fn new(write_cache: bool) -> Self {
        let defaults = ModeValues {
            wce: write_cache,
            d_sense: false,
            swp: false,
        };
        ModeState {
            defaults,
            current: Mutex::new(defaults),
        }
    }

    pub(crate) fn defaults(&self) -> ModeValues {
        self.defaults
    }

    pub(crate) fn current(&self) -> ModeValues {
        *self.lock()
    }

    /// The current values, locked: MODE SELECT validates against them and
    /// applies its changes under one lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ModeValues> {
        // ModeValues is plain data, always consistent.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A supported mode page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModePage {
    /// Initiators and LIO's own backstores read it; the backend does its
    /// own retries, so every field is zero and none is changeable.
    ReadWriteErrorRecovery,
    Caching,
    Control,
}

impl ModePage {
    /// Every supported page in ascending page-code order, as page 3Fh
    /// returns them.
    pub(crate) const ALL: [ModePage; 3] = [
        ModePage::ReadWriteErrorRecovery,
        ModePage::Caching,
        ModePage::Control,
    ];
    /// The "return all pages" page code.
    pub(crate) const ALL_PAGES_CODE: u8 = 0x3F;
    /// With page 3Fh: all pages and all subpages.
    pub(crate) const ALL_SUBPAGES: u8 = 0xFF;

    pub(crate) fn code(self) -> u8 {
        match self {
            ModePage::ReadWriteErrorRecovery => 0x01,
            ModePage::Caching => 0x08,
            ModePage::Control => 0x0A,
        }
    }

    /// The PAGE LENGTH field: bytes after the 2-byte page header.
    pub(crate) fn page_length(self) -> u8 {
        match self {
            ModePage::ReadWriteErrorRecovery => 0x0A,
            ModePage::Caching => 0x12,
            ModePage::Control => 0x0A,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The page with its header, for `values`: PS 0 (not savable), SPF 0
    /// (page_0 format).
    pub(crate) fn encode(self, values: ModeValues) -> Vec<u8> {
        let mut p = vec![0u8; 2 + usize::from(self.page_length())];
        p[0] = self.code();
        p[1] = self.page_length();
        match self {
            // No automatic reallocation, no retry counts, no time limit.
            ModePage::ReadWriteErrorRecovery => {}
            ModePage::Caching => {
                // RCD 0 and everything else zero: no prefetch tuning.
                if values.wce {
                    p[2] |= WCE;
                }
            }
            ModePage::Control => {
                // TST 0, QERR 0, TAS 0, ATO 0, every timeout zero.
                if values.d_sense {
                    p[2] |= D_SENSE;
                }
                p[3] = QAM_UNRESTRICTED;
                if values.swp {
                    p[4] |= SWP;
                }
            }
        }
        p
    }

    /// The changeable-values mask: ones where MODE SELECT may change bits.
    pub(crate) fn changeable(self) -> Vec<u8> {
        let mut p = vec![0u8; 2 + usize::from(self.page_length())];
        p[0] = self.code();
        p[1] = self.page_length();
        p[2] = match self {
            ModePage::ReadWriteErrorRecovery => 0,
            ModePage::Caching => WCE,
            ModePage::Control => D_SENSE,
        };
        if self == ModePage::Control {
            p[4] = SWP;
        }
        p
    }

    /// The page as MODE SENSE returns it for `pc`.
    pub(crate) fn for_page_control(self, pc: PageControl, modes: &ModeState) -> Vec<u8> {
        match pc {
            PageControl::Current => self.encode(modes.current()),
            PageControl::Default => self.encode(modes.defaults()),
            PageControl::Changeable => self.changeable(),
        }
    }

    /// The values `page` (header included, as long as `encode` makes it)
    /// sets, starting from `values`.
    pub(crate) fn apply(self, page: &[u8], mut values: ModeValues) -> ModeValues {
        let bit = |at: usize, mask: u8| page.get(at).is_some_and(|b| b & mask != 0);
        match self {
            ModePage::ReadWriteErrorRecovery => {}
            ModePage::Caching => values.wce = bit(2, WCE),
            ModePage::Control => {
                values.d_sense = bit(2, D_SENSE);
                values.swp = bit(4, SWP);
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: ModeValues = ModeValues {
        wce: true,
        d_sense: true,
        swp: true,
    };
    const OFF: ModeValues = ModeValues {
        wce: false,
        d_sense: false,
        swp: false,
    };

    #[test]
    fn pages_have_their_lengths() {
        for page in ModePage::ALL {
            let p = page.encode(OFF);
            assert_eq!(p.len(), 2 + usize::from(page.page_length()));
            assert_eq!(p[0], page.code());
            assert_eq!(page.changeable().len(), p.len());
            assert_eq!(ModePage::from_code(page.code()), Some(page));
        }
        assert_eq!(ModePage::from_code(0x02), None);
        // Read-write error recovery: all zero, nothing changeable.
        let p = ModePage::ReadWriteErrorRecovery.encode(ON);
        assert_eq!(p, [0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(
            ModePage::ReadWriteErrorRecovery.changeable()[2..]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn encode_and_apply_round_trip() {
        for page in ModePage::ALL {
            for values in [ON, OFF] {
                let encoded = page.encode(values);
                let back = page.apply(&encoded, if values == ON { OFF } else { ON });
                match page {
                    ModePage::ReadWriteErrorRecovery => {
                        assert_eq!(back, if values == ON { OFF } else { ON })
                    }
                    ModePage::Caching => assert_eq!(back.wce, values.wce),
                    ModePage::Control => {
                        assert_eq!(back.d_sense, values.d_sense);
                        assert_eq!(back.swp, values.swp);
                    }
                }
            }
            // Only the changeable bits differ between the two encodings.
            let (a, b, mask) = (page.encode(ON), page.encode(OFF), page.changeable());
            for i in 2..a.len() {
                assert_eq!((a[i] ^ b[i]) & !mask[i], 0, "{page:?} byte {i}");
            }
        }
    }

    #[test]
    fn state_starts_at_the_defaults() {
        let state = ModeState::new(true);
        assert_eq!(state.current(), state.defaults());
        assert!(state.current().wce);
        assert!(!state.current().d_sense);
        state.lock().d_sense = true;
        assert!(state.current().d_sense);
        assert!(!state.defaults().d_sense);
    }
}
