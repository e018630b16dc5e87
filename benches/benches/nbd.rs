//! The NBD client's request path against a local `nbdkit memory` server:
//! 32 reads of 4 KiB in flight on one connection, driven as futures from
//! one thread, completed by the client's reader thread as replies arrive.
//! The server answers at once, so this measures the client (and the
//! socket), CPU-bound: requests written, replies read and matched, wakers
//! woken. `cargo bench -p tcmu-benches --bench nbd`; needs `nbdkit` (Debian
//! package nbdkit).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::Poll;
use std::time::{Duration, Instant};

use block_backends::{NbdAddress, NbdDevice, NbdOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scsi_emu::{AsyncBlockDevice, block_on};

const DEPTH: usize = 32;
const BLOCK: usize = 4096;

/// `nbdkit memory` on a Unix socket, killed when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let dir = std::env::temp_dir().join(format!("tcmu-bench-nbd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the socket directory");
        let socket = dir.join("nbd.sock");
        let child = Command::new("nbdkit")
            .args(["--foreground", "--exit-with-parent", "-U"])
            .arg(&socket)
            .args(["memory", "size=64M"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start nbdkit (apt-get install nbdkit)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "nbdkit made no socket in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, dir }
    }

    fn address(&self) -> NbdAddress {
        NbdAddress::Unix {
            path: self.dir.join("nbd.sock"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls every future until all are done.
async fn join_all(mut futures: Vec<Pin<Box<dyn Future<Output = ()> + '_>>>) {
    let mut done = vec![false; futures.len()];
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (future, done) in futures.iter_mut().zip(done.iter_mut()) {
            if !*done {
                *done = future.as_mut().poll(cx).is_ready();
                all &= *done;
            }
        }
        if all { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}

fn reads(c: &mut Criterion) {
    let server = Server::start();
    let device = NbdDevice::connect(
        &server.address(),
        "",
        NbdOptions {
            block_size: 4096,
            ..NbdOptions::default()
        },
    )
    .expect("connect to nbdkit");
    let mut buffers = vec![vec![0u8; BLOCK]; DEPTH];
    let mut group = c.benchmark_group("nbd");
    group.throughput(Throughput::Bytes((DEPTH * BLOCK) as u64));
    group.bench_function("read_4k_qd32", |b| {
        b.iter(|| {
            let device = &device;
            let futures = buffers
                .iter_mut()
                .enumerate()
                .map(|(i, buf)| {
                    Box::pin(async move {
                        device
                            .read((i * 7) as u64 % 16384, buf)
                            .await
                            .expect("read");
                    }) as Pin<Box<dyn Future<Output = ()> + '_>>
                })
                .collect();
            block_on(join_all(futures));
        })
    });
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
