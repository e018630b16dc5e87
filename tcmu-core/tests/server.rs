//! The serving loop, with and without workers, against the simulated kernel.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tcmu_core::server::{ServeError, ServeOptions, serve_with};
use tcmu_core::sim::{SimCompletion, SimConfig, SimDoorbell, SimKernel};
use tcmu_core::{AsyncCommandHandler, CommandHandler, PendingCommand};
use tcmu_core::{DataSegments, Reply, Ring};

/// `serve_with` running on its own thread over a fresh simulated kernel.
/// Dropped without [`Served::stop`] (a failed check), it forces serving
/// to end and does not wait for it, so a failing test never hangs.
struct Served {
    kernel: SimKernel,
    bell: Arc<SimDoorbell>,
    stop: UnixStream,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Served {
    fn start<H: AsyncCommandHandler + 'static>(
        handler: Arc<H>,
        workers: usize,
        drain_timeout: Duration,
    ) -> Served {
        let options = ServeOptions {
            workers,
            drain_timeout,
            ..ServeOptions::default()
        };
        Served::start_with(handler, options)
    }

    fn start_with<H: AsyncCommandHandler + 'static>(
        handler: Arc<H>,
        options: ServeOptions,
    ) -> Served {
        let kernel = SimKernel::new(SimConfig::default());
        let ring = Ring::new(kernel.map()).unwrap();
        let bell = Arc::new(SimDoorbell::new().unwrap());
        let (stop_rx, stop) = UnixStream::pair().unwrap();
        let server_bell = bell.clone();
        let server = std::thread::spawn(move || {
            serve_with(server_bell, ring, handler, stop_rx.as_fd(), options)
        });
        Served {
            kernel,
            bell,
            stop,
            server: Some(server),
        }
    }

    /// Publish a command and ring the doorbell; its id.
    fn submit(&mut self, cdb: &[u8], data_in: usize) -> u16 {
        let id = self.kernel.submit(cdb, &[], data_in).unwrap();
        self.bell.kick();
        id
    }

    /// One byte on the stop channel: the first drains, a second forces.
    fn signal_stop(&mut self) {
        self.stop.write_all(&[1]).unwrap();
    }

    /// Wait up to `limit` for serving to end; its result, or `None` if it
    /// still runs.
    fn join_within(&mut self, limit: Duration) -> Option<Result<(), ServeError>> {
        let server = self.server.take()?;
        let start = Instant::now();
        while !server.is_finished() {
            if start.elapsed() >= limit {
                self.server = Some(server);
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(server.join().unwrap())
    }

    /// Stop (draining) and wait up to 10 s for serving to end.
    fn stop(&mut self) -> Result<(), ServeError> {
        self.signal_stop();
        self.join_within(Duration::from_secs(10))
            .expect("serving did not stop within 10 s")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.stop.write_all(&[1, 1]);
        }
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

/// Answers GOOD, after sleeping when the CDB's byte 1 asks for it, and
/// counts its calls.
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

fn slow_on_request() -> Arc<SlowOnRequest> {
    Arc::new(SlowOnRequest {
        calls: AtomicUsize::new(0),
    })
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

/// Wait until `calls` reaches `n`.
fn wait_calls(calls: &AtomicUsize, n: usize) {
    while calls.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];
/// TEST UNIT READY with byte 1 set: the handlers above hold it up.
const HELD_TUR: [u8; 6] = [0, 1, 0, 0, 0, 0];

#[test]
fn a_slow_command_does_not_hold_up_the_others() {
    let handler = slow_on_request();
    let mut served = Served::start(handler.clone(), 4, Duration::from_secs(5));
    let slow = served.submit(&HELD_TUR, 0);
    let fast: Vec<u16> = (0..20).map(|_| served.submit(&TUR, 0)).collect();
    let early = wait_for(&mut served.kernel, 20, Duration::from_secs(10));
    let ids: Vec<u16> = early.iter().map(|c| c.id).collect();
    assert!(
        !ids.contains(&slow),
        "the slow command finished among the first 20"
    );
    for id in &fast {
        assert!(ids.contains(id), "fast command {id} is missing");
    }
    let late = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
    assert_eq!(late.iter().map(|c| c.id).collect::<Vec<_>>(), vec![slow]);
    assert!(
        served.kernel.broken().is_none(),
        "{:?}",
        served.kernel.broken()
    );
    assert!(served.bell.notifications() >= 2);
    served.stop().unwrap();
    assert_eq!(handler.calls.load(Ordering::SeqCst), 21);
}

#[test]
fn a_spinning_leader_serves_every_command_and_stops_promptly() {
    for adaptive in [false, true] {
        spinning_leader(adaptive);
    }
}

fn spinning_leader(adaptive: bool) {
    // A long spin, so that commands arrive both while the leader spins
    // and while it sleeps, and the stop comes while it spins.
    let handler = slow_on_request();
    let options = ServeOptions {
        workers: 2,
        spin: Duration::from_millis(20),
        spin_adaptive: adaptive,
        ..ServeOptions::default()
    };
    let mut served = Served::start_with(handler.clone(), options);
    for round in 0..5 {
        let ids: Vec<u16> = (0..3).map(|_| served.submit(&TUR, 0)).collect();
        let done = wait_for(&mut served.kernel, 3, Duration::from_secs(10));
        let mut got: Vec<u16> = done.iter().map(|c| c.id).collect();
        got.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(got, want, "round {round}, adaptive {adaptive}");
        // Sometimes past the spin, sometimes within it.
        std::thread::sleep(Duration::from_millis(if round % 2 == 0 { 40 } else { 1 }));
    }
    assert!(
        served.kernel.broken().is_none(),
        "{:?}",
        served.kernel.broken()
    );
    let started = std::time::Instant::now();
    served.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "adaptive {adaptive}: {:?}",
        started.elapsed()
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 15);
}

#[test]
fn stopping_waits_for_commands_in_flight() {
    for workers in [0, 3] {
        let handler = slow_on_request();
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(5));
        let slow = served.submit(&HELD_TUR, 0);
        wait_calls(&handler.calls, 1);
        served.stop().unwrap();
        let done = served.kernel.reap();
        assert_eq!(
            done.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![slow],
            "workers: {workers}"
        );
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
    let mut served = Served::start(Arc::new(Echo), 4, Duration::from_secs(5));
    let mut expected = std::collections::HashMap::new();
    let mut got = Vec::new();
    for round in 0..2000u32 {
        let tag = (round % 251) as u8;
        match served.kernel.submit(&[0x08, 0, 0, 0, 8, tag], &[], 8192) {
            Ok(id) => {
                expected.insert(id, tag);
                served.bell.kick();
            }
            Err(_) => got.extend(wait_for(&mut served.kernel, 1, Duration::from_secs(10))),
        }
    }
    while got.len() < expected.len() {
        let before = got.len();
        got.extend(wait_for(&mut served.kernel, 1, Duration::from_secs(10)));
        assert!(got.len() > before, "completions stopped arriving");
    }
    assert!(
        served.kernel.broken().is_none(),
        "{:?}",
        served.kernel.broken()
    );
    for c in &got {
        let tag = expected[&c.id];
        assert!(
            c.data_in.iter().all(|&b| b == tag),
            "command {} got another's data",
            c.id
        );
    }
    served.stop().unwrap();
}

#[test]
fn a_hung_backend_call_does_not_hang_the_stop() {
    for force in [false, true] {
        let (handler, _never_released) = gate();
        // Without force the drain gives up after 300 ms; with force the
        // drain would wait a minute, but a second byte ends it.
        let drain_timeout = if force {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(300)
        };
        let mut served = Served::start(handler.clone(), 2, drain_timeout);
        served.submit(&HELD_TUR, 0);
        wait_calls(&handler.calls, 1);
        served.signal_stop();
        if force {
            std::thread::sleep(Duration::from_millis(100));
            served.signal_stop();
        }
        let stopped = served.join_within(Duration::from_secs(10));
        assert!(matches!(stopped, Some(Ok(()))), "force: {force}");
    }
}

#[test]
fn an_aborted_queued_command_is_answered_without_running() {
    let (handler, release) = gate();
    let mut served = Served::start(handler.clone(), 1, Duration::from_secs(5));
    let blocking = served.kernel.submit(&HELD_TUR, &[], 0).unwrap();
    let queued = served.kernel.submit(&TUR, &[], 0).unwrap();
    served
        .kernel
        .submit_tmr(tcmu_sys::TCMU_TMR_ABORT_TASK, &[queued])
        .unwrap();
    served.bell.kick();
    wait_calls(&handler.calls, 1);
    // The ring thread reads the whole batch (both commands and the TMR)
    // in one pass; give it a moment before the worker moves on.
    std::thread::sleep(Duration::from_millis(200));
    release.send(()).unwrap();
    let mut done = wait_for(&mut served.kernel, 2, Duration::from_secs(10));
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
    assert!(served.kernel.broken().is_none());
    served.stop().unwrap();
}

#[test]
fn a_command_hung_forever_does_not_stall_the_ring() {
    // The kernel gave up on the hung command (cmd_time_out) but it keeps
    // its ring entry and data pages: the retry and everything after it
    // complete out of order past it, around the ring several times.
    let (handler, _never_released) = gate();
    let mut served = Served::start(handler, 2, Duration::from_millis(300));
    let hung = served.submit(&[0x28, 1, 0, 0, 0, 0], 4096);
    let mut completed = 0;
    for i in 0..3000 {
        // READ(10) or TEST UNIT READY, all on the one free worker.
        let cdb: &[u8] = if i % 3 == 0 {
            &TUR
        } else {
            &[0x28, 0, 0, 0, 0, 0]
        };
        let len = if cdb[0] == 0 { 0 } else { 8192 };
        while served.kernel.submit(cdb, &[], len).is_err() {
            let done = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
            assert!(!done.is_empty(), "completions stopped after {completed}");
            assert!(done.iter().all(|c| c.id != hung && c.status == 0));
            completed += done.len();
        }
        served.bell.kick();
    }
    while completed < 3000 {
        let done = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
        assert!(!done.is_empty(), "completions stopped after {completed}");
        completed += done.len();
    }
    assert!(
        served.kernel.broken().is_none(),
        "{:?}",
        served.kernel.broken()
    );
    assert_eq!(
        served.kernel.in_flight(),
        1,
        "only the hung command is left"
    );
    served.stop().unwrap();
}

#[test]
fn hung_calls_on_every_worker_do_not_stall_the_lun() {
    // Both workers hang in the backend; after a second a replacement
    // worker serves the commands queued behind them.
    let (handler, _never_released) = gate();
    let mut served = Served::start(handler.clone(), 2, Duration::from_millis(300));
    let hung: Vec<u16> = (0..2).map(|_| served.submit(&HELD_TUR, 0)).collect();
    wait_calls(&handler.calls, 2);
    let queued: Vec<u16> = (0..5).map(|_| served.submit(&TUR, 0)).collect();
    let mut done = wait_for(&mut served.kernel, 5, Duration::from_secs(10));
    done.sort_by_key(|c| c.id);
    assert_eq!(
        done.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
        queued.iter().map(|&id| (id, 0)).collect::<Vec<_>>()
    );
    assert_eq!(
        served.kernel.in_flight(),
        hung.len(),
        "only the hung commands are left"
    );
    assert!(served.kernel.broken().is_none());
    served.stop().unwrap();
}

/// Keeps every command pending: the test completes them itself, from other
/// threads and in any order, or drops them.
#[derive(Default)]
struct Parked(std::sync::Mutex<Vec<PendingCommand>>);

impl AsyncCommandHandler for Parked {
    fn start(&self, cmd: PendingCommand) {
        self.0.lock().unwrap().push(cmd);
    }
}

impl Parked {
    /// Wait until `n` commands are parked, then take them all.
    fn take(&self, n: usize) -> Vec<PendingCommand> {
        let start = Instant::now();
        loop {
            {
                let mut parked = self.0.lock().unwrap();
                if parked.len() >= n {
                    return std::mem::take(&mut *parked);
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "only {} of {n} commands arrived",
                self.0.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Fill a pending READ's buffer with its tag (CDB byte 5) and answer GOOD.
fn answer(mut cmd: PendingCommand) {
    let (cdb, data) = cmd.cdb_and_data();
    let tag = cdb[5];
    for i in 0..data.count() {
        data.segment_mut(i).fill(tag);
    }
    cmd.complete(&Reply::good());
}

#[test]
fn commands_pending_beyond_the_workers_complete_out_of_order_from_other_threads() {
    for workers in [0, 2] {
        let handler = Arc::new(Parked::default());
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(5));
        // Far more commands in flight than workers: none holds a thread.
        let tags: std::collections::HashMap<u16, u8> = (0..40u8)
            .map(|tag| (served.submit(&[0x08, 0, 0, 0, 8, tag], 4096), tag))
            .collect();
        let mut pending = handler.take(40);
        pending.reverse();
        let mut buckets: Vec<Vec<PendingCommand>> = (0..4).map(|_| Vec::new()).collect();
        for (i, cmd) in pending.into_iter().enumerate() {
            buckets[i % 4].push(cmd);
        }
        let threads: Vec<_> = buckets
            .into_iter()
            .map(|mine| std::thread::spawn(move || mine.into_iter().for_each(answer)))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let done = wait_for(&mut served.kernel, 40, Duration::from_secs(10));
        assert_eq!(done.len(), 40, "workers: {workers}");
        for c in &done {
            assert_eq!(c.status, 0);
            assert!(c.data_in.iter().all(|&b| b == tags[&c.id]), "{}", c.id);
        }
        assert!(
            served.kernel.broken().is_none(),
            "{:?}",
            served.kernel.broken()
        );
        served.stop().unwrap();
    }
}

#[test]
fn a_dropped_pending_command_fails_and_the_ring_goes_on() {
    for workers in [0, 2] {
        let handler = Arc::new(Parked::default());
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(5));
        let lost = served.submit(&[0x08, 0, 0, 0, 8, 1], 4096);
        let kept = served.submit(&[0x08, 0, 0, 0, 8, 2], 4096);
        let mut pending = handler.take(2);
        let keep = pending.pop().unwrap();
        let (lost_cmd, keep) = if keep.id() == kept {
            (pending.pop().unwrap(), keep)
        } else {
            (keep, pending.pop().unwrap())
        };
        // Dropped on another thread, as a backend callback might.
        std::thread::spawn(move || drop(lost_cmd)).join().unwrap();
        let failed = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
        assert_eq!(failed.len(), 1, "workers: {workers}");
        assert_eq!((failed[0].id, failed[0].status), (lost, 2));
        assert_eq!(failed[0].sense[2] & 0xF, 0x4, "HARDWARE ERROR");
        answer(keep);
        let done = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
        assert_eq!((done[0].id, done[0].status), (kept, 0));
        assert!(done[0].data_in.iter().all(|&b| b == 2));
        assert!(
            served.kernel.broken().is_none(),
            "{:?}",
            served.kernel.broken()
        );
        served.stop().unwrap();
    }
}

#[test]
fn an_abort_of_a_pending_command_leaves_it_to_finish_once() {
    for workers in [0, 2] {
        let handler = Arc::new(Parked::default());
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(5));
        let id = served.submit(&[0x08, 0, 0, 0, 8, 5], 4096);
        let mut pending = handler.take(1);
        served
            .kernel
            .submit_tmr(tcmu_sys::TCMU_TMR_ABORT_TASK, &[id])
            .unwrap();
        served.bell.kick();
        let later = served.submit(&TUR, 0);
        let mut more = handler.take(1);
        answer(more.pop().unwrap());
        let first = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
        assert_eq!(first[0].id, later, "workers: {workers}");
        answer(pending.pop().unwrap());
        let done = wait_for(&mut served.kernel, 1, Duration::from_secs(10));
        assert_eq!((done[0].id, done[0].status), (id, 0));
        assert!(
            served.kernel.broken().is_none(),
            "{:?}",
            served.kernel.broken()
        );
        served.stop().unwrap();
    }
}

#[test]
fn a_stop_waits_for_pending_commands_and_a_second_byte_cuts_it_short() {
    for workers in [0, 2] {
        // Drained: the stop returns once the last pending command completes.
        let handler = Arc::new(Parked::default());
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(30));
        let ids: Vec<u16> = (0..3u8)
            .map(|tag| served.submit(&[0x08, 0, 0, 0, 8, tag], 4096))
            .collect();
        let pending = handler.take(3);
        served.signal_stop();
        assert!(
            served.join_within(Duration::from_millis(200)).is_none(),
            "stopped with commands pending (workers: {workers})"
        );
        std::thread::spawn(move || pending.into_iter().for_each(answer));
        let stopped = served.join_within(Duration::from_secs(10));
        assert!(matches!(stopped, Some(Ok(()))), "workers: {workers}");
        let mut done: Vec<u16> = served.kernel.reap().iter().map(|c| c.id).collect();
        done.sort_unstable();
        assert_eq!(done, ids);

        // Forced: a second byte ends the wait with the command still pending.
        let handler = Arc::new(Parked::default());
        let mut served = Served::start(handler.clone(), workers, Duration::from_secs(60));
        served.submit(&TUR, 0);
        let late = handler.take(1);
        served.signal_stop();
        std::thread::sleep(Duration::from_millis(50));
        served.signal_stop();
        let stopped = served.join_within(Duration::from_secs(10));
        assert!(
            matches!(stopped, Some(Ok(()))),
            "forced, workers: {workers}"
        );
        // Completing after serving ended is harmless.
        drop(late);
    }
}
