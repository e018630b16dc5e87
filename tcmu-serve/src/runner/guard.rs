//! The guard: a small process the runner starts, that outlives it when it
//! is killed (SIGKILL, a crash) and then frees the kernel's netlink waits
//! (see `netlink_waits`). Without it, after a killed runner every
//! `enable` of a `user:` backstore would hang until a runner came back.
//!
//! The guard reads its stdin, a pipe whose other end only the runner
//! holds: end of file means the runner is gone. It inherits the runner's
//! lock, so a new runner starts only after the guard is done.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use nix::fcntl::{FcntlArg, FdFlag, Flock, fcntl};

use crate::runner::netlink_waits;

/// The runner's end of its guard.
pub struct Guard {
    // Closed when the runner ends, however it ends.
    _alive: ChildStdin,
    _child: Child,
}

/// Start the guard (`tcmu-serve runner --guard`), handing it `lock`.
pub fn spawn(lock: &Flock<File>) -> Result<Guard, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let fd = lock.as_raw_fd();
    // The child inherits the lock's descriptor, and with it the lock.
    let set = |flags| fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(|e| e.desc());
    set(FdFlag::empty()).map_err(|e| format!("lock descriptor: {e}"))?;
    let spawned = Command::new(exe)
        .args(["runner", "--guard"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn();
    set(FdFlag::FD_CLOEXEC).map_err(|e| format!("lock descriptor: {e}"))?;
    let mut child = spawned.map_err(|e| format!("cannot start the guard process: {e}"))?;
    let alive = child.stdin.take().ok_or("the guard has no stdin")?;
    log::debug!("guard process {}", child.id());
    Ok(Guard {
        _alive: alive,
        _child: child,
    })
}

/// The guard's life: wait for the runner to end, then release. SIGINT
/// and SIGTERM (a Ctrl-C or a service stop reaches both processes) are
/// caught and do not end the wait: the runner ends on them, and its end
/// is what the guard waits for.
pub fn watch() -> Result<(), String> {
    let ignored = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, ignored.clone())
            .map_err(|e| format!("cannot catch signals: {e}"))?;
    }
    let mut rest = Vec::new();
    // Returns at end of file: the runner's end of the pipe is closed.
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut rest) {
        log::warn!("guard: stdin: {e}");
    }
    netlink_waits::release()
}
