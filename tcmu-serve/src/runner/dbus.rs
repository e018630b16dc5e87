//! The D-Bus service tcmu-runner offers, `org.kernel.TCMUService1` on the
//! system bus, so that targetcli shows our `user:<subtype>` backstores and
//! checks their configuration strings with us.
//!
//! What clients see (the same as tcmu-runner's):
//! - an `org.freedesktop.DBus.ObjectManager` at `/org/kernel/TCMUService1`
//!   whose `GetManagedObjects` lists exactly one object per handler. targetcli
//!   makes a `user:<last path element>` backstore of every object listed, so
//!   nothing else may appear there (zbus's own ObjectManager would also list
//!   `HandlerManager1`, hence a fixed list of our own);
//! - `/org/kernel/TCMUService1/<subtype>`, interface `org.kernel.TCMUService1`:
//!   `CheckConfig(s) -> (b, s)` and the read-only property `ConfigDesc` (s),
//!   which targetcli prints under `help create`;
//! - `/org/kernel/TCMUService1/HandlerManager1`, interface
//!   `org.kernel.TCMUService1.HandlerManager1`: `RegisterHandler(s, s) ->
//!   (b, s)`, through which tcmu-runner accepts handlers living in other
//!   processes. We serve built-in handlers only and always answer false with
//!   the reason (tcmu-runner has no method to unregister).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use zbus::blocking::Connection;
use zbus::blocking::connection::Builder;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::interface;
use zbus::zvariant::{OwnedObjectPath, Value};

/// The well-known name targetcli and the D-Bus activation file ask for.
pub const BUS_NAME: &str = "org.kernel.TCMUService1";
/// Where the ObjectManager listing the handlers lives.
pub const ROOT_PATH: &str = "/org/kernel/TCMUService1";
/// The interface of each handler's object (`ROOT_PATH/<subtype>`).
pub const HANDLER_INTERFACE: &str = "org.kernel.TCMUService1";
/// The object through which tcmu-runner registers external handlers.
pub const MANAGER_PATH: &str = "/org/kernel/TCMUService1/HandlerManager1";
/// The interface of [`MANAGER_PATH`].
#[cfg(test)]
pub const MANAGER_INTERFACE: &str = "org.kernel.TCMUService1.HandlerManager1";

/// How long our own calls to the bus daemon (Hello, RequestName,
/// ReleaseName) may take: a hung bus must not hang start-up or shutdown.
const BUS_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One handler (backstore subtype) shown to targetcli as `user:<subtype>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerInfo {
    /// The subtype, e.g. `file` or `rbd`: the last element of its object
    /// path, so only ASCII letters, digits and `_`.
    pub subtype: String,
    /// The help text for its configuration string (`ConfigDesc`).
    pub config_desc: String,
}

/// Checks a configuration string, called with the string exactly as the
/// client sent it to `CheckConfig` (targetcli sends `<subtype>/<cfgstring>`).
/// `Err` carries the message the client shows. It runs on a thread of its
/// own, may block (filesystem, Ceph) and may even panic: a panic becomes a
/// `false` answer.
pub type ConfigCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Which message bus to serve on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system bus (the one targetcli uses; `DBUS_SYSTEM_BUS_ADDRESS`
    /// overrides its address).
    System,
    /// The bus at this D-Bus address, e.g. `unix:path=/run/x/bus` (tests).
    Address(String),
}

impl Bus {
    /// The bus as error messages name it.
    fn describe(&self) -> String {
        match self {
            Bus::System => "the system bus".to_string(),
            Bus::Address(address) => format!("the D-Bus bus at {address}"),
        }
    }
}

/// The running service: owns [`BUS_NAME`] and answers on zbus's own thread.
/// Dropping it releases the name and closes the connection.
pub struct TcmuService {
    connection: Option<Connection>,
}

impl TcmuService {
    /// Connects to `bus`, exports the objects and takes [`BUS_NAME`] without
    /// queueing. Fails with one line when the bus cannot be reached, when the
    /// name is already owned (tcmu-runner, or a second runner), when the
    /// bus's policy refuses us the name, or when a subtype cannot be an
    /// object path element.
    pub fn start(
        bus: Bus,
        handlers: Vec<HandlerInfo>,
        check: ConfigCheck,
    ) -> Result<TcmuService, String> {
        validate(&handlers)?;
        let on_bus = bus.describe();
        let cannot_connect = |e: zbus::Error| one_line(&format!("cannot connect to {on_bus}: {e}"));
        let builder = match &bus {
            Bus::System => Builder::system(),
            Bus::Address(address) => Builder::address(address.as_str()),
        }
        .map_err(cannot_connect)?;
        let export_failed = |e: zbus::Error| one_line(&format!("cannot export D-Bus objects: {e}"));
        let mut builder = builder
            .method_timeout(BUS_CALL_TIMEOUT)
            .serve_at(
                ROOT_PATH,
                ObjectManager {
                    handlers: handlers.clone(),
                },
            )
            .map_err(export_failed)?
            .serve_at(MANAGER_PATH, HandlerManager)
            .map_err(export_failed)?;
        for handler in handlers {
            let path = format!("{ROOT_PATH}/{}", handler.subtype);
            builder = builder
                .serve_at(
                    path,
                    Handler {
                        config_desc: handler.config_desc,
                        check: Arc::clone(&check),
                    },
                )
                .map_err(export_failed)?;
        }
        // The objects are in place before the name is taken: a client that
        // waited for the name (bus activation, systemd's Type=dbus) finds
        // them at once.
        let connection = builder.build().map_err(cannot_connect)?;
        match connection.request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into()) {
            Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
                Ok(TcmuService {
                    connection: Some(connection),
                })
            }
            Err(zbus::Error::NameTaken)
            | Ok(RequestNameReply::Exists | RequestNameReply::InQueue) => Err(format!(
                "{BUS_NAME} is already owned on {on_bus} (is tcmu-runner running? stop it first)"
            )),
            Err(e) => Err(one_line(&format!("cannot own {BUS_NAME} on {on_bus}: {e}"))),
        }
    }
}

impl Drop for TcmuService {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Released explicitly, with the bus's answer awaited, so the name
            // is free when drop returns (a closed socket alone is noticed by
            // the bus some time later).
            if let Err(e) = connection.release_name(BUS_NAME) {
                log::warn!("releasing {BUS_NAME}: {e}");
            }
            if let Err(e) = connection.close() {
                log::debug!("closing the D-Bus connection: {e}");
            }
        }
    }
}

/// Subtypes become object path elements (`[A-Za-z0-9_]+`), must be unique,
/// and must not hide the handler manager's object.
fn validate(handlers: &[HandlerInfo]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for h in handlers {
        let s = &h.subtype;
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "handler subtype {s:?} cannot be a D-Bus object path element (use letters, digits and _)"
            ));
        }
        if MANAGER_PATH.ends_with(&format!("/{s}")) {
            return Err(format!(
                "handler subtype {s:?} is the name of the handler manager's object"
            ));
        }
        if !seen.insert(s.as_str()) {
            return Err(format!("handler subtype {s:?} is given twice"));
        }
    }
    Ok(())
}

/// Errors of zbus are shown on one line (the CLI prints one-line errors).
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `org.freedesktop.DBus.ObjectManager` at [`ROOT_PATH`], listing the
/// handlers' objects only (see the module doc for why not zbus's own).
struct ObjectManager {
    handlers: Vec<HandlerInfo>,
}

/// Object path -> interface -> property -> value (`a{oa{sa{sv}}}`).
type ManagedObjects = HashMap<OwnedObjectPath, HashMap<String, HashMap<String, Value<'static>>>>;

#[interface(name = "org.freedesktop.DBus.ObjectManager")]
impl ObjectManager {
    /// Every handler's object with its `ConfigDesc`.
    fn get_managed_objects(&self) -> zbus::fdo::Result<ManagedObjects> {
        let mut objects = ManagedObjects::new();
        for h in &self.handlers {
            let path = OwnedObjectPath::try_from(format!("{ROOT_PATH}/{}", h.subtype))
                .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
            let props =
                HashMap::from([("ConfigDesc".to_string(), Value::from(h.config_desc.clone()))]);
            objects.insert(
                path,
                HashMap::from([(HANDLER_INTERFACE.to_string(), props)]),
            );
        }
        Ok(objects)
    }
}

/// `org.kernel.TCMUService1` at `ROOT_PATH/<subtype>`.
struct Handler {
    config_desc: String,
    check: ConfigCheck,
}

#[interface(name = "org.kernel.TCMUService1")]
impl Handler {
    /// (true, "") when the check accepts `configstr`, else (false, why).
    #[zbus(name = "CheckConfig", out_args("is_valid", "message"))]
    async fn check_config(&self, configstr: String) -> (bool, String) {
        let check = Arc::clone(&self.check);
        // On blocking's thread pool: zbus dispatches every call on one
        // thread, which a slow check would otherwise stall for all clients.
        blocking::unblock(move || run_check(&check, &configstr)).await
    }

    /// The help text of the configuration string.
    #[zbus(property(emits_changed_signal = "const"), name = "ConfigDesc")]
    fn config_desc(&self) -> String {
        self.config_desc.clone()
    }
}

/// Runs one check, turning an `Err` with no text and a panic into messages
/// a user can act on.
fn run_check(check: &ConfigCheck, configstr: &str) -> (bool, String) {
    match catch_unwind(AssertUnwindSafe(|| check(configstr))) {
        Ok(Ok(())) => (true, String::new()),
        Ok(Err(message)) if message.is_empty() => {
            (false, "invalid configuration string".to_string())
        }
        Ok(Err(message)) => (false, message),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            log::error!("the configuration check of {configstr:?} panicked: {what}");
            (
                false,
                format!("internal error while checking the configuration string: {what}"),
            )
        }
    }
}

/// `org.kernel.TCMUService1.HandlerManager1` at [`MANAGER_PATH`].
struct HandlerManager;

#[interface(name = "org.kernel.TCMUService1.HandlerManager1")]
impl HandlerManager {
    /// Always (false, reason): our handlers are built in.
    #[zbus(name = "RegisterHandler", out_args("succeeded", "message"))]
    fn register_handler(&self, subtype: String, cfgstr_desc: String) -> (bool, String) {
        log::info!("refused RegisterHandler({subtype:?}, {cfgstr_desc:?}): no external handlers");
        (
            false,
            format!(
                "tcmu-serve runner does not accept handlers over D-Bus: its handlers are built in; \
                 {subtype:?} was not registered"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    //! Against a real dbus-daemon each test starts, and from the client
    //! targetcli is: Python's Gio (python3-gi), with the calls of targetcli's
    //! ui_backstore.py.

    use super::*;
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::sync::mpsc;

    /// The Python targetcli runs under (`#!/usr/bin/python3`), with its
    /// Debian modules; not whatever `python3` is first on PATH.
    const PYTHON: &str = "/usr/bin/python3";

    /// A private dbus-daemon, killed on drop.
    struct Daemon {
        child: Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl Daemon {
        /// Starts dbus-daemon with `policy` (XML inside `<busconfig>`) and
        /// returns once it listens.
        fn start(policy: &str) -> Daemon {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("bus.conf");
            std::fs::write(
                &config,
                format!(
                    "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n \
                     \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                     <busconfig>\n  <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n{policy}\n</busconfig>\n",
                    dir.path().join("bus").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--print-address=1", "--nofork"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run dbus-daemon ({e}): install the Debian package dbus (scripts/install-deps build)")
                });
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if line.trim().is_empty() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "dbus-daemon did not start ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Daemon {
                child,
                address: line.trim().to_string(),
                _dir: dir,
            }
        }

        /// A bus where anyone may own and call anything.
        fn open() -> Daemon {
            Daemon::start(
                r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>"#,
            )
        }

        fn bus(&self) -> Bus {
            Bus::Address(self.address.clone())
        }

        fn client(&self) -> Connection {
            Builder::address(self.address.as_str())
                .unwrap()
                .method_timeout(Duration::from_secs(10))
                .build()
                .unwrap()
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn handlers() -> Vec<HandlerInfo> {
        vec![
            HandlerInfo {
                subtype: "file".to_string(),
                config_desc: "file/PATH: a regular file".to_string(),
            },
            HandlerInfo {
                subtype: "rbd".to_string(),
                config_desc: "rbd/POOL/IMAGE[;osd_op_timeout=N]\nmulti-line help".to_string(),
            },
        ]
    }

    /// Accepts `*/good*`, panics on `*/panic`, rejects the rest with a
    /// message naming the string; records every string it is called with.
    fn recording_check() -> (ConfigCheck, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let check: ConfigCheck = Arc::new(move |s: &str| {
            record.lock().unwrap().push(s.to_string());
            match s.split_once('/') {
                Some((_, rest)) if rest.starts_with("good") => Ok(()),
                Some((_, "panic")) => panic!("check exploded"),
                _ => Err(format!("cannot open {s}: no such file")),
            }
        });
        (check, seen)
    }

    fn accept_all() -> ConfigCheck {
        Arc::new(|_: &str| Ok(()))
    }

    /// targetcli's discovery (`UIBackstores._user_backstores`, `help
    /// create`) and `create` (`CheckConfig('(s)', handler + "/" + cfgstring)`),
    /// with the system bus at `address`. Unlike targetcli it does not swallow
    /// exceptions. Prints NUL-separated fields: `backstore`, name, ConfigDesc
    /// per backstore, then `check`, config, ok, errmsg per `handler/cfgstring`
    /// argument.
    const TARGETCLI_CLIENT: &str = r#"
import sys
from gi.repository import Gio

def user_backstores():
    bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    mgr_iface = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.NONE, None,
                                       'org.kernel.TCMUService1',
                                       '/org/kernel/TCMUService1',
                                       'org.freedesktop.DBus.ObjectManager', None)
    for k, v in mgr_iface.GetManagedObjects().items():
        tcmu_iface = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.NONE, None,
                                            'org.kernel.TCMUService1', k,
                                            'org.kernel.TCMUService1', None)
        yield (k[k.rfind("/") + 1:], tcmu_iface, v)

out = []
ifaces = {}
for name, iface, prop_dict in user_backstores():
    ifaces[name] = iface
    x = prop_dict.get("org.kernel.TCMUService1", {})
    out += ["backstore", "user:" + name, x.get("ConfigDesc", "No description.")]
for arg in sys.argv[1:]:
    handler, cfgstring = arg.split("/", 1)
    config = handler + "/" + cfgstring
    ok, errmsg = ifaces[handler].CheckConfig('(s)', config)
    out += ["check", config, str(ok), errmsg]
sys.stdout.write("\0".join(out))
"#;

    /// What [`TARGETCLI_CLIENT`] saw.
    #[derive(Debug, Default)]
    struct Seen {
        /// (backstore name, ConfigDesc), sorted.
        backstores: Vec<(String, String)>,
        /// [config, ok, errmsg] per CheckConfig, in order.
        checks: Vec<[String; 3]>,
    }

    /// Runs [`TARGETCLI_CLIENT`] against `daemon` with `configs` to check.
    fn targetcli(daemon: &Daemon, configs: &[&str]) -> Seen {
        assert!(
            Path::new("/usr/lib/python3/dist-packages/gi/__init__.py").exists(),
            "python3-gi (targetcli's D-Bus client) is missing: install the Debian package python3-gi \
             (scripts/install-deps build)"
        );
        let out = Command::new(PYTHON)
            .args(["-c", TARGETCLI_CLIENT])
            .args(configs)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &daemon.address)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {PYTHON} ({e}): install the Debian package python3")
            });
        assert!(
            out.status.success(),
            "the targetcli client failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut fields = stdout
            .split('\0')
            .filter(|_| !stdout.is_empty())
            .map(str::to_string);
        let mut seen = Seen::default();
        while let Some(tag) = fields.next() {
            let mut next = || {
                fields
                    .next()
                    .unwrap_or_else(|| panic!("truncated output: {stdout:?}"))
            };
            match tag.as_str() {
                "backstore" => seen.backstores.push((next(), next())),
                "check" => seen.checks.push([next(), next(), next()]),
                _ => panic!("unexpected output: {stdout:?}"),
            }
        }
        seen.backstores.sort();
        seen
    }

    fn both_backstores() -> Vec<(String, String)> {
        vec![
            (
                "user:file".to_string(),
                "file/PATH: a regular file".to_string(),
            ),
            (
                "user:rbd".to_string(),
                "rbd/POOL/IMAGE[;osd_op_timeout=N]\nmulti-line help".to_string(),
            ),
        ]
    }

    fn call(
        client: &Connection,
        path: &str,
        iface: &str,
        method: &str,
        body: &(String,),
    ) -> (bool, String) {
        client
            .call_method(Some(BUS_NAME), path, Some(iface), method, body)
            .unwrap()
            .body()
            .deserialize()
            .unwrap()
    }

    #[test]
    fn targetcli_discovers_each_handler_with_its_config_desc() {
        let daemon = Daemon::open();
        let _service = TcmuService::start(daemon.bus(), handlers(), accept_all()).unwrap();
        // Exactly the handlers: no user:HandlerManager1, no root object.
        assert_eq!(targetcli(&daemon, &[]).backstores, both_backstores());
        // ConfigDesc is also a read-only property of each handler's object.
        let client = daemon.client();
        let props = zbus::blocking::fdo::PropertiesProxy::builder(&client)
            .destination(BUS_NAME)
            .unwrap()
            .path("/org/kernel/TCMUService1/file")
            .unwrap()
            .build()
            .unwrap();
        let iface = zbus::names::InterfaceName::try_from(HANDLER_INTERFACE).unwrap();
        let desc = props.get(iface.clone(), "ConfigDesc").unwrap();
        assert_eq!(String::try_from(desc).unwrap(), "file/PATH: a regular file");
        assert!(props.set(iface, "ConfigDesc", Value::from("x")).is_err());
    }

    #[test]
    fn check_config_answers_targetcli_with_the_checks_verdict() {
        let daemon = Daemon::open();
        let (check, seen) = recording_check();
        let _service = TcmuService::start(daemon.bus(), handlers(), check).unwrap();
        let seen_by_client = targetcli(
            &daemon,
            &["file/good.img", "rbd/pool/missing", "file/panic"],
        );
        assert_eq!(
            seen_by_client.checks,
            [
                ["file/good.img", "True", ""],
                [
                    "rbd/pool/missing",
                    "False",
                    "cannot open rbd/pool/missing: no such file"
                ],
                [
                    "file/panic",
                    "False",
                    "internal error while checking the configuration string: check exploded"
                ],
            ]
            .map(|c| c.map(String::from))
        );
        // The check gets the string as sent, with the subtype prefix.
        assert_eq!(
            *seen.lock().unwrap(),
            ["file/good.img", "rbd/pool/missing", "file/panic"]
        );
        // The panic did not take the service down.
        let client = daemon.client();
        let answer = call(
            &client,
            "/org/kernel/TCMUService1/file",
            HANDLER_INTERFACE,
            "CheckConfig",
            &("file/good".to_string(),),
        );
        assert_eq!(answer, (true, String::new()));
    }

    #[test]
    fn a_slow_check_does_not_hold_up_other_calls() {
        let daemon = Daemon::open();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (entered_tx, release_rx) = (Mutex::new(entered_tx), Mutex::new(release_rx));
        let check: ConfigCheck = Arc::new(move |s: &str| {
            if s == "file/slow" {
                entered_tx.lock().unwrap().send(()).unwrap();
                release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let _service = TcmuService::start(daemon.bus(), handlers(), check).unwrap();
        let slow_client = daemon.client();
        let slow = std::thread::spawn(move || {
            call(
                &slow_client,
                "/org/kernel/TCMUService1/file",
                HANDLER_INTERFACE,
                "CheckConfig",
                &("file/slow".to_string(),),
            )
        });
        entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // While the slow check blocks, another check and the discovery answer.
        let client = daemon.client();
        let answer = call(
            &client,
            "/org/kernel/TCMUService1/rbd",
            HANDLER_INTERFACE,
            "CheckConfig",
            &("rbd/fast".to_string(),),
        );
        assert_eq!(answer, (true, String::new()));
        assert_eq!(targetcli(&daemon, &[]).backstores, both_backstores());
        assert!(!slow.is_finished());
        release_tx.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), (true, String::new()));
    }

    #[test]
    fn register_handler_is_refused_with_a_reason() {
        let daemon = Daemon::open();
        let _service = TcmuService::start(daemon.bus(), handlers(), accept_all()).unwrap();
        let client = daemon.client();
        let (ok, message): (bool, String) = client
            .call_method(
                Some(BUS_NAME),
                MANAGER_PATH,
                Some(MANAGER_INTERFACE),
                "RegisterHandler",
                &("glfs", "glfs/VOLUME@HOST/PATH"),
            )
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        assert!(!ok);
        assert!(
            message.contains("does not accept handlers over D-Bus"),
            "{message}"
        );
        assert!(message.contains("\"glfs\""), "{message}");
        // And it did not become a backstore.
        assert_eq!(targetcli(&daemon, &[]).backstores, both_backstores());
    }

    #[test]
    fn a_second_service_fails_because_the_name_is_owned() {
        let daemon = Daemon::open();
        let _first = TcmuService::start(daemon.bus(), handlers(), accept_all()).unwrap();
        let err = TcmuService::start(daemon.bus(), handlers(), accept_all())
            .err()
            .expect("a second service on the same bus started");
        assert_eq!(
            err,
            format!(
                "org.kernel.TCMUService1 is already owned on the D-Bus bus at {} \
                 (is tcmu-runner running? stop it first)",
                daemon.address
            )
        );
    }

    fn name_has_owner(client: &Connection) -> bool {
        zbus::blocking::fdo::DBusProxy::new(client)
            .unwrap()
            .name_has_owner(BUS_NAME.try_into().unwrap())
            .unwrap()
    }

    #[test]
    fn dropping_the_service_releases_the_name() {
        let daemon = Daemon::open();
        let client = daemon.client();
        let service = TcmuService::start(daemon.bus(), handlers(), accept_all()).unwrap();
        assert!(name_has_owner(&client));
        drop(service);
        assert!(!name_has_owner(&client));
        let _again = TcmuService::start(daemon.bus(), handlers(), accept_all()).unwrap();
        assert_eq!(targetcli(&daemon, &[]).backstores, both_backstores());
    }

    #[test]
    fn an_unreachable_bus_is_named_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("no-bus").display());
        let err = TcmuService::start(Bus::Address(address.clone()), handlers(), accept_all())
            .err()
            .expect("started without a bus");
        assert!(
            err.starts_with(&format!("cannot connect to the D-Bus bus at {address}: ")),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn subtypes_that_cannot_be_path_elements_are_refused() {
        for (subtype, why) in [
            ("", "cannot be a D-Bus object path element"),
            ("a/b", "cannot be a D-Bus object path element"),
            ("user:file", "cannot be a D-Bus object path element"),
            ("HandlerManager1", "handler manager"),
        ] {
            let handlers = vec![HandlerInfo {
                subtype: subtype.to_string(),
                config_desc: String::new(),
            }];
            // Refused before connecting: the bus address is never used.
            let err = TcmuService::start(
                Bus::Address("unix:path=/nonexistent".into()),
                handlers,
                accept_all(),
            )
            .err()
            .unwrap();
            assert!(err.contains(why), "{subtype:?}: {err}");
        }
        let twice = [handlers(), handlers()].concat();
        let err = TcmuService::start(
            Bus::Address("unix:path=/nonexistent".into()),
            twice,
            accept_all(),
        )
        .err()
        .unwrap();
        assert!(err.contains("given twice"), "{err}");
    }

    fn packaging(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging")
            .join(file)
    }

    /// The rules of Debian's /usr/share/dbus-1/system.conf that matter here:
    /// nobody owns names or sends method calls unless a policy allows it.
    const SYSTEM_BUS_DEFAULTS: &str = r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>"#;

    #[test]
    fn the_bus_policy_parses_and_lets_root_own_and_call_the_service() {
        let policy = packaging("org.kernel.TCMUService1.conf");
        assert!(policy.exists(), "{}", policy.display());
        // dbus-daemon refuses to start on an included file it cannot parse.
        let daemon = Daemon::start(&format!(
            "{SYSTEM_BUS_DEFAULTS}\n  <include>{}</include>",
            policy.canonicalize().unwrap().display()
        ));
        let started = TcmuService::start(daemon.bus(), handlers(), accept_all());
        if nix::unistd::geteuid().is_root() {
            let _service = started.unwrap();
            let seen = targetcli(&daemon, &["file/good"]);
            assert_eq!(seen.backstores, both_backstores());
            assert_eq!(seen.checks, [["file/good", "True", ""].map(String::from)]);
        } else {
            // The policy gives the name to root only.
            let err = started.err().expect("a non-root user owns the name");
            assert!(err.contains("cannot own org.kernel.TCMUService1"), "{err}");
        }
    }

    #[test]
    fn the_systemd_unit_and_activation_file_agree() {
        let unit = std::fs::read_to_string(packaging("tcmu-serve-runner.service")).unwrap();
        let lines: Vec<&str> = unit.lines().map(str::trim).collect();
        for key in [
            "Type=dbus",
            "BusName=org.kernel.TCMUService1",
            "ExecStart=/usr/bin/tcmu-serve runner",
            "ExecStopPost=/usr/bin/tcmu-serve runner --release",
            "Conflicts=tcmu-runner.service",
        ] {
            assert!(
                lines.contains(&key),
                "tcmu-serve-runner.service lacks {key}"
            );
        }
        let activation =
            std::fs::read_to_string(packaging("org.kernel.TCMUService1.service")).unwrap();
        let lines: Vec<&str> = activation.lines().map(str::trim).collect();
        for key in [
            "[D-BUS Service]",
            "Name=org.kernel.TCMUService1",
            "Exec=/usr/bin/tcmu-serve runner",
            "User=root",
            "SystemdService=tcmu-serve-runner.service",
        ] {
            assert!(
                lines.contains(&key),
                "org.kernel.TCMUService1.service lacks {key}"
            );
        }
    }
}
