//! Daemon mode: one process serving several devices, added and removed
//! while it runs.
//!
//! `tcmu-serve --control PATH [DEVICE-FLAGS]` listens on a Unix socket at
//! PATH (mode 0600: root only). A request is its words, one per line, sent
//! before the client shuts down its writing side; the answer is text lines,
//! after which the daemon closes the connection:
//!
//! | request              | answer                                         |
//! |----------------------|------------------------------------------------|
//! | `add DEVICE-FLAGS..` | `ready: /dev/sdX` (or the iSCSI URL, ...)      |
//! | `remove NAME`        | `removed: NAME`                                |
//! | `list`               | `NAME READY-TARGET`, one line per device       |
//! | anything wrong       | `error: <one line saying what>`                |
//!
//! `tcmu-serve --control PATH REQUEST...` is that client. Every device has
//! its own serving thread and workers, so a slow backend or a broken ring of
//! one device never stalls another; a device whose ring broke is removed
//! and logged. SIGINT or SIGTERM remove every device and the socket.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tcmu_target::Target;

use crate::{Args, catch_signals, force_on_signal, plan, ready_target, start_target};

/// Longest request accepted, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client waits for an answer (adding a device waits up to
/// 30 s for its disk to appear).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

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
        let mut args = Args::try_parse_from(argv).map_err(|e| first_line(&e.to_string()))?;
        if let Some(word) = args.request.first() {
            return Err(format!("unexpected argument {word:?}"));
        }
        if args.control.is_some() {
            return Err("add takes device flags only (no --control)".into());
        }
        if args.name.is_none() {
            self.added += 1;
            args.name = Some(format!("tcmurs-{}-{}", std::process::id(), self.added));
        }
        let plan = plan(args)?;
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

/// The first line of a (clap) error, without its `error: ` prefix.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The socket at `path`, made root-only. A socket file left by a daemon
/// that died is replaced; one a live daemon answers on is not.
fn bind(path: &Path) -> Result<UnixListener, String> {
    if UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another daemon already listens on {}",
            path.display()
        ));
    }
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    Ok(listener)
}

/// Read one request: its words, one per line, up to the end of the stream.
fn read_request(stream: &mut UnixStream) -> Result<Vec<String>, String> {
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .take(MAX_REQUEST + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if text.len() as u64 > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    Ok(text.lines().map(str::to_string).collect())
}

fn answer(devices: &mut Devices, mut stream: UnixStream) {
    let lines = match read_request(&mut stream) {
        Ok(words) => {
            log::info!("request: {}", words.join(" "));
            devices.handle(&words)
        }
        Err(e) => vec![format!("error: {e}")],
    };
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if let Err(e) = stream.write_all(text.as_bytes()) {
        log::warn!("cannot answer a request: {e}");
    }
}

/// `tcmu-serve --control PATH [DEVICE-FLAGS]`: serve until a signal.
pub fn run(mut args: Args) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: configuring the kernel target (configfs) needs it".into());
    }
    let control: PathBuf = args.control.take().expect("daemon mode has --control");
    let initial = if args.backend.is_some() {
        Some(plan(args)?)
    } else {
        None
    };
    let mut signals = catch_signals()?;
    let listener = bind(&control)?;
    let mut devices = Devices::new();
    let result = serve(&control, &listener, initial, &mut devices, &mut signals);
    let _ = std::fs::remove_file(&control);
    log::info!("shutting down (a second signal stops without waiting for commands in flight)");
    let forces: Vec<_> = devices
        .served
        .values()
        .filter_map(|s| s.target.force_stop_handle())
        .collect();
    force_on_signal(signals, move || forces.iter().for_each(|f| f.force()));
    let stopped = devices.shutdown();
    result.and(stopped)
}

fn serve(
    control: &Path,
    listener: &UnixListener,
    initial: Option<crate::Plan>,
    devices: &mut Devices,
    signals: &mut UnixStream,
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
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(500u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for requests: {e}")),
        }
        if fds[1].any().unwrap_or(false) {
            let mut byte = [0u8; 16];
            let _ = signals.read(&mut byte);
            return Ok(());
        }
        if fds[0].any().unwrap_or(false) {
            match listener.accept() {
                Ok((stream, _)) => answer(devices, stream),
                Err(e) => log::warn!("accepting a request: {e}"),
            }
        }
        devices.reap_failed();
    }
}

/// `tcmu-serve --control PATH REQUEST...`: send the request, print the
/// answer; an `error:` answer is returned as the error.
pub fn send_request(control: &Path, request: &[String]) -> Result<(), String> {
    let mut stream = UnixStream::connect(control).map_err(|e| {
        format!(
            "cannot reach a tcmu-serve daemon at {}: {e}",
            control.display()
        )
    })?;
    let mut text = request.join("\n");
    text.push('\n');
    stream
        .write_all(text.as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("no answer from the daemon: {e}"))?;
    let mut error = None;
    for line in answer.lines() {
        match line.strip_prefix("error: ") {
            Some(e) => error = Some(e.to_string()),
            None => println!("{line}"),
        }
    }
    error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "unexpected argument \"--bogus\"",
            ),
            (
                "add --backend mem --size 1MiB --control /x",
                "add takes device flags only",
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
        let dir = std::env::temp_dir().join(format!("tcmu-serve-ctl-{}", std::process::id()));
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
                answer(&mut devices, stream);
            }
        });
        assert_eq!(send_request(&path, &words("list")), Ok(()));
        let refused = send_request(&path, &words("remove d9")).unwrap_err();
        assert!(refused.contains("no device named \"d9\""), "{refused}");
        server.join().unwrap();
        // The socket of a daemon that is gone is replaced.
        let again = bind(&path);
        assert!(again.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_command_line_tells_the_modes_apart() {
        let args = Args::try_parse_from(["tcmu-serve", "--control", "/run/t.sock"]).unwrap();
        assert!(args.backend.is_none() && args.request.is_empty());
        let args = Args::try_parse_from([
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
        assert_eq!(args.request, words("add --backend mem --size 1MiB"));
        assert!(args.backend.is_none());
    }
}
