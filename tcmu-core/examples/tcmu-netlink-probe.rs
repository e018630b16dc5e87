//! Talk to the kernel's TCM-USER generic netlink family (run by
//! vm/tests/netlink.sh; needs root and target_core_user).
//!
//! ```text
//! tcmu-netlink-probe listen [--count N] [--timeout SECONDS]
//! tcmu-netlink-probe set-features 0|1
//! ```
//!
//! `listen` joins the `config` group, prints `listening` once joined, then
//! one line `event: <event>` per device event (see `DeviceEvent`'s
//! `Display`) and answers each with status 0, printing `reply: ok <id>` or
//! `reply: error <id> <reason>`. It exits 0 after N events (N = 0: at the
//! timeout, default 60 s), 3 if the timeout comes first.
//!
//! `set-features` sends SET_FEATURES with SUPP_KERN_CMD_REPLY = 0 or 1 and
//! prints `set-features: <v> ok`. The setting is module-global and stays
//! after this program exits.
//!
//! Exit status: 0 success, 1 error, 2 usage, 3 timeout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tcmu_core::netlink::TcmuNetlink;

const USAGE: &str = "usage: tcmu-netlink-probe listen [--count N] [--timeout SECONDS]\n       tcmu-netlink-probe set-features 0|1";

enum Mode {
    Listen { count: u64, timeout: Duration },
    SetFeatures(bool),
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        Some("listen") => {
            let mut count = 0;
            let mut timeout = Duration::from_secs(60);
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag.as_str() {
                    "--count" => {
                        count = value
                            .parse()
                            .map_err(|_| format!("bad --count {value:?}"))?
                    }
                    "--timeout" => {
                        let secs: f64 = value
                            .parse()
                            .map_err(|_| format!("bad --timeout {value:?}"))?;
                        timeout = Duration::try_from_secs_f64(secs)
                            .map_err(|_| format!("bad --timeout {value:?}"))?;
                    }
                    _ => return Err(format!("unknown option {flag:?}")),
                }
            }
            Ok(Mode::Listen { count, timeout })
        }
        Some("set-features") => match args.get(1..).unwrap_or_default() {
            [v] if v == "0" => Ok(Mode::SetFeatures(false)),
            [v] if v == "1" => Ok(Mode::SetFeatures(true)),
            _ => Err("set-features wants exactly one argument, 0 or 1".into()),
        },
        _ => Err("no mode given".into()),
    }
}

fn listen(count: u64, timeout: Duration) -> Result<ExitCode, String> {
    let nl = TcmuNetlink::connect().map_err(|e| e.to_string())?;
    println!("listening");
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    while count == 0 || seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = nl.recv_event(Some(left)).map_err(|e| e.to_string())? else {
            if count == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("timeout: saw {seen} of {count} events");
            return Ok(ExitCode::from(3));
        };
        seen += 1;
        println!("event: {event}");
        match nl.reply(&event, 0) {
            Ok(()) => println!("reply: ok {}", event.device_id),
            Err(e) => println!("reply: error {} {e}", event.device_id),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_features(on: bool) -> Result<ExitCode, String> {
    let nl = TcmuNetlink::connect().map_err(|e| e.to_string())?;
    nl.set_features(on).map_err(|e| e.to_string())?;
    println!("set-features: {} ok", u8::from(on));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse_args(&args) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("tcmu-netlink-probe: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Listen { count, timeout } => listen(count, timeout),
        Mode::SetFeatures(on) => set_features(on),
    };
    result.unwrap_or_else(|e| {
        eprintln!("tcmu-netlink-probe: {e}");
        ExitCode::FAILURE
    })
}
