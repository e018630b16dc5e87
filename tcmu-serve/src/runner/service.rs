//! The runner's life: start-up in the order that loses no event and
//! leaves no configfs write waiting, the event loop, and the stop.
//!
//! Start-up: take the lock; join the kernel's `config` netlink group
//! (events are queued from here on); refuse if another daemon listens
//! there; start the guard; block the kernel's netlink waits and end any a
//! dead runner left; SET_FEATURES(1) (the kernel waits for our answers
//! from now on, so a bad backstore's `enable` fails with our error); serve
//! the backstores that exist; unblock; own org.kernel.TCMUService1 (or
//! stop, with one line, when another daemon owns it); print
//! `ready: runner`.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tcmu_core::configfs;
use tcmu_core::netlink::TcmuNetlink;
use tcmu_core::poll::wait_readable;
use tcmu_core::server::ServeOptions;
use tcmu_target::Signals;

use crate::runner::args::RunnerArgs;
use crate::runner::backing;
use crate::runner::config_string::SUBTYPES;
use crate::runner::dbus::{Bus, HandlerInfo, TcmuService};
use crate::runner::devices::Devices;
use crate::runner::guard;
use crate::runner::listeners;
use crate::runner::lock;
use crate::runner::netlink_waits;

/// How often the runner looks for devices whose serving stopped.
const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// `tcmu-serve runner`.
pub fn run(args: RunnerArgs) -> Result<(), String> {
    if args.guard {
        return guard::watch();
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: serving the kernel's TCMU devices needs it".into());
    }
    if args.release {
        return netlink_waits::release();
    }
    configfs::load_modules(&["configfs", "target_core_mod", "target_core_user"])
        .map_err(|e| e.to_string())?;
    let root = Path::new(configfs::TARGET_ROOT);
    configfs::ensure_target_root(root).map_err(|e| e.to_string())?;
    let mut signals = Signals::catch().map_err(|e| format!("cannot catch signals: {e}"))?;
    let lock = lock::acquire(&args.lock_file, lock::LOCK_WAIT)?;
    let netlink = TcmuNetlink::connect().map_err(|e| e.to_string())?;
    if let Some(other) = listeners::others(netlink.group(), netlink.port_id()).first() {
        let pid = other.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        return Err(format!(
            "another daemon listens for TCMU device events: {}{pid}; stop it first",
            other.command
        ));
    }
    let _guard = guard::spawn(&lock)?;
    netlink_waits::block_and_reset()?;
    let mut serve = ServeOptions::default();
    if let Some(workers) = args.workers {
        serve.workers = workers;
    }
    let mut devices = Devices::new(root, serve)?;
    let started = netlink
        .set_features(true)
        .map_err(|e| e.to_string())
        .and_then(|()| devices.serve_existing());
    netlink_waits::unblock()?;
    started?;
    // The bus name last: systemd (Type=dbus) and bus activation take it
    // for "ready", and only from here on does `enable` work again.
    let _dbus = match args.no_dbus {
        true => None,
        false => match start_dbus(args.dbus_address.clone()) {
            Ok(service) => Some(service),
            Err(e) => {
                let _ = devices.stop_all(&netlink);
                let _ = netlink_waits::release();
                return Err(e);
            }
        },
    };
    log::info!("serving {} existing backstores", devices.len());
    println!("ready: runner");
    let _ = std::io::stdout().flush();
    let result = event_loop(&netlink, &mut devices, &mut signals);
    log::info!("stopping: the backstores stay in configfs for the next runner");
    let stopped = devices.stop_all(&netlink);
    // No runner answers now: the kernel must not wait for one.
    let released = netlink_waits::release();
    result.and(stopped).and(released)
}

fn start_dbus(address: Option<String>) -> Result<TcmuService, String> {
    let handlers = SUBTYPES
        .iter()
        .map(|(subtype, desc)| HandlerInfo {
            subtype: subtype.to_string(),
            config_desc: desc.to_string(),
        })
        .collect();
    let bus = address.map_or(Bus::System, Bus::Address);
    TcmuService::start(bus, handlers, Arc::new(backing::check))
}

/// Handle device events until a signal (or the netlink socket fails).
fn event_loop(
    netlink: &TcmuNetlink,
    devices: &mut Devices,
    signals: &mut Signals,
) -> Result<(), String> {
    loop {
        // Signals first: a stop wins over an event arriving at once.
        let ready = wait_readable(
            signals.as_fd(),
            &[netlink.as_fd(), devices.doorbell()],
            Some(REAP_INTERVAL),
        )
        .map_err(|e| format!("waiting for device events: {e}"))?;
        match ready {
            Some(0) => {
                signals.take();
                return Ok(());
            }
            Some(1) => {
                while let Some(event) = netlink
                    .recv_event(Some(Duration::ZERO))
                    .map_err(|e| e.to_string())?
                {
                    log::debug!("event: {event}");
                    devices.handle(&event, netlink);
                }
            }
            _ => {}
        }
        // Every turn, not only on the doorbell: a busy netlink socket
        // must not keep finished openings from being answered.
        devices.answer_opened(netlink);
        devices.reap_failed();
    }
}
