//! The single-device mode: serve one device until a signal.

use std::io::Write;

use tcmu_target::Signals;

use crate::device::{ready_target, start_target};
use crate::plan::Plan;

/// Serve one device until SIGINT or SIGTERM (or until serving fails),
/// then remove it; a second signal stops without waiting.
pub fn run(plan: Plan) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: configuring the kernel target (configfs) needs it".into());
    }
    // Signals are caught from here on, so a stop during setup still tears down.
    let mut signals = Signals::catch().map_err(|e| format!("cannot catch signals: {e}"))?;
    let target = start_target(&plan)?;
    println!("ready: {}", ready_target(&target));
    let _ = std::io::stdout().flush();

    // Wait for a signal, or for serving to fail on its own.
    signals.wait_while(|| !target.failed());
    log::info!("shutting down (a second signal stops without waiting for commands in flight)");
    if let Some(force) = target.force_stop_handle() {
        signals.on_next(move || force.force());
    }
    target.shutdown().map_err(|e| e.to_string())
}
