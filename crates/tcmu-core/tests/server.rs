//! The serving loop, with and without workers, against the simulated kernel.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tcmu_core::server::{CommandHandler, ServeOptions, serve_with};
use tcmu_core::sim::{SimCompletion, SimConfig, SimDoorbell, SimKernel};
use tcmu_core::{DataSegments, Reply, Ring};

/// Answers GOOD, after sleeping when the CDB's byte 1 asks for it, and
/// puts its call number in the status byte's place in the log.
struct SlowOnRequest {
    calls: AtomicUsize,
}

impl CommandHandler for SlowOnRequest {
    fn handle(&self, cdb: &[u8], _data: &mut DataSegments) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if cdb[1] == 1 {
            std::thread::sleep(Duration::from_millis(400));
        }
        Reply::good()
    }
}

fn wait_for(kernel: &mut SimKernel, n: usize, within: Duration) -> Vec<SimCompletion> {
    let start = Instant::now();
    let mut done = Vec::new();
    while done.len() < n && start.elapsed() < within {
        done.extend(kernel.reap());
        std::thread::sleep(Duration::from_millis(2));
    }
    done
}

#[test]
fn a_slow_command_does_not_hold_up_the_others() {
    let mut kernel = SimKernel::new(SimConfig::default());
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let handler = Arc::new(SlowOnRequest {
        calls: AtomicUsize::new(0),
    });
    let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 4,
        drain_timeout: Duration::from_secs(5),
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve_with(
                bell.clone(),
                ring,
                handler.clone(),
                stop_rx.as_fd(),
                options,
            )
        });
        let slow = kernel.submit(&[0, 1, 0, 0, 0, 0], &[], 0).unwrap();
        let fast: Vec<u16> = (0..20)
            .map(|_| kernel.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap())
            .collect();
        bell.kick();
        let early = wait_for(&mut kernel, 20, Duration::from_secs(10));
        let ids: Vec<u16> = early.iter().map(|c| c.id).collect();
        assert!(
            !ids.contains(&slow),
            "the slow command finished among the first 20"
        );
        for id in &fast {
            assert!(ids.contains(id), "fast command {id} is missing");
        }
        let late = wait_for(&mut kernel, 1, Duration::from_secs(10));
        assert_eq!(late.iter().map(|c| c.id).collect::<Vec<_>>(), vec![slow]);
        assert!(kernel.broken().is_none(), "{:?}", kernel.broken());
        assert!(bell.notifications() >= 2);
        stop_tx.write_all(&[1]).unwrap();
        server.join().unwrap().unwrap();
    });
    assert_eq!(handler.calls.load(Ordering::SeqCst), 21);
}

#[test]
fn stopping_waits_for_commands_in_flight() {
    for workers in [0, 3] {
        let mut kernel = SimKernel::new(SimConfig::default());
        let ring = Ring::new(kernel.map()).unwrap();
        let bell = Arc::new(SimDoorbell::new().unwrap());
        let handler = Arc::new(SlowOnRequest {
            calls: AtomicUsize::new(0),
        });
        let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
        let options = ServeOptions {
            workers,
            drain_timeout: Duration::from_secs(5),
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| {
                serve_with(
                    bell.clone(),
                    ring,
                    handler.clone(),
                    stop_rx.as_fd(),
                    options,
                )
            });
            let slow = kernel.submit(&[0, 1, 0, 0, 0, 0], &[], 0).unwrap();
            bell.kick();
            while handler.calls.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            stop_tx.write_all(&[1]).unwrap();
            server.join().unwrap().unwrap();
            let done = kernel.reap();
            assert_eq!(
                done.iter().map(|c| c.id).collect::<Vec<_>>(),
                vec![slow],
                "workers: {workers}"
            );
        });
    }
}

#[test]
fn many_commands_with_data_complete_exactly_once() {
    struct Echo;
    impl CommandHandler for Echo {
        fn handle(&self, cdb: &[u8], data: &mut DataSegments) -> Reply {
            // Fill data-in with the CDB's tag byte.
            for i in 0..data.count() {
                data.segment_mut(i).fill(cdb[5]);
            }
            Reply::good()
        }
    }
    let mut kernel = SimKernel::new(SimConfig::default());
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 4,
        drain_timeout: Duration::from_secs(5),
    };
    std::thread::scope(|s| {
        let server =
            s.spawn(|| serve_with(bell.clone(), ring, Arc::new(Echo), stop_rx.as_fd(), options));
        let mut expected = std::collections::HashMap::new();
        let mut got = Vec::new();
        for round in 0..2000u32 {
            let tag = (round % 251) as u8;
            match kernel.submit(&[0x08, 0, 0, 0, 8, tag], &[], 8192) {
                Ok(id) => {
                    expected.insert(id, tag);
                    bell.kick();
                }
                Err(_) => got.extend(wait_for(&mut kernel, 1, Duration::from_secs(10))),
            }
        }
        while got.len() < expected.len() {
            let before = got.len();
            got.extend(wait_for(&mut kernel, 1, Duration::from_secs(10)));
            assert!(got.len() > before, "completions stopped arriving");
        }
        assert!(kernel.broken().is_none(), "{:?}", kernel.broken());
        for c in &got {
            let tag = expected[&c.id];
            assert!(
                c.data_in.iter().all(|&b| b == tag),
                "command {} got another's data",
                c.id
            );
        }
        stop_tx.write_all(&[1]).unwrap();
        server.join().unwrap().unwrap();
    });
}

/// Blocks every command whose CDB byte 1 is 1 until `release` gets a
/// message (or forever), and counts the commands it executes.
struct Gate {
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    calls: AtomicUsize,
}

impl CommandHandler for Gate {
    fn handle(&self, cdb: &[u8], _data: &mut DataSegments) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if cdb[1] == 1 {
            let _ = self.release.lock().unwrap().recv();
        }
        Reply::good()
    }
}

fn gate() -> (Arc<Gate>, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let gate = Gate {
        release: std::sync::Mutex::new(rx),
        calls: AtomicUsize::new(0),
    };
    (Arc::new(gate), tx)
}

#[test]
fn a_hung_backend_call_does_not_hang_the_stop() {
    for force in [false, true] {
        let mut kernel = SimKernel::new(SimConfig::default());
        let ring = Ring::new(kernel.map()).unwrap();
        let bell = Arc::new(SimDoorbell::new().unwrap());
        let (handler, _never_released) = gate();
        let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
        // Without force the drain gives up after 300 ms; with force the
        // drain would wait a minute, but a second byte ends it.
        let drain_timeout = if force {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(300)
        };
        let options = ServeOptions {
            workers: 2,
            drain_timeout,
        };
        std::thread::scope(|s| {
            let server = s.spawn(|| {
                serve_with(
                    bell.clone(),
                    ring,
                    handler.clone(),
                    stop_rx.as_fd(),
                    options,
                )
            });
            kernel.submit(&[0, 1, 0, 0, 0, 0], &[], 0).unwrap();
            bell.kick();
            while handler.calls.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            stop_tx.write_all(&[1]).unwrap();
            if force {
                std::thread::sleep(Duration::from_millis(100));
                stop_tx.write_all(&[1]).unwrap();
            }
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || tx.send(server.join().unwrap().is_ok()).unwrap());
            let stopped = rx.recv_timeout(Duration::from_secs(10));
            assert_eq!(stopped, Ok(true), "force: {force}");
        });
    }
}

#[test]
fn an_aborted_queued_command_is_answered_without_running() {
    let mut kernel = SimKernel::new(SimConfig::default());
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let (handler, release) = gate();
    let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 1,
        drain_timeout: Duration::from_secs(5),
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve_with(
                bell.clone(),
                ring,
                handler.clone(),
                stop_rx.as_fd(),
                options,
            )
        });
        let blocking = kernel.submit(&[0, 1, 0, 0, 0, 0], &[], 0).unwrap();
        let queued = kernel.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap();
        kernel
            .submit_tmr(tcmu_sys::TCMU_TMR_ABORT_TASK, &[queued])
            .unwrap();
        bell.kick();
        while handler.calls.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The ring thread reads the whole batch (both commands and the TMR)
        // in one pass; give it a moment before the worker moves on.
        std::thread::sleep(Duration::from_millis(200));
        release.send(()).unwrap();
        let mut done = wait_for(&mut kernel, 2, Duration::from_secs(10));
        done.sort_by_key(|c| c.id);
        assert_eq!(
            done.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
            vec![(blocking, 0), (queued, 0x40)]
        );
        assert_eq!(
            handler.calls.load(Ordering::SeqCst),
            1,
            "the aborted command ran"
        );
        assert!(kernel.broken().is_none());
        stop_tx.write_all(&[1]).unwrap();
        server.join().unwrap().unwrap();
    });
}

#[test]
fn a_command_hung_forever_does_not_stall_the_ring() {
    // The kernel gave up on the hung command (cmd_time_out) but it keeps
    // its ring entry and data pages: the retry and everything after it
    // complete out of order past it, around the ring several times.
    let mut kernel = SimKernel::new(SimConfig::default());
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let (handler, _never_released) = gate();
    let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 2,
        drain_timeout: Duration::from_millis(300),
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve_with(
                bell.clone(),
                ring,
                handler.clone(),
                stop_rx.as_fd(),
                options,
            )
        });
        let hung = kernel.submit(&[0x28, 1, 0, 0, 0, 0], &[], 4096).unwrap();
        bell.kick();
        let mut completed = 0;
        for i in 0..3000 {
            // READ(10) or TEST UNIT READY, all on the one free worker.
            let cdb: &[u8] = if i % 3 == 0 {
                &[0, 0, 0, 0, 0, 0]
            } else {
                &[0x28, 0, 0, 0, 0, 0]
            };
            let len = if cdb[0] == 0 { 0 } else { 8192 };
            while kernel.submit(cdb, &[], len).is_err() {
                let done = wait_for(&mut kernel, 1, Duration::from_secs(10));
                assert!(!done.is_empty(), "completions stopped after {completed}");
                assert!(done.iter().all(|c| c.id != hung && c.status == 0));
                completed += done.len();
            }
            bell.kick();
        }
        while completed < 3000 {
            let done = wait_for(&mut kernel, 1, Duration::from_secs(10));
            assert!(!done.is_empty(), "completions stopped after {completed}");
            completed += done.len();
        }
        assert!(kernel.broken().is_none(), "{:?}", kernel.broken());
        assert_eq!(kernel.in_flight(), 1, "only the hung command is left");
        stop_tx.write_all(&[1]).unwrap();
        server.join().unwrap().unwrap();
    });
}

#[test]
fn hung_calls_on_every_worker_do_not_stall_the_lun() {
    // Both workers hang in the backend; after a second a replacement
    // worker serves the commands queued behind them.
    let mut kernel = SimKernel::new(SimConfig::default());
    let ring = Ring::new(kernel.map()).unwrap();
    let bell = Arc::new(SimDoorbell::new().unwrap());
    let (handler, _never_released) = gate();
    let (stop_rx, mut stop_tx) = UnixStream::pair().unwrap();
    let options = ServeOptions {
        workers: 2,
        drain_timeout: Duration::from_millis(300),
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            serve_with(
                bell.clone(),
                ring,
                handler.clone(),
                stop_rx.as_fd(),
                options,
            )
        });
        let hung: Vec<u16> = (0..2)
            .map(|_| kernel.submit(&[0, 1, 0, 0, 0, 0], &[], 0).unwrap())
            .collect();
        bell.kick();
        while handler.calls.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let queued: Vec<u16> = (0..5)
            .map(|_| kernel.submit(&[0, 0, 0, 0, 0, 0], &[], 0).unwrap())
            .collect();
        bell.kick();
        let mut done = wait_for(&mut kernel, 5, Duration::from_secs(10));
        // Stop first, so that a failed check below ends the test instead
        // of leaving the server running.
        stop_tx.write_all(&[1]).unwrap();
        server.join().unwrap().unwrap();
        done.sort_by_key(|c| c.id);
        assert_eq!(
            done.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
            queued.iter().map(|&id| (id, 0)).collect::<Vec<_>>()
        );
        assert_eq!(
            kernel.in_flight(),
            hung.len(),
            "only the hung commands are left"
        );
        assert!(kernel.broken().is_none());
    });
}
