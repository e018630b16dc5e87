//! Daemon mode: one process serving several devices, added and removed
//! while it runs.
//!
//! `tcmu-serve --control PATH [DEVICE-FLAGS]` listens on a Unix socket at
//! PATH (mode 0600: root only) for the requests of the control protocol
//! (see `control.rs`); `tcmu-serve --control PATH add|remove|list ...` is
//! its client. Every device has
//! its own serving thread and workers, so a slow backend or a broken ring of
//! one device never stalls another; a device whose ring broke is removed
//! and logged. SIGINT or SIGTERM remove every device and the socket.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use tcmu_core::poll::wait_readable;
use tcmu_target::{Signals, Target};

use crate::cli::{AddArgs, DeviceArgs, one_line};
use crate::control;
use crate::device::{ready_target, start_target};
use crate::plan::Plan;

/// How often the daemon looks for devices whose serving stopped.
const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// One device of the daemon.
struct Served {
    target: Target,
    ready: String,
}

/// The daemon's devices, by backstore name.
struct Devices {
    served: BTreeMap<String, Served>,
    /// Numbers the default names of added devices.
    added: u32,
}

impl Devices {
    fn new() -> Self {
        Devices {
            served: BTreeMap::new(),
            added: 0,
        }
    }

    /// Execute one request; the answer's lines.
    fn handle(&mut self, words: &[String]) -> Vec<String> {
        let answer = match words.first().map(String::as_str) {
            Some("add") => self
                .add(&words[1..])
                .map(|ready| vec![format!("ready: {ready}")]),
            Some("remove") => match &words[1..] {
                [name] => self.remove(name).map(|()| vec![format!("removed: {name}")]),
                _ => Err("use: remove NAME".into()),
            },
            Some("list") if words.len() == 1 => Ok(self
                .served
                .iter()
                .map(|(name, s)| format!("{name} {}", s.ready))
                .collect()),
            Some(other) => Err(format!(
                "unknown request {other:?}: use add DEVICE-FLAGS..., remove NAME or list"
            )),
            None => Err("empty request: use add DEVICE-FLAGS..., remove NAME or list".into()),
        };
        answer.unwrap_or_else(|e| vec![format!("error: {e}")])
    }

    fn add(&mut self, flags: &[String]) -> Result<String, String> {
        let argv = std::iter::once("tcmu-serve add".to_string()).chain(flags.iter().cloned());
        let mut args = AddArgs::try_parse_from(argv)
            .map_err(|e| one_line(&e))?
            .device;
        if args.name.is_none() {
            self.added += 1;
            args.name = Some(format!("tcmurs-{}-{}", std::process::id(), self.added));
        }
        let plan = Plan::from_args(args)?;
        if self.served.contains_key(&plan.name) {
            return Err(format!("a device named {} is already served", plan.name));
        }
        let target = start_target(&plan)?;
        let ready = ready_target(&target);
        log::info!("added {} ({ready})", plan.name);
        self.served.insert(
            plan.name.clone(),
            Served {
                target,
                ready: ready.clone(),
            },
        );
        Ok(ready)
    }

    fn remove(&mut self, name: &str) -> Result<(), String> {
        let served = self
            .served
            .remove(name)
            .ok_or_else(|| format!("no device named {name:?} (see list)"))?;
        served
            .target
            .shutdown()
            .map_err(|e| format!("removing {name}: {e}"))?;
        log::info!("removed {name}");
        Ok(())
    }

    /// Remove the devices whose serving stopped on its own (a broken ring).
    fn reap_failed(&mut self) {
        let failed: Vec<String> = self
            .served
            .iter()
            .filter(|(_, s)| s.target.failed())
            .map(|(name, _)| name.clone())
            .collect();
        for name in failed {
            log::error!("{name}: serving stopped; removing the device");
            if let Err(e) = self.remove(&name) {
                log::error!("{e}");
            }
        }
    }

    /// Remove every device; the first error.
    fn shutdown(self) -> Result<(), String> {
        let mut first_error = None;
        for (name, served) in self.served {
            if let Err(e) = served.target.shutdown() {
                log::error!("removing {name}: {e}");
                first_error.get_or_insert(format!("removing {name}: {e}"));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `tcmu-serve --control PATH [DEVICE-FLAGS]`: serve until a signal.
pub fn run(control: &Path, args: DeviceArgs) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: configuring the kernel target (configfs) needs it".into());
    }
    let initial = if args.backend.is_some() {
        Some(Plan::from_args(args)?)
    } else {
        None
    };
    let mut signals = Signals::catch().map_err(|e| format!("cannot catch signals: {e}"))?;
    let listener = control::bind(control)?;
    let mut devices = Devices::new();
    let result = serve(control, &listener, initial, &mut devices, &mut signals);
    let _ = std::fs::remove_file(control);
    log::info!("shutting down (a second signal stops without waiting for commands in flight)");
    let forces: Vec<_> = devices
        .served
        .values()
        .filter_map(|s| s.target.force_stop_handle())
        .collect();
    signals.on_next(move || forces.iter().for_each(|f| f.force()));
    let stopped = devices.shutdown();
    result.and(stopped)
}

fn serve(
    control: &Path,
    listener: &UnixListener,
    initial: Option<Plan>,
    devices: &mut Devices,
    signals: &mut Signals,
) -> Result<(), String> {
    let ready = match initial {
        Some(plan) => {
            let target = start_target(&plan)?;
            let ready = ready_target(&target);
            devices.served.insert(
                plan.name.clone(),
                Served {
                    target,
                    ready: ready.clone(),
                },
            );
            ready
        }
        None => control.display().to_string(),
    };
    println!("ready: {ready}");
    let _ = std::io::stdout().flush();
    log::info!("listening for requests on {}", control.display());
    loop {
        // Signals first: they win over a request arriving at the same time.
        let ready = wait_readable(signals.as_fd(), &[listener.as_fd()], Some(REAP_INTERVAL))
            .map_err(|e| format!("waiting for requests: {e}"))?;
        if ready == Some(0) {
            signals.take();
            return Ok(());
        }
        if ready == Some(1) {
            match listener.accept() {
                Ok((stream, _)) => control::answer(stream, |words| devices.handle(words)),
                Err(e) => log::warn!("accepting a request: {e}"),
            }
        }
        devices.reap_failed();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::cli::{Cli, Request};
    use crate::control::{bind, send_request};

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn bad_requests_are_answered_with_one_error_line() {
        let mut devices = Devices::new();
        for (request, expect) in [
            ("", "empty request"),
            ("start", "unknown request \"start\""),
            ("remove", "use: remove NAME"),
            ("remove a b", "use: remove NAME"),
            ("remove nothing", "no device named \"nothing\""),
            ("add --size 1MiB", "--backend is required"),
            ("add --backend mem", "--size is required"),
            (
                "add --backend mem --size 1MiB --bogus",
                "unexpected argument '--bogus'",
            ),
            (
                "add --backend mem --size 1MiB --control /x",
                "unexpected argument '--control'",
            ),
            ("add --backend mem --size 1MiB --name a/b", "invalid name"),
        ] {
            let answer = devices.handle(&words(request));
            assert_eq!(answer.len(), 1, "{request}: {answer:?}");
            assert!(
                answer[0].starts_with("error: ") && answer[0].contains(expect),
                "{request}: {answer:?}"
            );
        }
        assert_eq!(devices.handle(&words("list")), Vec::<String>::new());
    }

    #[test]
    fn a_request_travels_as_lines_and_the_answer_comes_back() {
        let tmp_dir = tempfile::tempdir().unwrap();
        let dir = tmp_dir.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second daemon on the same socket is refused.
        assert!(bind(&path).unwrap_err().contains("already listens"));
        let server = std::thread::spawn(move || {
            let mut devices = Devices::new();
            // The probe of the refused second bind, then two requests.
            for _ in 0..3 {
                let (stream, _) = listener.accept().unwrap();
                control::answer(stream, |words| devices.handle(words));
            }
        });
        assert_eq!(send_request(&path, &words("list")), Ok(()));
        let refused = send_request(&path, &words("remove d9")).unwrap_err();
        assert!(refused.contains("no device named \"d9\""), "{refused}");
        server.join().unwrap();
        // The socket of a daemon that is gone is replaced.
        let again = bind(&path);
        assert!(again.is_ok());
    }

    #[test]
    fn the_command_line_tells_the_modes_apart() {
        let args = Cli::try_parse_from(["tcmu-serve", "--control", "/run/t.sock"]).unwrap();
        assert!(args.device.backend.is_none() && args.request.is_none());
        let args = Cli::try_parse_from([
            "tcmu-serve",
            "--control",
            "/run/t.sock",
            "add",
            "--backend",
            "mem",
            "--size",
            "1MiB",
        ])
        .unwrap();
        let request = args.request.expect("a request");
        assert_eq!(request.words(), words("add --backend mem --size 1MiB"));
        assert!(args.device.backend.is_none());
        for line in ["remove d2", "list"] {
            let argv = ["tcmu-serve", "--control", "/run/t.sock"]
                .into_iter()
                .chain(line.split(' '));
            let request = Cli::try_parse_from(argv).unwrap().request.unwrap();
            assert_eq!(request.words(), words(line));
        }
        // Device flags without a request: the single-device mode.
        let args =
            Cli::try_parse_from(["tcmu-serve", "--backend", "mem", "--size", "1MiB"]).unwrap();
        assert_eq!(args.request, None::<Request>);
    }
}
