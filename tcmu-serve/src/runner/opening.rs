//! Backstores being opened. Opening a backing store can take long — an RBD
//! image whose cluster does not answer waits up to its timeout — so each
//! added device is opened on a thread of its own, and the runner goes on
//! answering the events of every other device meanwhile. A finished
//! opening sends its result and rings a doorbell the event loop waits on.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};

use nix::errno::Errno;
use tcmu_core::netlink::DeviceEvent;
use tcmu_target::AdoptedLun;

/// What an opening gives: the served LUN, or the error to answer with.
pub type OpenResult = Result<AdoptedLun, (Errno, String)>;

/// An opening that ended.
pub struct OpeningEnded {
    /// The ADDED event the device came with: the answer goes to it.
    pub event: DeviceEvent,
    /// Whether the kernel waits for that answer.
    pub awaited: bool,
    /// The backstore's name, for the log.
    pub name: String,
    /// Its `dev_config`, for the log.
    pub dev_config: String,
    /// How it went.
    pub result: OpenResult,
}

/// The openings under way, by UIO minor.
pub struct Openings {
    running: BTreeSet<u32>,
    results_tx: Sender<OpeningEnded>,
    results: Receiver<OpeningEnded>,
    bell_tx: UnixStream,
    bell: UnixStream,
}

impl Openings {
    /// None under way yet.
    pub fn new() -> std::io::Result<Openings> {
        let (bell_tx, bell) = UnixStream::pair()?;
        bell.set_nonblocking(true)?;
        bell_tx.set_nonblocking(true)?;
        let (results_tx, results) = mpsc::channel();
        Ok(Openings {
            running: BTreeSet::new(),
            results_tx,
            results,
            bell_tx,
            bell,
        })
    }

    /// Readable when an opening has ended.
    pub fn doorbell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Whether the device of UIO minor `minor` is being opened.
    pub fn contains(&self, minor: u32) -> bool {
        self.running.contains(&minor)
    }

    /// Run `open` on a thread of its own for the device `event` added.
    pub fn start(
        &mut self,
        event: DeviceEvent,
        awaited: bool,
        name: String,
        dev_config: String,
        open: impl FnOnce() -> OpenResult + Send + 'static,
    ) {
        let minor = event.minor;
        let results = self.results_tx.clone();
        let bell = self.bell_tx.try_clone();
        // Kept to answer the event if no thread can be started: the
        // kernel waits for an answer either way.
        let unstarted = OpeningEnded {
            event: event.clone(),
            awaited,
            name: name.clone(),
            dev_config: dev_config.clone(),
            result: Err((Errno::EAGAIN, String::new())),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("open-uio{minor}"))
            .spawn(move || {
                let result = open();
                let _ = results.send(OpeningEnded {
                    event,
                    awaited,
                    name,
                    dev_config,
                    result,
                });
                // A full doorbell already says "look"; nothing is lost.
                if let Ok(mut bell) = bell {
                    let _ = bell.write(&[1]);
                }
            });
        self.running.insert(minor);
        if let Err(e) = spawned {
            let why = format!("cannot start a thread to open it: {e}");
            let _ = self.results_tx.send(OpeningEnded {
                result: Err((Errno::EAGAIN, why)),
                ..unstarted
            });
            let _ = (&self.bell_tx).write(&[1]);
        }
    }

    /// The openings that ended since the last call, without waiting.
    pub fn ended(&mut self) -> Vec<OpeningEnded> {
        let mut drain = [0u8; 64];
        while matches!(self.bell.read(&mut drain), Ok(n) if n > 0) {}
        let ended: Vec<OpeningEnded> = self.results.try_iter().collect();
        for opened in &ended {
            self.running.remove(&opened.event.minor);
        }
        ended
    }

    /// Wait until the opening of `minor` ends (an event for that device
    /// must see it served or refused); returns every opening that ended
    /// meanwhile, that one included.
    pub fn wait_for(&mut self, minor: u32) -> Vec<OpeningEnded> {
        let mut ended = Vec::new();
        while self.running.contains(&minor) {
            // Each opening is bounded by its backing store's own timeout.
            match self.results.recv() {
                Ok(opened) => {
                    self.running.remove(&opened.event.minor);
                    ended.push(opened);
                }
                Err(_) => break, // unreachable: `self` holds a sender
            }
        }
        ended.extend(self.ended());
        ended
    }

    /// Wait until every opening ends.
    pub fn wait_all(&mut self) -> Vec<OpeningEnded> {
        let mut ended = Vec::new();
        while let Some(&minor) = self.running.first() {
            ended.extend(self.wait_for(minor));
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tcmu_core::netlink::EventKind;

    fn added(minor: u32) -> DeviceEvent {
        DeviceEvent {
            kind: EventKind::Added,
            device: format!("tcm-user/1/d{minor}/file//x"),
            minor,
            device_id: minor,
        }
    }

    fn refused(why: &str) -> OpenResult {
        Err((Errno::EIO, why.to_string()))
    }

    #[test]
    fn a_slow_opening_does_not_hold_up_a_quick_one() {
        let mut openings = Openings::new().unwrap();
        let (release, gate) = mpsc::channel::<()>();
        openings.start(added(1), true, "slow".into(), String::new(), move || {
            let _ = gate.recv();
            refused("slow")
        });
        openings.start(added(2), false, "quick".into(), String::new(), || {
            refused("quick")
        });
        let quick = openings.wait_for(2);
        assert_eq!(quick.len(), 1);
        assert_eq!(quick[0].name, "quick");
        assert!(!quick[0].awaited);
        assert!(openings.contains(1) && !openings.contains(2));
        release.send(()).unwrap();
        let slow = openings.wait_all();
        assert_eq!(slow.len(), 1);
        assert_eq!(slow[0].event.minor, 1);
        assert!(matches!(&slow[0].result, Err((Errno::EIO, why)) if why == "slow"));
        assert!(!openings.contains(1));
    }

    #[test]
    fn the_doorbell_rings_when_an_opening_ends() {
        let mut openings = Openings::new().unwrap();
        openings.start(added(3), true, "d3".into(), String::new(), || refused("no"));
        let rang =
            tcmu_core::poll::wait_readable(openings.doorbell(), &[], Some(Duration::from_secs(10)))
                .unwrap();
        assert_eq!(rang, Some(0));
        let ended = openings.ended();
        assert_eq!(ended.len(), 1);
        assert!(!openings.contains(3));
        assert!(openings.ended().is_empty(), "each ending is reported once");
    }
}
