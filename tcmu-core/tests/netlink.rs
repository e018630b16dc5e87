//! `TcmuNetlink::connect` on whatever kernel runs the tests: it must agree
//! with whether `target_core_user` is loaded. Events and replies against the
//! real family are tested in the VM suite (vm/tests/netlink.sh).

use std::path::Path;
use std::time::{Duration, Instant};

use tcmu_core::netlink::{NetlinkError, TcmuNetlink};

#[test]
fn connect_agrees_with_the_module_being_loaded() {
    let loaded = Path::new("/sys/module/target_core_user").exists();
    match TcmuNetlink::connect() {
        Ok(nl) => {
            assert!(loaded, "connected although target_core_user is not loaded");
            // Bounded even if nothing happens (an event is fine too).
            let t0 = Instant::now();
            nl.recv_event(Some(Duration::from_millis(50))).unwrap();
            assert!(t0.elapsed() < Duration::from_secs(5));
        }
        Err(e) => {
            assert!(
                !loaded,
                "target_core_user is loaded but connect failed: {e}"
            );
            assert!(matches!(e, NetlinkError::FamilyAbsent), "{e:?}");
            assert_eq!(
                e.to_string(),
                "the TCM-USER netlink family is not available (is target_core_user loaded?)"
            );
        }
    }
}
