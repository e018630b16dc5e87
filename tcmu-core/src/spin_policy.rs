//! How long the worker reading the ring spins for the next entry before it
//! sleeps: a fixed time, or — adaptive — that time only while spinning
//! pays.
//!
//! Spinning wins when commands come faster than a wake-up costs and a CPU
//! is free to spin on; it loses when the initiator needs every CPU (the
//! spinner takes one from it). The adaptive policy looks at both over
//! windows of [`WINDOW`]: how often a spin found a new entry, and how
//! often the process's threads were preempted (involuntary context
//! switches, `getrusage`), which is what a contended CPU does to them.
//! A window that found spins wasted or the CPUs contended turns spinning
//! off for a back-off time that doubles each time it happens again, up to
//! [`MAX_BACKOFF`]; a good window resets it.
//!
//! With `debug` logging on (`RUST_LOG=tcmu_core::spin_policy=debug`), the
//! policy says every [`REPORT_EVERY`] what it decided and why: how many
//! windows spun, how many were off for contended CPUs or wasted spins,
//! how often a spin found an entry and how often the process was
//! preempted.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a window of observations is.
const WINDOW: Duration = Duration::from_millis(50);

/// The longest spinning stays off after a bad window.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Involuntary context switches per second of the whole process above
/// which the CPUs count as contended.
const CONTENDED_PER_SEC: u64 = 100;

/// A window needs this many spins before their hit rate counts.
const MIN_SPINS: u32 = 8;

/// Spins are wasted when fewer than one in this many find an entry.
const HIT_ONE_IN: u32 = 2;

/// How often the policy's decisions are summed up in a `debug` line.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Whether and how long to spin.
#[derive(Debug)]
pub(crate) struct SpinPolicy {
    max: Duration,
    adaptive: bool,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    hits: u32,
    misses: u32,
    /// The process's involuntary context switches at `start`.
    preempted: u64,
    /// Spinning is off until then.
    off_until: Option<Instant>,
    /// How long the next bad window turns spinning off.
    backoff: Duration,
    /// What the windows since the last report found.
    report: Report,
}

/// The windows judged since the last `debug` line.
#[derive(Debug)]
struct Report {
    start: Instant,
    hits: u64,
    misses: u64,
    preempted: u64,
    good: u32,
    contended: u32,
    wasted: u32,
}

impl Report {
    fn new(start: Instant) -> Self {
        Report {
            start,
            hits: 0,
            misses: 0,
            preempted: 0,
            good: 0,
            contended: 0,
            wasted: 0,
        }
    }

    /// Adds a judged window; logs and starts over every [`REPORT_EVERY`].
    fn add(&mut self, hits: u32, misses: u32, preempted: u64, verdict: Verdict, now: Instant) {
        self.hits += u64::from(hits);
        self.misses += u64::from(misses);
        self.preempted += preempted;
        match verdict {
            Verdict::Spin => self.good += 1,
            Verdict::Contended => self.contended += 1,
            Verdict::Wasted => self.wasted += 1,
        }
        let elapsed = now.duration_since(self.start);
        if elapsed < REPORT_EVERY {
            return;
        }
        let spins = self.hits + self.misses;
        log::debug!(
            "adaptive spin: windows spinning {}, off for contended CPUs {}, off for wasted spins {}; \
             {} spins, {} % found an entry; {} preemptions/s",
            self.good,
            self.contended,
            self.wasted,
            spins,
            (self.hits * 100).checked_div(spins).unwrap_or(0),
            self.preempted * 1000 / (elapsed.as_millis().max(1) as u64),
        );
        *self = Report::new(now);
    }
}

/// What a window of observations says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Spinning pays.
    Spin,
    /// The process was preempted too often: the CPUs are wanted elsewhere.
    Contended,
    /// Too few spins found an entry.
    Wasted,
}

impl SpinPolicy {
    /// Spin up to `max` each time; with `adaptive`, only while it pays.
    pub(crate) fn new(max: Duration, adaptive: bool) -> Self {
        SpinPolicy {
            max,
            adaptive,
            window: Mutex::new(Window {
                start: Instant::now(),
                hits: 0,
                misses: 0,
                preempted: preemptions(),
                off_until: None,
                backoff: WINDOW,
                report: Report::new(Instant::now()),
            }),
        }
    }

    /// How long to spin now (zero: sleep at once).
    pub(crate) fn budget(&self) -> Duration {
        if !self.adaptive || self.max.is_zero() {
            return self.max;
        }
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(w.start) >= WINDOW {
            let preempted = preemptions();
            let (hits, misses) = (w.hits, w.misses);
            let in_window = preempted.saturating_sub(w.preempted);
            let verdict = judge(hits, misses, in_window, now.duration_since(w.start));
            w.report.add(hits, misses, in_window, verdict, now);
            w.start = now;
            w.hits = 0;
            w.misses = 0;
            w.preempted = preempted;
            if verdict == Verdict::Spin {
                w.backoff = WINDOW;
            } else if w.off_until.is_none_or(|until| now >= until) {
                w.off_until = Some(now + w.backoff);
                w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
            }
        }
        match w.off_until {
            Some(until) if now < until => Duration::ZERO,
            _ => self.max,
        }
    }

    /// What a spin found: a new entry (`hit`) or nothing.
    pub(crate) fn record(&self, hit: bool) {
        if !self.adaptive {
            return;
        }
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if hit {
            w.hits += 1;
        } else {
            w.misses += 1;
        }
    }
}

/// What a window of `hits` and `misses` and `preempted` involuntary
/// switches over `elapsed` says.
fn judge(hits: u32, misses: u32, preempted: u64, elapsed: Duration) -> Verdict {
    let millis = elapsed.as_millis().max(1) as u64;
    if preempted * 1000 / millis > CONTENDED_PER_SEC {
        return Verdict::Contended;
    }
    let spins = hits + misses;
    if spins < MIN_SPINS || hits * HIT_ONE_IN >= spins {
        Verdict::Spin
    } else {
        Verdict::Wasted
    }
}

/// The process's involuntary context switches so far (0 if unknown).
fn preemptions() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0, |usage| {
        u64::try_from(usage.involuntary_context_switches()).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contended_cpus_or_wasted_spins_turn_spinning_off() {
        let window = Duration::from_millis(50);
        // Quiet CPUs, spins that find entries: on.
        assert_eq!(judge(90, 10, 0, window), Verdict::Spin);
        // Too few spins to judge: on.
        assert_eq!(judge(0, 5, 0, window), Verdict::Spin);
        // Half the spins finding an entry still pays on quiet CPUs.
        assert_eq!(judge(50, 50, 0, window), Verdict::Spin);
        // Fewer than that: wasted, off.
        assert_eq!(judge(40, 60, 0, window), Verdict::Wasted);
        // 10 preemptions in 50 ms is 200/s: contended, off.
        assert_eq!(judge(90, 10, 10, window), Verdict::Contended);
        // 4 in 50 ms is 80/s: on.
        assert_eq!(judge(90, 10, 4, window), Verdict::Spin);
    }

    #[test]
    fn the_report_sums_windows_and_starts_over_after_its_period() {
        let start = Instant::now();
        let mut r = Report::new(start);
        r.add(3, 1, 2, Verdict::Spin, start + WINDOW);
        r.add(0, 9, 0, Verdict::Wasted, start + WINDOW * 2);
        assert_eq!(
            (r.hits, r.misses, r.preempted, r.good, r.wasted),
            (3, 10, 2, 1, 1)
        );
        r.add(1, 1, 9, Verdict::Contended, start + REPORT_EVERY);
        assert_eq!(
            (r.hits, r.misses, r.preempted, r.good, r.contended, r.wasted),
            (0, 0, 0, 0, 0, 0),
            "reported and started over"
        );
        assert_eq!(r.start, start + REPORT_EVERY);
    }

    #[test]
    fn fixed_spin_ignores_what_it_found() {
        let policy = SpinPolicy::new(Duration::from_micros(60), false);
        for _ in 0..100 {
            policy.record(false);
        }
        assert_eq!(policy.budget(), Duration::from_micros(60));
        let off = SpinPolicy::new(Duration::ZERO, true);
        assert_eq!(off.budget(), Duration::ZERO);
    }

    #[test]
    fn wasted_spins_back_off_for_longer_each_time() {
        let policy = SpinPolicy::new(Duration::from_micros(60), true);
        assert_eq!(policy.budget(), Duration::from_micros(60));
        for _ in 0..20 {
            policy.record(false);
        }
        // Age the window instead of sleeping through it.
        {
            let mut w = policy.window.lock().unwrap();
            w.start -= WINDOW;
            w.preempted = preemptions();
        }
        assert_eq!(policy.budget(), Duration::ZERO, "off after a wasted window");
        let w = policy.window.lock().unwrap();
        assert_eq!(w.backoff, WINDOW * 2, "the next back-off is longer");
        assert!(w.off_until.is_some_and(|until| until > Instant::now()));
    }
}
