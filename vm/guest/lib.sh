# shellcheck shell=bash
# Helpers for guest test files (sourced by vm/guest/suite inside the VM).
#
# A test file is a list of `step NAME FUNCTION [ARGS...]` calls. A step passes
# when FUNCTION returns 0; on failure FUNCTION calls `fail REASON` (which
# returns 1) or `must REASON CMD...`. Each step prints exactly one line,
# `PASS: NAME` or `FAIL: NAME (REASON)`, on stdout (the console) and in
# $VM_RUN/results.txt; everything the commands print goes to $VM_RUN/suite.log.
# Every command that touches the device under test is bounded by `timeout`.

VM_RUN=${VM_RUN:-/mnt/run}
SUITE_LOG=$VM_RUN/suite.log
SUITE_RESULTS=$VM_RUN/results.txt
TCMU_SERVE=${TCMU_SERVE:-$REPO_ROOT/target/release/tcmu-serve}
CFS=/sys/kernel/config/target
# Default bound for a single command (seconds).
CMD_TIMEOUT=${CMD_TIMEOUT:-120}

SUITE_PASSED=0
SUITE_FAILED=0
STEP_REASON=""
SERVE_PIDS=()
KLOG_BASE=0

# info MESSAGE: a note on the console and in the log (not a test result).
info() {
  echo "# $*"
  echo "# $*" >> "$SUITE_LOG"
}

# fail REASON: record why the current step fails; returns 1 so that a step
# can end with `... || fail "why"` or `fail "why"; return`.
fail() {
  STEP_REASON=$*
  return 1
}

# fio writing random 4 KiB blocks with direct I/O and checking each one
# (crc32c) after writing; add --name, --filename, --iodepth, --size, --output.
# An array, so that `must` and `timeout` can run it.
FIO_VERIFY=(fio --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --verify=crc32c --do_verify=1
  --verify_fatal=1 --verify_state_save=0 --eta=never)

# must REASON CMD...: run CMD bounded by $CMD_TIMEOUT; on failure set the
# step's reason to "REASON (exit N)" (or "... timed out").
must() {
  local reason=$1 rc=0
  shift
  echo "+ $*"
  timeout -k 5 "$CMD_TIMEOUT" "$@" || rc=$?
  ((rc == 0)) && return 0
  if ((rc == 124 || rc == 137)); then
    fail "$reason: timed out after ${CMD_TIMEOUT}s"
  else
    fail "$reason (exit $rc)"
  fi
}

# step NAME FUNCTION [ARGS...]
step() {
  local name=$1 rc=0 t0 t1
  shift
  STEP_REASON=""
  t0=$(date +%s.%N)
  echo "=== step $name" >> "$SUITE_LOG"
  # `if` context: errexit is off inside FUNCTION, which checks what it runs.
  if "$@" >> "$SUITE_LOG" 2>&1; then rc=0; else rc=1; fi
  t1=$(date +%s.%N)
  echo "=== step $name: rc=$rc after $(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')s" >> "$SUITE_LOG"
  if ((rc == 0)); then
    SUITE_PASSED=$((SUITE_PASSED + 1))
    echo "PASS: $name" | tee -a "$SUITE_RESULTS"
  else
    SUITE_FAILED=$((SUITE_FAILED + 1))
    echo "FAIL: $name (${STEP_REASON:-failed})" | tee -a "$SUITE_RESULTS"
  fi
}

suite_init() {
  : > "$SUITE_LOG"
  : > "$SUITE_RESULTS"
  # No udev in the guest: nothing loads the SCSI disk and generic drivers
  # when a LUN appears, so load them up front (as a udev system would).
  modprobe -a sd_mod sg >> "$SUITE_LOG" 2>&1 || info "modprobe sd_mod sg failed"
  mkdir -p /etc/target/pr /etc/target/alua
  [[ -e /dev/fd ]] || ln -sfn /proc/self/fd /dev/fd
  info "kernel $(uname -r); tcmu-serve: $TCMU_SERVE"
  KLOG_BASE=$(klog_problems | wc -l)
}

# klog_problems: kernel log lines of level warning or worse (TCMU's "ring is
# broken", SCSI I/O errors, WARN_ON splats, ...).
klog_problems() {
  # "hrtimer: interrupt took" is the emulated CPU being slow, not a problem
  # of the code under test. KLOG_EXPECTED (an extended regex) names the
  # warnings a test file provokes on purpose but cannot time.
  { dmesg --level=emerg,alert,crit,err,warn 2> /dev/null || true; } | grep -v 'hrtimer: interrupt took' |
    grep -Ev "${KLOG_EXPECTED:-^\$}" || true
}

# klog_mark: a test that provokes kernel errors on purpose (I/O errors of a
# failing backend) starts the kernel-log check afresh after its checks.
klog_mark() {
  KLOG_BASE=$(klog_problems | wc -l)
}

# klog_clean: fail if the kernel logged warnings or errors since suite_init.
klog_clean() {
  local new
  new=$(klog_problems | tail -n +$((KLOG_BASE + 1)))
  [[ -z "$new" ]] && return 0
  echo "$new"
  fail "$(wc -l <<< "$new") kernel warnings/errors, first: $(head -n 1 <<< "$new")"
}

# suite_finish: print the one summary line; exit status 1 on any failure.
suite_finish() {
  local line="vm-suite: $SUITE_PASSED passed, $SUITE_FAILED failed"
  echo "$line" | tee -a "$SUITE_LOG"
  echo "$line" > "$VM_RUN/summary.txt"
  ((SUITE_FAILED == 0 && SUITE_PASSED > 0))
}

# Kill every tcmu-serve this suite started that still runs (on exit).
suite_cleanup() {
  local p
  for p in "${SERVE_PIDS[@]}"; do
    kill -KILL "$p" 2> /dev/null || true
  done
}

# cfs_leftovers: print what a tcmu-serve may have left in configfs: user_*
# HBAs (with or without devices) and tcm_loop targets. Empty = clean.
cfs_leftovers() {
  local d
  for d in "$CFS"/core/user_* "$CFS"/loopback/*; do
    [[ -d "$d" && "$d" != */discovery_auth ]] || continue
    echo "${d#"$CFS"/}"
    if [[ "$d" == "$CFS"/core/user_* ]]; then
      find "$d" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sed "s|^|${d#"$CFS"/}/|"
    fi
  done
  return 0
}

# serve_start OUT_PREFIX ARGS...: start `tcmu-serve ARGS...` in the background
# with stdout in OUT_PREFIX.stdout and stderr in OUT_PREFIX.stderr; wait up
# to $READY_TIMEOUT s for its `ready: X` line. Sets SERVE_PID and READY (= X).
READY_TIMEOUT=${READY_TIMEOUT:-60}
READY=""
# shellcheck disable=SC2034 # READY is for the test files
serve_start() {
  local out=$1 i line
  shift
  SERVE_PID="" READY=""
  [[ -x "$TCMU_SERVE" ]] || fail "no executable $TCMU_SERVE" || return
  echo "+ $TCMU_SERVE $*"
  "$TCMU_SERVE" "$@" > "$out.stdout" 2> "$out.stderr" &
  SERVE_PID=$!
  SERVE_PIDS+=("$SERVE_PID")
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    line=$(grep -m1 '^ready: ' "$out.stdout" 2> /dev/null || true)
    if [[ -n "$line" ]]; then
      READY=${line#ready: }
      echo "tcmu-serve pid $SERVE_PID: $line (after $((i / 10)).$((i % 10))s)"
      return 0
    fi
    if ! kill -0 "$SERVE_PID" 2> /dev/null; then
      local rc=0
      wait "$SERVE_PID" || rc=$?
      fail "tcmu-serve exited $rc before ready: $(stderr_tail "$out.stderr")"
      return
    fi
    sleep 0.1
  done
  fail "no 'ready:' line within ${READY_TIMEOUT}s: $(stderr_tail "$out.stderr")"
}

# serve_stop PID SIGNAL LIMIT: signal tcmu-serve and wait up to LIMIT s.
# Sets SERVE_RC to its exit status, or returns 1 if it is still running.
serve_stop() {
  local pid=$1 sig=$2 limit=$3 i
  SERVE_RC=""
  kill "-$sig" "$pid" 2> /dev/null || true
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2> /dev/null && return 1
  SERVE_RC=0
  wait "$pid" || SERVE_RC=$?
  echo "tcmu-serve pid $pid exited $SERVE_RC after ~$((i / 10)).$((i % 10))s"
}

# serve_stop_clean PID STDERR: SIGTERM a server and fail unless it exits 0
# within 30 s, without a panic in STDERR, leaving configfs clean.
serve_stop_clean() {
  local pid=$1 stderr=$2 left
  serve_stop "$pid" TERM 30 || fail "still running 30s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$stderr")" || return
  ! grep -q 'panicked' "$stderr" || fail "panicked: $(grep -m1 panicked "$stderr")" || return
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

# stderr_tail FILE: the last line of a stderr capture, for a failure reason.
stderr_tail() {
  local l
  l=$(grep -v '^[[:space:]]*$' "$1" 2> /dev/null | tail -n 1)
  echo "${l:-no stderr}"
}

# wait_gone PATH LIMIT: wait until PATH no longer exists.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [[ -e "$1" ]] || return 0
    sleep 0.1
  done
  return 1
}
