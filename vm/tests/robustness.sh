# shellcheck shell=bash
# Never hang, never lose an acknowledged write: a handler killed with
# SIGKILL and started again reattaches to its device while fio keeps
# verifying, and a filesystem written during the kill stays clean.
# Sourced by vm/guest/suite.

RB_IMG=/tmp/robust.img
RB_NAME=robust0
RB_OUT=$VM_RUN/tcmu-serve-robust
RB_PID="" RB_DEV=""

rb_serve() {
  serve_start "$RB_OUT-$1" --backend "file:$RB_IMG" --create --size 512MiB --name "$RB_NAME" || return
  RB_PID=$SERVE_PID RB_DEV=$READY
}

# rb_kill_and_restart: SIGKILL the handler, start it again with the same
# arguments; it must take over the same backstore and the same disk.
rb_kill_and_restart() {
  local old_dev=$RB_DEV
  kill -KILL "$RB_PID"
  wait "$RB_PID" 2> /dev/null || true
  sleep 1
  rb_serve restarted || return
  [[ "$RB_DEV" == "$old_dev" ]] || fail "the restarted handler serves $RB_DEV, not $old_dev" || return
  grep -q 'reattaching' "$RB_OUT-restarted.stderr" || fail "no reattach message: $(stderr_tail "$RB_OUT-restarted.stderr")"
}

rb_fio_survives_kill() {
  rm -f "$RB_IMG"
  rb_serve first || return
  local fio_out=$VM_RUN/fio-restart.txt rc=0
  "${FIO_VERIFY[@]}" --name=restart --filename="$RB_DEV" --iodepth=32 --size=64M --output="$fio_out" &
  local fio_pid=$!
  sleep 3
  kill -0 "$fio_pid" 2> /dev/null || fail "fio ended before the kill (too fast to test)" || return
  rb_kill_and_restart || { kill "$fio_pid"; return 1; }
  timeout 600 tail --pid="$fio_pid" -f /dev/null || fail "fio still running 600s after the restart" || return
  wait "$fio_pid" || rc=$?
  cat "$fio_out"
  ((rc == 0)) || fail "fio exited $rc after the restart (see fio-restart.txt)" || return
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$fio_out" || fail "fio reported verify errors"
}

rb_fs_survives_kill() {
  [[ -b "$RB_DEV" ]] || fail "skipped: no disk" || return
  must "mkfs.ext4" mkfs.ext4 -F -q "$RB_DEV" || return
  mkdir -p /mnt/robust
  must "mount" mount -t ext4 "$RB_DEV" /mnt/robust || return
  # A writer that keeps creating files and syncing them.
  (for i in $(seq 1 400); do
    head -c 65536 /dev/urandom > "/mnt/robust/f$i" && sync "/mnt/robust/f$i" 2> /dev/null
  done) &
  local writer=$!
  sleep 2
  rb_kill_and_restart || return
  timeout 600 tail --pid="$writer" -f /dev/null || fail "the writer hung after the restart" || return
  wait "$writer" || fail "the writer failed after the restart" || return
  must "umount" umount /mnt/robust || return
  must "e2fsck -fn after a kill during writes" e2fsck -fn "$RB_DEV"
}

rb_stop() {
  [[ -n "$RB_PID" ]] || return 0
  serve_stop "$RB_PID" TERM 60 || fail "still running 60s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC: $(stderr_tail "$RB_OUT-restarted.stderr")" || return
  local left
  left=$(cfs_leftovers)
  rm -f "$RB_IMG"
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

step robust_fio_survives_sigkill rb_fio_survives_kill
step robust_fs_clean_after_sigkill rb_fs_survives_kill
step robust_clean_shutdown rb_stop
