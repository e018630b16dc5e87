//! Ring throughput over the simulated kernel.
//!
//! Each iteration publishes a batch of commands, lets the ring hand them to
//! a handler on this thread and complete them, and reaps the completions:
//! the whole round trip a command makes, kernel side included. Data
//! commands are reported in bytes per second next to a plain `memcpy` of
//! the same bytes measured in the same run, so the ratio holds on a noisy
//! machine.

use std::hint::black_box;
use std::sync::Arc;

use block_backends::MemoryDevice;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scsi_emu::{BlockDevice, Emulator, LunIdentity};
use tcmu_core::CommandHandler;
use tcmu_core::server::drain;
use tcmu_core::sim::{SimConfig, SimKernel};
use tcmu_core::{DataSegments, Reply, Ring};

const BATCH: usize = 128;

/// Answers every command GOOD without looking at it.
struct Null;

impl CommandHandler for Null {
    fn handle(&self, _cdb: &[u8], _data: &mut DataSegments) -> Reply {
        Reply::good()
    }
}

fn setup() -> (SimKernel, Ring) {
    let kernel = SimKernel::new(SimConfig {
        cmdr_size: (1 << 20) - 128,
        data_size: 64 << 20,
        ..SimConfig::default()
    });
    let ring = Ring::new(kernel.map()).unwrap();
    (kernel, ring)
}

fn round_trip<H: CommandHandler>(
    kernel: &mut SimKernel,
    ring: &mut Ring,
    handler: &H,
    cdb: &[u8],
    out: &[u8],
    in_len: usize,
) {
    for _ in 0..BATCH {
        kernel.submit(cdb, out, in_len).unwrap();
    }
    let n = drain(ring, handler).unwrap();
    assert_eq!(n, BATCH);
    ring.take_notify();
    assert_eq!(kernel.reap_count(), BATCH);
}

fn null_commands(c: &mut Criterion) {
    let mut g = c.benchmark_group("null");
    g.throughput(Throughput::Elements(BATCH as u64));
    let (mut kernel, mut ring) = setup();
    g.bench_function("test_unit_ready_ring_only", |b| {
        b.iter(|| round_trip(&mut kernel, &mut ring, &Null, &[0; 6], &[], 0))
    });
    let emulator = emulator();
    let (mut kernel, mut ring) = setup();
    g.bench_function("test_unit_ready_emulated", |b| {
        b.iter(|| round_trip(&mut kernel, &mut ring, &emulator, &[0; 6], &[], 0))
    });
    g.finish();
}

fn emulator() -> Emulator<Arc<dyn BlockDevice>> {
    let device: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(512, 1 << 20).unwrap());
    Emulator::new(device, LunIdentity::new("bench", "RAM disk"))
}

fn data_commands(c: &mut Criterion) {
    const LEN: usize = 4096;
    let mut g = c.benchmark_group("4k");
    g.throughput(Throughput::Bytes((BATCH * LEN) as u64));
    let emulator = emulator();
    let payload = vec![0x5Au8; LEN];
    // WRITE(10) of 8 blocks at LBA 8, READ(10) of the same.
    let write = [0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0];
    let read = [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0];
    let (mut kernel, mut ring) = setup();
    g.bench_function("write", |b| {
        b.iter(|| round_trip(&mut kernel, &mut ring, &emulator, &write, &payload, 0))
    });
    let (mut kernel, mut ring) = setup();
    g.bench_function("read", |b| {
        b.iter(|| round_trip(&mut kernel, &mut ring, &emulator, &read, &[], LEN))
    });
    let src = vec![0xA5u8; BATCH * LEN];
    let mut dst = vec![0u8; BATCH * LEN];
    g.bench_function("memcpy_same_bytes", |b| {
        b.iter(|| {
            for (d, s) in dst.chunks_mut(LEN).zip(src.chunks(LEN)) {
                d.copy_from_slice(black_box(s));
            }
            black_box(&mut dst);
        })
    });
    g.finish();
}

criterion_group!(benches, null_commands, data_commands);
criterion_main!(benches);
