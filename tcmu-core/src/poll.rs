//! Waiting for one of a few descriptors to become readable, with one rule
//! for a timeout and for signals: an interrupted wait (EINTR) goes on with
//! the time that is left, so a signal (handled elsewhere, e.g. through a
//! signal pipe among the descriptors) never cuts a wait short.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The most descriptors one wait polls (they live on the stack: the
/// serving loop waits once per wake-up and allocates nothing).
pub const MAX_FDS: usize = 4;

/// Block until `first` or one of `others` is readable (or has hung up),
/// or `timeout` passes (`None`: no timeout). The index of the first such
/// descriptor (0 for `first`, 1 + i for `others[i]`), or `None` when the
/// time ran out.
pub fn wait_readable(
    first: BorrowedFd<'_>,
    others: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Option<usize>> {
    let count = 1 + others.len();
    if count > MAX_FDS {
        return Err(io::Error::other(format!(
            "can wait for at most {MAX_FDS} descriptors at once"
        )));
    }
    let mut fds = [PollFd::new(first, PollFlags::POLLIN); MAX_FDS];
    for (slot, fd) in fds[1..].iter_mut().zip(others) {
        *slot = PollFd::new(*fd, PollFlags::POLLIN);
    }
    let fds = &mut fds[..count];
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => poll_timeout(d.saturating_duration_since(Instant::now())),
        };
        match poll(fds, wait) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                return Ok(fds
                    .iter()
                    .position(|fd| fd.revents().is_some_and(|r| !r.is_empty())));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `duration` as poll's timeout: whole milliseconds, rounded up so a short
/// wait is not a busy loop, capped at poll's maximum.
fn poll_timeout(duration: Duration) -> PollTimeout {
    let ms = duration
        .as_nanos()
        .div_ceil(1_000_000)
        .min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn the_first_readable_descriptor_is_named() {
        let (a_rx, mut a_tx) = UnixStream::pair().unwrap();
        let (b_rx, mut b_tx) = UnixStream::pair().unwrap();
        let short = Some(Duration::from_millis(10));
        let wait = |t| wait_readable(a_rx.as_fd(), &[b_rx.as_fd()], t).unwrap();
        assert_eq!(wait(short), None);
        b_tx.write_all(&[1]).unwrap();
        assert_eq!(wait(short), Some(1));
        a_tx.write_all(&[1]).unwrap();
        assert_eq!(wait(None), Some(0));
        assert_eq!(
            wait_readable(b_rx.as_fd(), &[], Some(Duration::ZERO)).unwrap(),
            Some(0)
        );
        assert!(wait_readable(a_rx.as_fd(), &[a_rx.as_fd(); MAX_FDS], short).is_err());
    }

    #[test]
    fn poll_timeouts_round_up_and_clamp() {
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(
            poll_timeout(Duration::from_micros(1)),
            PollTimeout::try_from(1u32).unwrap()
        );
        assert_eq!(
            poll_timeout(Duration::from_millis(1500)),
            PollTimeout::try_from(1500u32).unwrap()
        );
        assert_eq!(poll_timeout(Duration::MAX), PollTimeout::MAX);
    }

    #[test]
    fn a_timeout_is_kept_to() {
        let (rx, _tx) = UnixStream::pair().unwrap();
        let start = Instant::now();
        assert_eq!(
            wait_readable(rx.as_fd(), &[], Some(Duration::from_millis(30))).unwrap(),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
