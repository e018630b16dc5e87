//! `tcmu-serve`: serve a block device to the Linux kernel as a SCSI disk
//! through TCMU, exported locally with tcm_loop.
//!
//! Prints exactly one line `ready: /dev/sdX` (or, with `--export none`,
//! `ready: <configfs backstore dir>`, with `--export iscsi`,
//! `ready: iscsi://ADDR:PORT/IQN/0`) on stdout once the disk can be used,
//! serves until SIGINT or SIGTERM, then removes everything it created.
//! Errors are one line on stderr and a non-zero exit status.
//!
//! `tcmu-serve runner` serves the `user:` backstores other tools create,
//! in place of tcmu-runner (see `runner/`).
//!
//! With `--control PATH` it is a daemon serving any number of devices,
//! added and removed at run time through a Unix socket (see `daemon.rs`);
//! `tcmu-serve --control PATH add|remove|list ...` sends one request to it.

mod backend;
mod cli;
mod control;
mod daemon;
mod device;
mod export;
mod io_engine;
mod plan;
mod runner;
mod size;
mod standalone;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Request};
use plan::Plan;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("tcmu-serve: error: {}", cli::one_line(&e));
            return ExitCode::from(2);
        }
    };
    // A system daemon logs what it serves; a command says only what fails.
    let default_level = match cli.request {
        Some(Request::Runner(_)) => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_millis()
        .init();
    let result = match (&cli.control, &cli.request) {
        (None, Some(Request::Runner(args))) if cli.device.backend.is_none() => {
            runner::run(args.clone())
        }
        (_, Some(Request::Runner(_))) => {
            Err("runner mode takes no --control and no device flags".to_string())
        }
        (Some(control), Some(request)) => control::send_request(control, &request.words()),
        (None, Some(request)) => Err(format!(
            "unexpected argument {:?} (a request needs --control PATH)",
            request.name()
        )),
        (Some(control), None) => daemon::run(control, cli.device),
        (None, None) => Plan::from_args(cli.device).and_then(standalone::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcmu-serve: error: {e}");
            ExitCode::FAILURE
        }
    }
}
