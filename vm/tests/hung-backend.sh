# shellcheck shell=bash
# A backend call that never returns: the first read of LBA 8192..8199 of a
# RAM disk sleeps an hour in its worker (--inject-fault hang:). Other I/O
# keeps flowing meanwhile; sd times the command out first (5 s) and aborts
# it (ABORT_TASK, which also reaches the handler's ring); the abort waits
# until TCMU's cmd_time_out (10 s) ends the command; sd retries, and the
# retry - a new command for the same blocks, while the hung one still holds
# its ring entry - goes through. (With equal timeouts, TCMU's could fire
# first and fail the read with NOT READY instead of an abort and a retry.) The LUN keeps answering, and
# SIGTERM still shuts down cleanly with the worker thread stuck.
# Sourced by vm/guest/suite (helpers: vm/guest/lib.sh).

HB_NAME=hang0
HB_OUT=$VM_RUN/tcmu-serve-hung
HB_LBA=8192 # in 512-byte blocks: 4 KiB block 1024
HB_TIMEOUT=10
# sd's timeout, well below HB_TIMEOUT so that its abort always comes first.
HB_SD_TIMEOUT=5
# A bound for the hung read: timeout, abort, retry (and, should the retry
# fail too, sd's escalation) take well under this.
HB_READ_LIMIT=120
HB_PID="" HB_DEV="" HB_DD="" HB_DMESG_FROM=0 HB_T0=0 HB_PROBLEMS=0
HB_TMP=/tmp/hung-backend

hb_need_dev() {
  [[ -n "$HB_DEV" ]] || fail "skipped: tcmu-serve never became ready"
}

# hb_state: the SCSI device state of the disk (running, offline, ...).
hb_state() {
  cat "/sys/block/${HB_DEV#/dev/}/device/state" 2> /dev/null || echo gone
}

hb_start() {
  mkdir -p "$HB_TMP"
  HB_PROBLEMS=$(klog_problems | wc -l)
  RUST_LOG=info,tcmu_core=trace serve_start "$HB_OUT" --backend mem --size 64MiB --name "$HB_NAME" \
    --inject-fault "hang:$HB_LBA+8" --cmd-timeout "$HB_TIMEOUT" || return
  HB_PID=$SERVE_PID HB_DEV=$READY
  echo "$HB_SD_TIMEOUT" > "/sys/block/${HB_DEV#/dev/}/device/timeout" ||
    fail "cannot set the sd timeout of $HB_DEV" || return
  # A pattern to read back while the command hangs.
  head -c 65536 /dev/urandom > "$HB_TMP/pattern"
  must "write the pattern" dd if="$HB_TMP/pattern" of="$HB_DEV" bs=4k oflag=direct status=none
}

# The hung read starts; meanwhile reads, writes and TEST UNIT READY are
# answered (before sd's timeout: its error handling would hold them).
hb_other_io() {
  hb_need_dev || return
  HB_DMESG_FROM=$(dmesg | wc -l)
  HB_T0=$(date +%s)
  echo "+ dd if=$HB_DEV bs=4k count=1 skip=$((HB_LBA / 8)) iflag=direct &"
  timeout -k 5 $((HB_READ_LIMIT + 60)) dd if="$HB_DEV" of="$HB_TMP/hung" bs=4k count=1 \
    skip=$((HB_LBA / 8)) iflag=direct status=none &
  HB_DD=$!
  sleep 1
  kill -0 "$HB_DD" 2> /dev/null || fail "the read of LBA $HB_LBA did not hang (the fault was not hit)" || return
  timeout 5 dd if="$HB_DEV" bs=4k count=16 iflag=direct status=none | cmp - "$HB_TMP/pattern" ||
    fail "reading other blocks while a command hangs failed or returned wrong data" || return
  timeout 5 dd if="$HB_TMP/pattern" of="$HB_DEV" bs=4k count=2 seek=100 oflag=direct status=none ||
    fail "a write while a command hangs failed or timed out" || return
  timeout 5 sg_turs "$HB_DEV" || fail "no TEST UNIT READY answer while a command hangs" || return
  kill -0 "$HB_DD" 2> /dev/null || fail "the hung read ended before its timeout"
}

# The hung read comes back - the retry after the abort succeeds - and the
# kernel log and the handler's log show the abort.
hb_hung_read_returns() {
  [[ -n "$HB_DD" ]] || fail "skipped: no hung read" || return
  local rc=0 took new
  timeout "$HB_READ_LIMIT" tail --pid="$HB_DD" -f /dev/null ||
    fail "the hung read still runs $HB_READ_LIMIT s later (disk state $(hb_state))" || return
  wait "$HB_DD" || rc=$?
  took=$(($(date +%s) - HB_T0))
  echo "the hung read ended with exit status $rc after ${took}s (disk state $(hb_state))"
  new=$(dmesg | tail -n +$((HB_DMESG_FROM + 1)))
  echo "$new"
  grep -q 'ABORT_TASK' <<< "$new" || fail "no ABORT_TASK in dmesg" || return
  # tmr_notification is on: the abort reached the handler's ring as well.
  grep -q 'task management 1 for commands' "$HB_OUT.stderr" ||
    fail "the ABORT TASK did not reach the handler's ring" || return
  ((took >= HB_TIMEOUT)) || fail "the hung read ended after ${took}s, before the ${HB_TIMEOUT}s timeout" || return
  ((rc == 0)) || fail "the retry of the hung read failed (exit status $rc)" || return
  cmp -n 4096 "$HB_TMP/hung" /dev/zero || fail "the retried read returned wrong data"
}

# The LUN still answers: the disk is not offline, reads of the once-hung
# blocks and of others work, TEST UNIT READY is answered.
hb_lun_answers() {
  hb_need_dev || return
  [[ "$(hb_state)" == running ]] || fail "the disk is $(hb_state), not running" || return
  must "read of the once-hung blocks" dd if="$HB_DEV" of=/dev/null bs=4k count=1 skip=$((HB_LBA / 8)) \
    iflag=direct status=none || return
  timeout 30 dd if="$HB_DEV" bs=4k count=16 iflag=direct status=none | cmp - "$HB_TMP/pattern" ||
    fail "reads after the abort failed or returned wrong data" || return
  timeout 30 dd if="$HB_DEV" bs=4k count=2 skip=100 iflag=direct status=none | cmp -n 8192 - "$HB_TMP/pattern" ||
    fail "the write made while the command hung did not stick" || return
  local i
  for i in 1 2 3; do
    must "TEST UNIT READY $i" sg_turs "$HB_DEV" || return
  done
  [[ "$(hb_state)" == running ]] || fail "the disk is $(hb_state) after the checks"
}

# SIGTERM ends tcmu-serve although a worker still sleeps in the backend,
# and nothing is left in configfs.
hb_stop() {
  [[ -n "$HB_PID" ]] || fail "skipped: tcmu-serve never started" || return
  serve_stop "$HB_PID" TERM 90 || fail "still running 90s after SIGTERM: $(stderr_tail "$HB_OUT.stderr")" || return
  HB_PID=""
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC: $(stderr_tail "$HB_OUT.stderr")" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")" || return
  rm -rf "$HB_TMP"
  # The timeout, abort and reset messages are expected; other kernel
  # warnings or errors are not.
  local unexpected
  unexpected=$(klog_problems | tail -n +$((HB_PROBLEMS + 1)) |
    grep -Eiv "timing out command|ABORT_TASK|TMR_FUNCTION_COMPLETE|Power-on or device reset|tag#[0-9]+ (abort|FAILED|CDB)")
  [[ -z "$unexpected" ]] || fail "unexpected kernel warnings/errors: $(head -n1 <<< "$unexpected")"
}

step hung_backend_start hb_start
step hung_backend_other_io_flows hb_other_io
step hung_backend_read_returns_after_abort hb_hung_read_returns
step hung_backend_lun_answers hb_lun_answers
step hung_backend_sigterm_clean hb_stop
# Keep the expected messages of the hang out of later kernel-log checks.
klog_mark
