//! One runner at a time: an exclusive `flock` on a lock file, held by the
//! runner and by its guard (which inherits it) until both are gone, so a
//! runner started again waits for the old guard's release to finish.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Where the runner's lock lives unless told otherwise.
pub const DEFAULT_LOCK_FILE: &str = "/run/tcmu-serve-runner.lock";

/// How long to wait for a runner that is going away (its guard releases
/// the kernel's netlink waits, which takes milliseconds).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Take the lock at `path`, waiting up to `wait` for its holder to end.
pub fn acquire(path: &Path, wait: Duration) -> Result<Flock<File>, String> {
    let start = Instant::now();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("lock file {}: {e}", path.display()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((returned, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                file = returned;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(format!(
                    "another tcmu-serve runner is running ({} is locked)",
                    path.display()
                ));
            }
            Err((_, e)) => return Err(format!("lock file {}: {}", path.display(), e.desc())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("runner.lock");
        let first = acquire(&path, Duration::ZERO).unwrap();
        let err = acquire(&path, Duration::from_millis(250)).unwrap_err();
        assert!(
            err.contains("another tcmu-serve runner") && err.contains("runner.lock"),
            "{err}"
        );
        drop(first);
        acquire(&path, Duration::ZERO).unwrap();
        let err = acquire(&tmp.path().join("no/dir/x.lock"), Duration::ZERO).unwrap_err();
        assert!(err.contains("lock file"), "{err}");
    }
}
