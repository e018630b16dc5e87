//! The control protocol of daemon mode, both ends.
//!
//! A request is its words, one per line, sent before the client shuts down
//! its writing side; the answer is text lines, after which the daemon
//! closes the connection:
//!
//! | request              | answer                                         |
//! |----------------------|------------------------------------------------|
//! | `add DEVICE-FLAGS..` | `ready: /dev/sdX` (or the iSCSI URL, ...)      |
//! | `remove NAME`        | `removed: NAME`                                |
//! | `list`               | `NAME READY-TARGET`, one line per device       |
//! | anything wrong       | `error: <one line saying what>`                |
//!
//! The socket is root-only (mode 0600).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Longest request accepted, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client waits for an answer (adding a device waits up to
/// 30 s for its disk to appear).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The socket at `path`, made root-only. A socket file left by a daemon
/// that died is replaced; one a live daemon answers on is not.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
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

/// Answer one connection: read its request, let `handle` execute it,
/// write the answer's lines.
pub fn answer(mut stream: UnixStream, handle: impl FnOnce(&[String]) -> Vec<String>) {
    let lines = match read_request(&mut stream) {
        Ok(words) => {
            log::info!("request: {}", words.join(" "));
            handle(&words)
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
