#!/usr/bin/env bash
# Guest side of vm/demo: serve a 512 MiB RAM disk with tcmu-serve, put ext4
# on it, use it, tear it down. Every command is echoed with its output;
# the transcript also goes to $VM_RUN/demo.txt.
set -euo pipefail
TCMU_SERVE=${TCMU_SERVE:-$REPO_ROOT/target/release/tcmu-serve}
MNT=/mnt/demo
pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if mountpoint -q "$MNT"; then umount "$MNT" || true; fi
  if [[ -n "$pid" ]] && kill -0 "$pid" 2> /dev/null; then kill -KILL "$pid"; fi
  return 0
}

# show CMD...: echo a command, then run it (bounded).
show() {
  echo "\$ $*"
  timeout 120 "$@"
}

# Runs in the pipeline's subshell: the trap and $pid live there.
demo() {
  trap cleanup EXIT
  # No udev here: load the SCSI disk driver as udev would on a normal system.
  modprobe -a sd_mod sg
  echo "\$ tcmu-serve --backend mem --size 512MiB --name demo &"
  "$TCMU_SERVE" --backend mem --size 512MiB --name demo > /tmp/serve.out 2> "$VM_RUN/demo-tcmu-serve.stderr" &
  pid=$!
  dev=""
  for _ in $(seq 1 600); do
    dev=$(sed -n 's/^ready: //p' /tmp/serve.out)
    [[ -n "$dev" ]] && break
    kill -0 "$pid" 2> /dev/null || { echo "tcmu-serve exited early:"; cat "$VM_RUN/demo-tcmu-serve.stderr"; exit 1; }
    sleep 0.1
  done
  [[ -n "$dev" ]] || { echo "tcmu-serve not ready after 60 s"; exit 1; }
  cat /tmp/serve.out
  # What tcmu-serve set up: a TCMU backstore, its UIO device, a tcm_loop target.
  echo "\$ ls /sys/kernel/config/target/core/user_* /sys/kernel/config/target/loopback"
  ls /sys/kernel/config/target/core/user_* /sys/kernel/config/target/loopback || true
  echo "\$ cat /sys/class/uio/uio*/name"
  cat /sys/class/uio/uio*/name || true
  show sg_inq "$dev"
  show sg_readcap --16 "$dev"
  show lsblk -o NAME,SIZE,TYPE,VENDOR,MODEL,SERIAL "$dev"
  show mkfs.ext4 -F -q -L tcmu-demo "$dev"
  mkdir -p "$MNT"
  show mount "$dev" "$MNT"
  echo "\$ echo 'hello from user space' > $MNT/hello.txt"
  echo 'hello from user space' > "$MNT/hello.txt"
  show dd if=/dev/urandom of="$MNT/random.bin" bs=1M count=16 status=none
  show sync
  show df -h "$MNT"
  show ls -l "$MNT"
  show cat "$MNT/hello.txt"
  show umount "$MNT"
  echo "\$ kill -TERM $pid   # tcmu-serve tears down its configfs objects"
  kill -TERM "$pid"
  rc=0
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  wait "$pid" || rc=$?
  pid=""
  echo "tcmu-serve exited with status $rc"
  echo "\$ ls /sys/kernel/config/target/core /sys/kernel/config/target/loopback"
  ls /sys/kernel/config/target/core /sys/kernel/config/target/loopback 2>&1 || true
  ((rc == 0)) || { echo "demo: FAILED (tcmu-serve exit $rc)"; exit 1; }
  [[ ! -e "$dev" ]] || { echo "demo: FAILED ($dev still exists)"; exit 1; }
  echo "demo: OK"
}

# A pipeline, not exec > >(tee): the shell waits for tee, so the transcript
# is complete before the VM powers off.
demo 2>&1 | tee "$VM_RUN/demo.txt"
