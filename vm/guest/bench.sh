#!/usr/bin/env bash
# Guest side of vm/bench (run inside the VM by vm/boot): fio through tcm_loop
# against five backstores of the same size, created and removed one after
# the other in this one boot:
#   mem      tcmu-serve --backend mem
#   file     tcmu-serve --backend file: on a tmpfs file
#   runner   tcmu-runner, its qcow handler on a raw tmpfs file (Debian ships
#            no file handler), with a private system D-Bus
#   rd_mcp   LIO's in-kernel RAM backstore
#   fileio   LIO's in-kernel file backstore on a tmpfs file
# and, asked for by BENCH_ONLY, the file backend on its other I/O engine
# and on a file system that is not tmpfs (ext4 on a loop device over a
# tmpfs file, the image opened with O_DIRECT, so that requests wait on the
# loop device's worker like on a disk):
#   file_uring       tcmu-serve --backend file: on a tmpfs file, --io-engine io_uring
#   file_ext4        tcmu-serve --backend file: on ext4, --direct
#   file_uring_ext4  the same with --io-engine io_uring
# and the mem backend with each way of waiting for the ring (--spin-us):
#   mem_spin0  never spins; mem_spin_auto  spins while it pays;
#   mem_spin60  always spins up to 60 µs
# and, with BENCH_BASELINE=PATH (another tcmu-serve build), the mem and
# file backstores served by that build, to compare two builds in one boot:
#   mem_base   $BENCH_BASELINE --backend mem
#   file_base  $BENCH_BASELINE --backend file: on a tmpfs file
# and three slow ones where requests wait on a network (for asynchronous
# completion):
#   nbd_delay    tcmu-serve --backend nbd+unix: on nbdkit's memory plugin
#                behind its delay filter (2 ms per read and per write)
#   rbd          tcmu-serve --backend rbd: on an image of a single-node
#                Ceph cluster started in the guest (scripts/ceph-cluster)
#   runner_rbd   tcmu-runner's rbd handler on an image of the same cluster
# Each backstore is filled once with 1 MiB sequential writes (so that reads
# hit real data, and the sparse mem backend holds all of it), then gets the
# jobs of JOBS below, each fio --direct=1 --ioengine=libaio --time_based
# --ramp_time=2 --runtime=$BENCH_RUNTIME.
#
# For the three user-space handlers a sampler reads /proc/PID/smaps every
# 0.5 s from the handler's start to its stop: Rss summed over all mappings
# minus the Rss of the /dev/uioN mapping (the ring and data area the kernel
# shares with the handler) is the handler's own resident memory; the first
# sample (idle, before any I/O) and the maximum are kept.
#
# BENCH_ROUNDS=N repeats the whole list N times, reversed every other
# round; round N of backstore KEY is KEY.rN (KEY for round 1).
# Output in $VM_RUN/bench: one directory per backstore (fio JSON per job,
# status, queue limits, RSS samples, handler logs), meta.txt, and
# bench.json / bench.txt assembled from them. Exit status 0 when the run
# got through (a backstore that could not be set up is a row marked n/a).
set -euo pipefail

RUNTIME=${BENCH_RUNTIME:-10}
RAMP=2
SIZE=$((512 << 20))
TCMU_SERVE=${TCMU_SERVE:-$REPO_ROOT/target/release/tcmu-serve}
OUT=$VM_RUN/bench
CFS=/sys/kernel/config/target
# A tmpfs of its own for the image files (the guest's /tmp is an overlay).
FS=/tmp/bench
LOOP_WWN=naa.5001405bec000001
LOOP_INIT_WWN=naa.5001405bec0000f1
# HBA indexes of our own, clear of what tcmu-serve uses.
HBA_IDX=90
SAMPLE_INTERVAL=0.5
KLOG_BASE=0
# Bound for a fio job beyond its ramp and run time (TCG is slow).
FIO_SLACK=120

# name rw bs iodepth numjobs. Sequential 1 MiB jobs at QD8: 8 MiB in
# flight keeps every backstore busy without queueing far beyond what it
# can take (tcmu-runner splits 1 MiB into 64 KiB commands: 128 in flight).
JOBS=(
  "randread-4k-qd1 randread 4k 1 1"
  "randwrite-4k-qd1 randwrite 4k 1 1"
  "randread-4k-qd32 randread 4k 32 1"
  "randread-4k-qd128 randread 4k 128 1"
  "randwrite-4k-qd32 randwrite 4k 32 1"
  "randread-4k-qd32x2 randread 4k 32 2"
  "randwrite-4k-qd32x2 randwrite 4k 32 2"
  "read-1m-qd8 read 1M 8 1"
  "write-1m-qd8 write 1M 8 1"
)

note() { printf 'bench: %s\n' "$*"; }

REASON=""
# fail REASON: remember why the current backstore fails; returns 1.
fail() {
  REASON=$*
  return 1
}

# bounded SECONDS CMD...: run CMD with a time limit.
bounded() {
  local limit=$1
  shift
  timeout -k 5 "$limit" "$@"
}

# cfs_write FILE VALUE: a configfs write, bounded (enabling a TCMU device
# waits for its handler's netlink reply).
cfs_write() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  bounded 60 bash -c 'printf "%s" "$2" > "$1"' _ "$1" "$2"
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

pid_gone() { ! kill -0 "$1" 2> /dev/null; }

# stop_pid PID LIMIT: SIGTERM, wait up to LIMIT s, then SIGKILL.
stop_pid() {
  local pid=$1 limit=$2 rc=0
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2> /dev/null || true
  if ! wait_until "$limit" pid_gone "$pid"; then
    note "pid $pid still running after ${limit}s: SIGKILL"
    kill -KILL "$pid" 2> /dev/null || true
    wait_until 10 pid_gone "$pid" || true
  fi
  wait "$pid" 2> /dev/null || rc=$?
  return "$rc"
}

setup_guest() {
  modprobe -a target_core_mod target_core_user target_core_file tcm_loop sd_mod sg
  mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
  mkdir -p "$FS" /etc/target/pr /etc/target/alua
  mountpoint -q "$FS" || mount -t tmpfs -o size=1200m,mode=0755 tmpfs "$FS"
  [[ -e /dev/fd ]] || ln -sfn /proc/self/fd /dev/fd
  rm -rf "$OUT"
  mkdir -p "$OUT"
  # Kernel warnings from here on count (booting under TCG logs a few).
  KLOG_BASE=$(klog_problems | wc -l)
}

klog_problems() {
  dmesg --level=emerg,alert,crit,err,warn 2> /dev/null || true
}

write_meta() {
  local runner_ver serve_ver
  runner_ver=$(bounded 10 tcmu-runner --version 2>&1 | head -n 1 || true)
  serve_ver=$(bounded 10 "$TCMU_SERVE" --version 2>&1 | head -n 1 || true)
  {
    echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "kernel=$(uname -r)"
    echo "kernel_version=$(uname -v)"
    echo "fio=$(fio --version)"
    echo "tcmu_runner=${runner_ver:-unknown}"
    echo "tcmu_serve=${serve_ver:-unknown}"
    echo "tcmu_serve_path=$TCMU_SERVE"
    if [[ -n "${BENCH_BASELINE:-}" ]]; then
      echo "baseline=$(bounded 10 "$BENCH_BASELINE" --version 2>&1 | head -n 1 || true)"
      echo "baseline_path=$BENCH_BASELINE"
    fi
    echo "cpus=$(nproc)"
    echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "mem_total_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "runtime_s=$RUNTIME"
    echo "ramp_s=$RAMP"
    echo "size_bytes=$SIZE"
    echo "rss_sample_interval_s=$SAMPLE_INTERVAL"
  } > "$OUT/meta.txt"
}

# ---------------------------------------------------------------- tcm_loop

LOOP_TPG=$CFS/loopback/$LOOP_WWN/tpgt_1

# loop_expose BACKSTORE_DIR: tcm_loop target, I_T nexus, LUN 0; sets DEV.
loop_expose() {
  local bs=$1 addr sysdev
  DEV=""
  mkdir -p "$LOOP_TPG/lun/lun_0" || fail "cannot create the tcm_loop target" || return
  cfs_write "$LOOP_TPG/nexus" "$LOOP_INIT_WWN" || fail "cannot create the tcm_loop nexus" || return
  ln -s "$bs" "$LOOP_TPG/lun/lun_0/bench" || fail "cannot link the LUN" || return
  # address = host:channel:target of the tcm_loop SCSI host; LUN 0.
  addr=$(cat "$LOOP_TPG/address" 2> /dev/null) || fail "no tcm_loop address" || return
  sysdev=/sys/bus/scsi/devices/$addr:0/block
  wait_until 30 compgen -G "$sysdev/sd*" > /dev/null || fail "no disk at $addr:0" || return
  DEV=/dev/$(basename "$(compgen -G "$sysdev/sd*" | head -n 1)")
  wait_until 10 test -b "$DEV" || fail "no device node $DEV"
}

loop_remove() {
  [[ -d "$CFS/loopback/$LOOP_WWN" ]] || return 0
  rm -f "$LOOP_TPG/lun/lun_0/bench"
  rmdir "$LOOP_TPG/lun/lun_0" 2> /dev/null || true
  rmdir "$LOOP_TPG" 2> /dev/null || true
  rmdir "$CFS/loopback/$LOOP_WWN" 2> /dev/null || true
}

# lio_backstore DIR CONTROL: create, configure and enable a backstore.
lio_backstore() {
  mkdir -p "$1" || fail "cannot create $1" || return
  cfs_write "$1/control" "$2" || fail "control write to $1 failed" || return
  cfs_write "$1/enable" 1 || fail "enabling $1 failed" || return
  cfs_write "$1/wwn/vpd_unit_serial" "$(cat /proc/sys/kernel/random/uuid)" ||
    fail "serial write to $1 failed"
}

lio_remove() {
  local bs=$1
  [[ -d "$bs" ]] || return 0
  bounded 60 rmdir "$bs" || note "cannot remove $bs"
  rmdir "$(dirname "$bs")" 2> /dev/null || true
}

# ---------------------------------------------------------------- RSS sampler

# rss_sampler PID FILE STOPFILE: every $SAMPLE_INTERVAL s until STOPFILE
# exists or PID is gone, read /proc/PID/smaps once: total Rss and the Rss
# of the /dev/uioN mapping(s); and VmHWM from /proc/PID/status. Rewrites
# FILE with key=value lines (KiB). One long-lived process, so that sampling
# costs the guest (and the handler under test) next to nothing.
rss_sampler() {
  python3 - "$1" "$2" "$3" "$SAMPLE_INTERVAL" << 'EOF'
import os, sys, time

pid, path, stop, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
n, idle = 0, None
peak = {"excl": 0, "uio": 0, "total": 0, "hwm": 0}
while not os.path.exists(stop):
    total = uio = hwm = 0
    in_uio = False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                if not parts[0].endswith(":"):
                    # A mapping's header: range perms offset dev inode [path]
                    in_uio = len(parts) >= 6 and parts[5].startswith("/dev/uio")
                elif parts[0] == "Rss:":
                    total += int(parts[1])
                    if in_uio:
                        uio += int(parts[1])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        break
    if total > 0:
        n += 1
        excl = total - uio
        if idle is None:
            idle = excl
        for k, v in (("excl", excl), ("uio", uio), ("total", total), ("hwm", hwm)):
            peak[k] = max(peak[k], v)
        with open(path + ".tmp", "w") as f:
            f.write(f"samples={n}\nidle_excl_kib={idle}\npeak_excl_kib={peak['excl']}\n"
                    f"peak_uio_kib={peak['uio']}\npeak_total_kib={peak['total']}\n"
                    f"vmhwm_kib={peak['hwm']}\n")
        os.replace(path + ".tmp", path)
    time.sleep(interval)
EOF
}

SAMPLER_PID=""
sampler_start() {
  rm -f "$BS_OUT/rss.stop"
  rss_sampler "$1" "$BS_OUT/rss.txt" "$BS_OUT/rss.stop" &
  SAMPLER_PID=$!
}
sampler_stop() {
  [[ -n "$SAMPLER_PID" ]] || return 0
  touch "$BS_OUT/rss.stop"
  wait_until 10 pid_gone "$SAMPLER_PID" || kill -KILL "$SAMPLER_PID" 2> /dev/null || true
  wait "$SAMPLER_PID" 2> /dev/null || true
  SAMPLER_PID=""
}

# ---------------------------------------------------------------- backstores
# start_KEY sets DEV (the /dev/sdX to test) and HPID (the handler's pid, or
# empty); stop_KEY undoes it, also after a partial start.

HPID=""
SERVE_ARGS=()

# serve_start: tcmu-serve "${SERVE_ARGS[@]}", wait for its ready line.
serve_start() {
  local line=""
  # BENCH_SERVE_FLAGS: extra flags for every tcmu-serve backstore (A/B runs).
  # shellcheck disable=SC2206 # split on purpose
  SERVE_ARGS+=(${BENCH_SERVE_FLAGS:-})
  echo "${SERVE_BIN:-$TCMU_SERVE} ${SERVE_ARGS[*]}" > "$BS_OUT/tcmu-serve.args"
  "${SERVE_BIN:-$TCMU_SERVE}" "${SERVE_ARGS[@]}" > "$BS_OUT/tcmu-serve.stdout" 2> "$BS_OUT/tcmu-serve.stderr" &
  HPID=$!
  wait_until 60 serve_ready || true
  line=$(sed -n 's/^ready: //p' "$BS_OUT/tcmu-serve.stdout")
  if [[ -z "$line" ]]; then
    kill -0 "$HPID" 2> /dev/null || fail "tcmu-serve exited: $(tail -n 1 "$BS_OUT/tcmu-serve.stderr")" || return
    fail "tcmu-serve not ready within 60 s" || return
  fi
  [[ -b "$line" ]] || fail "tcmu-serve ready line names $line, not a block device" || return
  DEV=$line
}
serve_ready() {
  grep -q '^ready: ' "$BS_OUT/tcmu-serve.stdout" 2> /dev/null || ! kill -0 "$HPID" 2> /dev/null
}
serve_stop() {
  local rc=0
  [[ -n "$HPID" ]] || return 0
  stop_pid "$HPID" 30 || rc=$?
  ((rc == 0)) || note "tcmu-serve exited $rc"
  HPID=""
}

start_mem() {
  SERVE_ARGS=(--backend mem --size 512MiB --name bench-mem)
  serve_start
}
stop_mem() { serve_stop; }

# The same RAM disk with commands executed on the ring thread (no workers).
start_mem_inline() {
  SERVE_ARGS=(--backend mem --size 512MiB --name bench-mem-inline --workers 0)
  serve_start
}
stop_mem_inline() { serve_stop; }

# The RAM disk with the reading worker's spin set (A/B runs of --spin-us
# in one boot); the adaptive policy's debug lines (what it decided, how
# often spins found an entry) go to tcmu-serve.stderr.
start_mem_spin() {
  SERVE_ARGS=(--backend mem --size 512MiB --name "bench-mem-spin$1" --spin-us "$1")
  RUST_LOG=${RUST_LOG:-warn,tcmu_core::spin_policy=debug} serve_start
}
start_mem_spin0() { start_mem_spin 0; }
start_mem_spin_auto() { start_mem_spin auto; }
start_mem_spin60() { start_mem_spin 60; }
stop_mem_spin0() { serve_stop; }
stop_mem_spin_auto() { serve_stop; }
stop_mem_spin60() { serve_stop; }

start_file() {
  local help
  help=$(bounded 10 "${SERVE_BIN:-$TCMU_SERVE}" --help 2>&1 || true)
  [[ "$help" == *file:* ]] || fail "file backend missing" || return
  SERVE_ARGS=(--backend "file:$FS/bench.img" --create --size 512MiB --name bench-file)
  serve_start
}
stop_file() {
  serve_stop
  rm -f "$FS/bench.img"
}

# The same two served by the baseline build (BENCH_BASELINE): a regression
# check of the build under test against an earlier one, side by side.
baseline_bin() {
  [[ -n "${BENCH_BASELINE:-}" ]] || fail "BENCH_BASELINE not set" || return
  [[ -x "$BENCH_BASELINE" ]] || fail "no executable $BENCH_BASELINE" || return
  SERVE_BIN=$BENCH_BASELINE
}
start_mem_base() {
  baseline_bin || return
  SERVE_ARGS=(--backend mem --size 512MiB --name bench-mem-base)
  serve_start
}
stop_mem_base() {
  serve_stop
  SERVE_BIN=""
}
start_file_base() {
  baseline_bin || return
  start_file
}
stop_file_base() {
  stop_file
  SERVE_BIN=""
}

# The same file served as an async device through io_uring.
start_file_uring() {
  local help
  help=$(bounded 10 "$TCMU_SERVE" --help 2>&1 || true)
  [[ "$help" == *--io-engine* ]] || fail "--io-engine missing" || return
  SERVE_ARGS=(--backend "file:$FS/bench.img" --create --size 512MiB --io-engine io_uring
    --name bench-file-uring)
  serve_start
}
stop_file_uring() { stop_file; }

# ext4 on a loop device over a tmpfs file, mounted at $EXT4.
EXT4=/tmp/bench-ext4
EXT4_LOOP=""
ext4_up() {
  command -v mkfs.ext4 > /dev/null || fail "mkfs.ext4 not installed" || return
  modprobe loop 2> /dev/null || true
  truncate -s $((SIZE + (64 << 20))) "$FS/ext4.img" || fail "cannot create $FS/ext4.img" || return
  EXT4_LOOP=$(bounded 30 losetup --find --show "$FS/ext4.img") || fail "losetup failed" || return
  bounded 60 mkfs.ext4 -q -F "$EXT4_LOOP" || fail "mkfs.ext4 failed" || return
  mkdir -p "$EXT4"
  mount -t ext4 "$EXT4_LOOP" "$EXT4" || fail "cannot mount ext4" || return
}
ext4_down() {
  mountpoint -q "$EXT4" && umount "$EXT4"
  [[ -n "$EXT4_LOOP" ]] && losetup -d "$EXT4_LOOP"
  EXT4_LOOP=""
  rm -f "$FS/ext4.img"
}
start_file_ext4() {
  ext4_up || return
  SERVE_ARGS=(--backend "file:$EXT4/bench.img" --create --size 512MiB --direct
    --name bench-file-ext4)
  serve_start
}
stop_file_ext4() {
  serve_stop
  ext4_down
}
start_file_uring_ext4() {
  ext4_up || return
  SERVE_ARGS=(--backend "file:$EXT4/bench.img" --create --size 512MiB --direct
    --io-engine io_uring --name bench-file-uring-ext4)
  serve_start
}
stop_file_uring_ext4() { stop_file_ext4; }

RUNNER_BS=$CFS/core/user_$HBA_IDX/bench-runner
DBUS_STARTED=0
start_runner() {
  runner_up || return
  truncate -s "$SIZE" "$FS/runner.img" || fail "cannot create $FS/runner.img" || return
  lio_backstore "$RUNNER_BS" "dev_size=$SIZE,dev_config=qcow/$FS/runner.img,hw_block_size=512" || return
  loop_expose "$RUNNER_BS"
}
# runner_up: tcmu-runner running (HPID), with a private system D-Bus.
runner_up() {
  command -v tcmu-runner > /dev/null || fail "tcmu-runner not installed" || return
  # tcmu-runner owns org.kernel.TCMUService1 on the system bus: give it a
  # private one (/run is a fresh tmpfs in the guest).
  mkdir -p /run/dbus /var/log
  if [[ ! -S /run/dbus/system_bus_socket ]]; then
    bounded 30 dbus-daemon --system --fork > "$BS_OUT/dbus.log" 2>&1 ||
      fail "dbus-daemon failed: $(tail -n 1 "$BS_OUT/dbus.log")" || return
    DBUS_STARTED=1
  fi
  rm -f /var/log/tcmu-runner.log
  tcmu-runner > "$BS_OUT/tcmu-runner.stdout" 2>&1 &
  HPID=$!
  # Ready once it has joined TCMU's netlink multicast group: a
  # NETLINK_GENERIC (16) socket with a group mask (nothing else here has one).
  wait_until 30 runner_ready || fail "tcmu-runner not ready within 30 s" || return
  kill -0 "$HPID" 2> /dev/null || fail "tcmu-runner exited: $(tail -n 1 "$BS_OUT/tcmu-runner.stdout")"
}
runner_ready() {
  awk '$2 == 16 && $4 != "00000000" { f = 1 } END { exit !f }' /proc/net/netlink ||
    ! kill -0 "$HPID" 2> /dev/null
}
stop_runner() {
  loop_remove
  lio_remove "$RUNNER_BS"
  runner_down
  rm -f "$FS/runner.img"
}
runner_down() {
  local rc=0
  if [[ -n "$HPID" ]]; then
    stop_pid "$HPID" 30 || rc=$?
    note "tcmu-runner exited $rc"
    HPID=""
  fi
  cp /var/log/tcmu-runner.log "$BS_OUT/" 2> /dev/null || true
  if ((DBUS_STARTED)) && [[ -s /run/dbus/pid ]]; then
    stop_pid "$(cat /run/dbus/pid)" 10 || true
    rm -f /run/dbus/pid /run/dbus/system_bus_socket
    DBUS_STARTED=0
  fi
}

start_nbd_delay() {
  command -v nbdkit > /dev/null || fail "nbdkit not installed" || return
  rm -f "$FS/nbd.sock"
  nbdkit --foreground --exit-with-parent --unix "$FS/nbd.sock" --filter=delay \
    memory "$SIZE" rdelay=2ms wdelay=2ms > "$BS_OUT/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  wait_until 30 test -S "$FS/nbd.sock" || fail "nbdkit did not start: $(tail -n 1 "$BS_OUT/nbdkit.log")" || return
  SERVE_ARGS=(--backend "nbd+unix:$FS/nbd.sock" --name bench-nbd)
  serve_start
}
stop_nbd_delay() {
  serve_stop
  if [[ -n "${NBDKIT_PID:-}" ]]; then
    stop_pid "$NBDKIT_PID" 10 || true
  fi
  NBDKIT_PID=""
}

# The Ceph cluster of rbd and runner_rbd: started once, stopped at the end.
CEPH_DIR=$FS/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
ceph_up() {
  [[ -s "$CEPH_CONF" ]] && return 0
  bounded 300 "$REPO_ROOT/scripts/ceph-cluster" start --dir "$CEPH_DIR" > "$OUT/ceph-start.log" 2>&1 ||
    fail "scripts/ceph-cluster start failed: $(tail -n 1 "$OUT/ceph-start.log")"
}
ceph_down() {
  [[ -s "$CEPH_CONF" ]] || return 0
  bounded 120 "$REPO_ROOT/scripts/ceph-cluster" stop --dir "$CEPH_DIR" > /dev/null 2>&1 || true
}
# rbd_image NAME: a fresh image of $SIZE bytes.
rbd_image() {
  bounded 60 rbd -c "$CEPH_CONF" rm "$1" > /dev/null 2>&1 || true
  bounded 60 rbd -c "$CEPH_CONF" create --size "$((SIZE >> 20))M" --image-feature layering "$1" \
    > "$BS_OUT/rbd-create.log" 2>&1 || fail "rbd create $1: $(tail -n 1 "$BS_OUT/rbd-create.log")"
}

start_rbd() {
  ceph_up || return
  rbd_image rbd/bench-serve || return
  SERVE_ARGS=(--backend "rbd:rbd/bench-serve?conf=$CEPH_CONF&timeout=30" --name bench-rbd)
  serve_start
}
stop_rbd() {
  serve_stop
}

RUNNER_RBD_BS=$CFS/core/user_$HBA_IDX/bench-runner-rbd
start_runner_rbd() {
  ceph_up || return
  rbd_image rbd/bench-runner || return
  runner_up || return
  lio_backstore "$RUNNER_RBD_BS" "dev_size=$SIZE,dev_config=rbd/rbd/bench-runner;conf=$CEPH_CONF,hw_block_size=512" || return
  loop_expose "$RUNNER_RBD_BS"
}
stop_runner_rbd() {
  loop_remove
  lio_remove "$RUNNER_RBD_BS"
  runner_down
}

RD_BS=$CFS/core/rd_mcp_$HBA_IDX/bench-rd
start_rd_mcp() {
  lio_backstore "$RD_BS" "rd_pages=$((SIZE / 4096))" || return
  loop_expose "$RD_BS"
}
stop_rd_mcp() {
  loop_remove
  lio_remove "$RD_BS"
}

FILEIO_BS=$CFS/core/fileio_$HBA_IDX/bench-fileio
start_fileio() {
  truncate -s "$SIZE" "$FS/fileio.img" || fail "cannot create $FS/fileio.img" || return
  lio_backstore "$FILEIO_BS" "fd_dev_name=$FS/fileio.img,fd_dev_size=$SIZE" || return
  loop_expose "$FILEIO_BS"
}
stop_fileio() {
  loop_remove
  lio_remove "$FILEIO_BS"
  rm -f "$FS/fileio.img"
}

# ---------------------------------------------------------------- fio

# fio_run OUTFILE ARGS...: fio on $DEV with the common options, bounded.
fio_run() {
  local out=$1 limit
  shift
  limit=$((RAMP + RUNTIME + FIO_SLACK))
  bounded "$limit" fio --filename="$DEV" --direct=1 --ioengine=libaio \
    --output-format=json --output="$out" --eta=never "$@" 2> "${out%.json}.stderr"
}

# Fill the whole device once: reads then hit real data, and the mem
# backend (which stores no all-zero chunks) holds all of it. fio's write
# buffers are random data.
prefill() {
  bounded 600 fio --name=prefill --filename="$DEV" --direct=1 --ioengine=libaio \
    --rw=write --bs=1M --iodepth=8 --eta=never --output="$BS_OUT/prefill.txt" \
    2> "$BS_OUT/prefill.stderr"
}

record_queue() {
  local q=/sys/block/${DEV#/dev/}
  {
    echo "device=$DEV"
    echo "max_sectors_kb=$(cat "$q/queue/max_sectors_kb")"
    echo "max_hw_sectors_kb=$(cat "$q/queue/max_hw_sectors_kb")"
    echo "queue_depth=$(cat "$q/device/queue_depth" 2> /dev/null || echo '?')"
    echo "nr_requests=$(cat "$q/queue/nr_requests")"
    echo "scheduler=$(cat "$q/queue/scheduler")"
  } > "$BS_OUT/queue.txt"
}

# bench_backstore KEY: set it up, fill it, run the jobs, tear it down.
bench_backstore() {
  local key=$1 round=${2:-1} job name rw bs qd nj t0 t1 rc
  BS_OUT=$OUT/$key
  # Later rounds (BENCH_ROUNDS) keep their results apart: KEY.rN.
  ((round == 1)) || BS_OUT=$OUT/$key.r$round
  mkdir -p "$BS_OUT"
  DEV="" HPID="" REASON=""
  note "== $key: setting up"
  t0=$(date +%s)
  if ! "start_$key"; then
    note "$key: n/a ($REASON)"
    echo "n/a ($REASON)" > "$BS_OUT/status"
    sampler_stop
    "stop_$key" || true
    return 0
  fi
  [[ -n "$HPID" ]] && sampler_start "$HPID"
  # The idle sample, before any I/O.
  sleep 1
  record_queue
  note "$key: $DEV ($(tr '\n' ' ' < "$BS_OUT/queue.txt"))"
  local status=ok
  if ! prefill; then
    status="n/a (prefill failed: $(tail -n 1 "$BS_OUT/prefill.stderr"))"
  else
    note "$key: filled $((SIZE >> 20)) MiB in $(($(date +%s) - t0)) s since setup"
    for job in "${JOBS[@]}"; do
      read -r name rw bs qd nj <<< "$job"
      job_selected "$name" || continue
      rc=0
      [[ -n "${BENCH_PERF:-}" ]] && perf_start "$name"
      local cpu_before
      cpu_before=$(head -n 1 /proc/stat)
      fio_run "$BS_OUT/$name.json" --name="$name" --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --numjobs="$nj" --group_reporting --time_based --ramp_time="$RAMP" \
        --runtime="$RUNTIME" || rc=$?
      busy_share "$cpu_before" "$(head -n 1 /proc/stat)" > "$BS_OUT/$name.cpu"
      [[ -n "${BENCH_PERF:-}" ]] && perf_stop "$name"
      if ((rc != 0)); then
        echo "fio exit $rc" > "$BS_OUT/$name.err"
        note "$key $name: fio exit $rc: $(tail -n 1 "$BS_OUT/$name.stderr" 2> /dev/null)"
        if ((rc == 124 || rc == 137)); then
          # A backstore that hangs would eat the whole time budget.
          status="partial (fio timed out in $name)"
          break
        fi
        continue
      fi
      note "$key $name: $(summarize "$BS_OUT/$name.json")"
    done
  fi
  sampler_stop
  [[ -s "$BS_OUT/rss.txt" ]] && note "$key rss: $(tr '\n' ' ' < "$BS_OUT/rss.txt")"
  "stop_$key" || true
  t1=$(date +%s)
  echo "$status" > "$BS_OUT/status"
  note "$key: $status, $((t1 - t0)) s"
}

# busy_share BEFORE AFTER: the share of all vCPU time between two
# /proc/stat "cpu" lines that was not idle or waiting for I/O, in percent:
# near 100 means the job was CPU-bound.
busy_share() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x); split(b, y); total = 0
    for (i = 2; i <= n; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    # Parenthesized: a bare ">" among the printf arguments redirects.
    printf "%.0f\n", (total > 0 ? 100 * (total - idle) / total : 0)
  }'
}

# job_selected NAME: whether BENCH_JOBS (names, space-separated) includes
# NAME; without BENCH_JOBS every job runs.
job_selected() {
  [[ -z "${BENCH_JOBS:-}" || " $BENCH_JOBS " == *" $1 "* ]]
}

# With BENCH_PERF set, a system-wide profile (perf record, cpu-clock
# samples: TCG has no hardware counters) of each job's measured part, and
# its flat reports in NAME.perf.txt (by command, object and symbol),
# NAME.perf-comm.txt (by command) and NAME.perf-dso.txt (by command and
# object: a thread's own code against the kernel's work for it).
PERF_PID=""
perf_start() {
  command -v perf > /dev/null || { note "perf not installed: no profile"; return 0; }
  # perf's start-up (symbols of every process) takes seconds under TCG:
  # it records from when its workload (a long sleep) runs until perf_stop
  # ends that sleep, so fio starts only once recording does.
  perf record -a -F 997 -e cpu-clock -o "$BS_OUT/$1.perf.data" -- \
    sleep 3600 > "$BS_OUT/$1.perf.log" 2>&1 &
  PERF_PID=$!
  wait_until 60 pgrep -P "$PERF_PID" -x sleep > /dev/null || note "perf did not start"
}
perf_stop() {
  [[ -n "$PERF_PID" ]] || return 0
  pkill -P "$PERF_PID" -x sleep || true
  wait_until 60 pid_gone "$PERF_PID" || kill -KILL "$PERF_PID" 2> /dev/null || true
  wait "$PERF_PID" 2> /dev/null || true
  PERF_PID=""
  perf report -i "$BS_OUT/$1.perf.data" --stdio --no-children --sort comm,dso,sym \
    --percent-limit 0.3 > "$BS_OUT/$1.perf.txt" 2> /dev/null || true
  perf report -i "$BS_OUT/$1.perf.data" --stdio --no-children --sort comm \
    > "$BS_OUT/$1.perf-comm.txt" 2> /dev/null || true
  perf report -i "$BS_OUT/$1.perf.data" --stdio --no-children --sort comm,dso \
    > "$BS_OUT/$1.perf-dso.txt" 2> /dev/null || true
  rm -f "$BS_OUT/$1.perf.data"
}

# summarize FIO_JSON: one line, IOPS / MiB/s / mean completion latency.
summarize() {
  python3 - "$1" << 'EOF'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print(f"{d['iops']:.0f} IOPS, {d['bw_bytes'] / 2**20:.1f} MiB/s, "
      f"clat mean {d['clat_ns']['mean'] / 1000:.1f} us")
EOF
}

# assemble: bench.json and bench.txt from the per-backstore directories.
assemble() {
  python3 - "$OUT" "${JOBS[@]}" << 'EOF'
import json, os, sys
out, jobs = sys.argv[1], [j.split() for j in sys.argv[2:]]

def kv(path):
    d = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                d[k] = int(v) if v.lstrip("-").isdigit() else v
    return d

labels = {
    "mem": "tcmu-serve mem",
    "mem_inline": "tcmu-serve mem, --workers 0",
    "mem_spin0": "tcmu-serve mem, --spin-us 0",
    "mem_spin_auto": "tcmu-serve mem, --spin-us auto",
    "mem_spin60": "tcmu-serve mem, --spin-us 60",
    "mem_base": "tcmu-serve mem, baseline build",
    "file": "tcmu-serve file (tmpfs)",
    "file_base": "tcmu-serve file (tmpfs), baseline build",
    "file_uring": "tcmu-serve file (tmpfs), io_uring",
    "file_ext4": "tcmu-serve file (ext4 on loop, O_DIRECT)",
    "file_uring_ext4": "tcmu-serve file (ext4 on loop, O_DIRECT), io_uring",
    "runner": "tcmu-runner qcow (raw tmpfs file)",
    "rd_mcp": "LIO rd_mcp",
    "fileio": "LIO fileio (tmpfs)",
    "nbd_delay": "tcmu-serve nbd (nbdkit memory, 2 ms delay)",
    "rbd": "tcmu-serve rbd (single-node Ceph in the VM)",
    "runner_rbd": "tcmu-runner rbd (same cluster)",
}
result = {"meta": kv(os.path.join(out, "meta.txt")),
          "jobs": [{"name": n, "rw": rw, "bs": bs, "iodepth": int(qd), "numjobs": int(nj)}
                   for n, rw, bs, qd, nj in jobs],
          "backstores": []}
lines = []
rounds = sorted({int(n.rsplit(".r", 1)[1]) for n in os.listdir(out)
                 if ".r" in n and n.rsplit(".r", 1)[1].isdigit()} | {1})
runs = [(key + ("" if r == 1 else f".r{r}"), label + ("" if len(rounds) == 1 else f", round {r}"))
        for r in rounds for key, label in labels.items()]
for key, label in runs:
    d = os.path.join(out, key)
    status_file = os.path.join(d, "status")
    if not os.path.exists(status_file):
        continue  # not in BENCH_ONLY
    status = open(status_file).read().strip()
    bs = {"key": key, "label": label, "status": status,
          "queue": kv(os.path.join(d, "queue.txt")),
          "rss": kv(os.path.join(d, "rss.txt")) or None, "results": {}}
    for name, rw, *_ in jobs:
        path = os.path.join(d, name + ".json")
        err = os.path.join(d, name + ".err")
        if os.path.exists(err) or not os.path.exists(path):
            bs["results"][name] = None
            continue
        try:
            text = open(path).read()
            j = json.loads(text[text.index("{"):])["jobs"][0]
        except (ValueError, KeyError, IndexError):
            bs["results"][name] = None
            continue
        side = j["read"] if j["read"]["io_bytes"] else j["write"]
        pct = side["clat_ns"].get("percentile", {})
        cpu_file = os.path.join(d, name + ".cpu")
        cpu = int(open(cpu_file).read().strip() or 0) if os.path.exists(cpu_file) else None
        bs["results"][name] = {
            "cpu_busy_pct": cpu,
            "iops": side["iops"],
            "bw_mib_s": side["bw_bytes"] / 2**20,
            "clat_mean_us": side["clat_ns"]["mean"] / 1000,
            "clat_p99_us": pct.get("99.000000", 0) / 1000,
            "runtime_ms": side["runtime"],
            "error": j.get("error", 0),
        }
        r = bs["results"][name]
        lines.append(f"{key:<8} {name:<20} {r['iops']:>10.0f} IOPS {r['bw_mib_s']:>9.1f} MiB/s "
                     f"clat {r['clat_mean_us']:>9.1f} us, vCPUs {cpu if cpu is not None else '?'}% busy")
    result["backstores"].append(bs)
    if bs["rss"]:
        lines.append(f"{key:<8} rss excl. uio: idle {bs['rss'].get('idle_excl_kib', 0)} KiB, "
                     f"peak {bs['rss'].get('peak_excl_kib', 0)} KiB")
    lines.append(f"{key:<8} status: {status}")
json.dump(result, open(os.path.join(out, "bench.json"), "w"), indent=1)
open(os.path.join(out, "bench.txt"), "w").write("\n".join(lines) + "\n")
EOF
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  sampler_stop || true
  [[ -n "$HPID" ]] && kill -KILL "$HPID" 2> /dev/null
  ceph_down
  return 0
}

main() {
  trap cleanup EXIT
  setup_guest
  write_meta
  note "kernel $(uname -r), $(fio --version), runtime ${RUNTIME}s per job, size $((SIZE >> 20)) MiB"
  # BENCH_ROUNDS=N runs the list N times, in reverse order every other
  # round (A B, B A, A B, ...), so that no backstore always runs first.
  local key round keys
  read -r -a keys <<< "${BENCH_ONLY:-mem file runner rd_mcp fileio}"
  for ((round = 1; round <= ${BENCH_ROUNDS:-1}; round++)); do
    local order=("${keys[@]}")
    if ((round % 2 == 0)); then
      order=()
      for ((i = ${#keys[@]} - 1; i >= 0; i--)); do order+=("${keys[i]}"); done
    fi
    for key in "${order[@]}"; do
      bench_backstore "$key" "$round"
    done
  done
  klog_problems | tail -n +$((KLOG_BASE + 1)) > "$OUT/kernel-warnings.txt"
  echo "kernel_warnings=$(wc -l < "$OUT/kernel-warnings.txt")" >> "$OUT/meta.txt"
  assemble
  cat "$OUT/bench.txt"
}

main "$@"
