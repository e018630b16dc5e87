# shellcheck shell=bash
# The NBD backend: tcmu-serve serves an export of qemu-nbd (a raw file on
# the guest's /tmp) and passes the same disk checks as the RAM disk; what is
# written through the LUN lands in the file. A server that goes away fails I/O promptly
# with an error line, never a hang. Sourced by vm/guest/suite.

# shellcheck source=vm/guest/disk-suite.sh
source "$GUEST_DIR/disk-suite.sh"

NBD_IMG=/tmp/nbd-backend.img
NBD_SOCK=/tmp/nbd-backend.sock
NBD_PID=""

# nbd_server_start: qemu-nbd serving $NBD_IMG on $NBD_SOCK (4 clients, so a
# second tcmu-serve can connect and be refused for its name, not its socket).
nbd_server_start() {
  rm -f "$NBD_SOCK"
  qemu-nbd --format=raw --shared=4 --persistent --socket="$NBD_SOCK" "$NBD_IMG" \
    > "$VM_RUN/qemu-nbd.log" 2>&1 &
  NBD_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -S "$NBD_SOCK" ]] && return 0
    sleep 0.1
  done
  fail "qemu-nbd did not create $NBD_SOCK: $(tail -n1 "$VM_RUN/qemu-nbd.log")"
}

nbd_server_stop() {
  [[ -n "$NBD_PID" ]] || return 0
  kill "$NBD_PID" 2> /dev/null
  wait "$NBD_PID" 2> /dev/null || true
  NBD_PID=""
}

nbd_setup() {
  command -v qemu-nbd > /dev/null || fail "qemu-nbd is not installed (package qemu-utils)" || return
  truncate -s 512M "$NBD_IMG" || fail "cannot create $NBD_IMG" || return
  nbd_server_start
}

# What is written through the LUN lands in the NBD server's file, byte for
# byte, at the same offset.
nbd_file_holds_data() {
  local out=$VM_RUN/tcmu-serve-nbd-data
  head -c 4M /dev/urandom > /tmp/nbd-pattern
  serve_start "$out" --backend "nbd+unix:$NBD_SOCK" --name nbd-data || return
  local pid=$SERVE_PID dev=$READY
  must "write the pattern" dd if=/tmp/nbd-pattern of="$dev" bs=1M seek=8 oflag=direct status=none || return
  serve_stop "$pid" TERM 60 || fail "tcmu-serve still running 60s after SIGTERM" || return
  cmp /tmp/nbd-pattern <(dd if="$NBD_IMG" bs=1M skip=8 count=4 status=none) ||
    fail "the server's file does not hold the data written through the LUN"
}

# The server dies under a served LUN: reads fail within a bounded time,
# tcmu-serve logs the lost connection and still shuts down cleanly.
nbd_server_loss() {
  local out=$VM_RUN/tcmu-serve-nbd-loss rc=0
  serve_start "$out" --backend "nbd+unix:$NBD_SOCK" --name nbd-loss || return
  local pid=$SERVE_PID dev=$READY
  timeout 60 dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none ||
    fail "read before the loss failed" || return
  nbd_server_stop
  timeout 120 dd if="$dev" of=/dev/null bs=4k count=1 skip=4096 iflag=direct status=none || rc=$?
  ((rc != 124)) || fail "a read hung after the NBD server died" || return
  ((rc != 0)) || fail "a read succeeded after the NBD server died" || return
  grep -Eqi 'nbd|connection' "$out.stderr" || fail "no log line about the lost server: $(stderr_tail "$out.stderr")" || return
  serve_stop "$pid" TERM 60 || fail "tcmu-serve still running 60s after SIGTERM" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

SK_NAME=nbd0
SK_BLOCKS=1048576
SK_SERVE_ARGS=(--backend "nbd+unix:$NBD_SOCK")
step nbd_server_setup nbd_setup
disk_suite nbd_
step nbd_file_holds_data nbd_file_holds_data
step nbd_server_loss nbd_server_loss
nbd_server_stop
rm -f "$NBD_IMG"
# The server loss causes I/O errors on purpose: start the kernel-log check afresh.
klog_mark
