//! Runner mode: serve targetcli's `user:<subtype>` backstores in place of tcmu-runner.

pub mod dbus;
