# shellcheck shell=bash
# TCMU generic netlink (family TCM-USER, group "config") against the real
# kernel, driven by the example tcmu-netlink-probe (tcmu_core::netlink):
# - a listener sees ADDED / RECONFIG(dev_size) / REMOVED for a backstore
#   made by hand and answers them; with the module's reply flag set the
#   configfs writes complete only because of those answers;
# - with the flag cleared nothing waits, and an answer is rejected (ENODEV);
# - the trap: once SET_FEATURES(1) was sent (as tcmu-runner does) and no one
#   listens, enable of a device that did not opt out blocks until
#   block_netlink + reset_netlink release it; tcmu-serve (which writes
#   nl_reply_supported=-1) starts and stops without hanging, also after a
#   real tcmu-runner ran;
# - the module's flag is cleared at the end so later files are unaffected.
# Sourced by vm/guest/suite inside the VM (helpers: vm/guest/lib.sh).

NL_PROBE=${TCMU_NETLINK_PROBE:-$REPO_ROOT/target/release/examples/tcmu-netlink-probe}
NL_PARAMS=/sys/module/target_core_user/parameters
# An HBA of its own, clear of tcmu-serve's user_0.
NL_HBA=$CFS/core/user_77
NL_DEV=$NL_HBA/nltest0
NL_UIO_NAME=tcm-user/77/nltest0/nltest/probe
NL_OUT=$VM_RUN/netlink-listen
NL_LISTEN_PID=""
NL_MINOR=""
NL_ID=""
NL_KLOG_BASE=0
# What the kernel logs (err) for an answer nobody waits for.
NL_UNAWAITED_LOG_RE='tcmu nl cmd [0-9]+/-?[0-9]+ completion could not find device with dev id'
# Bound for a configfs write that may wait for a netlink answer (seconds).
NL_WRITE_LIMIT=20

nl_probe() {
  echo "+ tcmu-netlink-probe $*"
  timeout -k 2 20 "$NL_PROBE" "$@"
}

# nl_release: free every configfs write waiting for a netlink answer (the
# waits are uninterruptible; only the module's escape hatch ends them).
nl_release() {
  echo "+ release netlink waits (block_netlink=1, reset_netlink=1, block_netlink=0)"
  echo 1 > "$NL_PARAMS/block_netlink"
  echo 1 > "$NL_PARAMS/reset_netlink"
  echo 0 > "$NL_PARAMS/block_netlink"
}

# nl_bounded LIMIT CMD...: run CMD in the background (a configfs write may
# sit in an uninterruptible wait, which `timeout` cannot end); if it still
# runs after LIMIT s, release the netlink waits and return 124. Otherwise
# return CMD's status.
nl_bounded() {
  local limit=$1 pid i rc=0
  shift
  echo "+ $*"
  "$@" &
  pid=$!
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2> /dev/null; then
    echo "still blocked after ${limit}s"
    nl_release
    wait "$pid" || true
    return 124
  fi
  wait "$pid" || rc=$?
  return "$rc"
}

# nl_write FILE VALUE (for nl_bounded)
nl_write() { printf '%s' "$2" > "$1"; }

# nl_wait_line REGEX FILE LIMIT: wait until FILE has a line matching REGEX;
# prints the first such line.
nl_wait_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -m1 -E "$1" "$2" 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

# nl_listeners: generic netlink sockets that joined a multicast group
# (nothing else in the guest does).
nl_listeners() { awk '$2 == 16 && $4 != "00000000"' /proc/net/netlink; }

nl_need_dev() {
  [[ -n "$NL_ID" ]] || fail "skipped: no ADDED event was seen"
}

nl_setup() {
  NL_KLOG_BASE=$(klog_problems | wc -l)
  [[ -x "$NL_PROBE" ]] ||
    fail "no $NL_PROBE (cargo build --release -p tcmu-core --example tcmu-netlink-probe)" || return
  must "modprobe target_core_user" modprobe -a configfs target_core_mod target_core_user || return
  mountpoint -q /sys/kernel/config || must "mount configfs" mount -t configfs configfs /sys/kernel/config || return
  [[ ! -e "$NL_HBA" ]] || fail "$NL_HBA exists before the test" || return
  [[ -z "$(nl_listeners)" ]] || fail "a netlink listener is already running: $(nl_listeners)" || return
  [[ $(cat "$NL_PARAMS/block_netlink") == unblocked ]] || fail "block_netlink is not 'unblocked'" || return
  local out
  out=$(nl_probe set-features 0 2>&1) || fail "set-features 0 failed: $out" || return
  echo "$out"
  grep -qx "set-features: 0 ok" <<< "$out" || fail "unexpected output: $(tail -n1 <<< "$out")"
}

nl_added() {
  local out line
  out=$(nl_probe set-features 1 2>&1) || fail "set-features 1 failed: $out" || return
  echo "$out"
  # grep -c reads everything: with pipefail, grep -q could fail the pipe.
  (($(dmesg | grep -c 'tcmu daemon: command reply support 1') > 0)) ||
    fail "the kernel did not log 'command reply support 1'" || return
  "$NL_PROBE" listen --count 3 --timeout 90 > "$NL_OUT.stdout" 2> "$NL_OUT.stderr" &
  NL_LISTEN_PID=$!
  nl_wait_line '^listening$' "$NL_OUT.stdout" 10 > /dev/null ||
    fail "probe not listening after 10s: $(stderr_tail "$NL_OUT.stderr")" || return
  must "mkdir $NL_DEV" mkdir -p "$NL_DEV" || return
  # nl_reply_supported=0 keeps the default: the module flag (now 1) decides.
  nl_write "$NL_DEV/control" "dev_size=16777216,dev_config=nltest/probe,hw_block_size=512,nl_reply_supported=0" ||
    fail "writing control failed" || return
  local rc=0
  nl_bounded "$NL_WRITE_LIMIT" nl_write "$NL_DEV/enable" 1 || rc=$?
  ((rc != 124)) || fail "enable blocked for ${NL_WRITE_LIMIT}s: the probe's answer did not release it" || return
  ((rc == 0)) || fail "enable failed (exit $rc)" || return
  line=$(nl_wait_line "^event: added " "$NL_OUT.stdout" 10) || fail "no ADDED event: $(cat "$NL_OUT.stdout")" || return
  echo "$line"
  [[ "$line" =~ ^event:\ added\ ([^ ]+)\ minor=([0-9]+)\ id=([0-9]+)$ ]] ||
    fail "malformed event line: $line" || return
  [[ "${BASH_REMATCH[1]}" == "$NL_UIO_NAME" ]] || fail "device '${BASH_REMATCH[1]}', want '$NL_UIO_NAME'" || return
  NL_MINOR=${BASH_REMATCH[2]}
  NL_ID=${BASH_REMATCH[3]}
  [[ $(cat "/sys/class/uio/uio$NL_MINOR/name" 2> /dev/null) == "$NL_UIO_NAME" ]] ||
    fail "minor=$NL_MINOR, but uio$NL_MINOR is not $NL_UIO_NAME" || return
  [[ $(cat "$NL_DEV/statistics/scsi_dev/indx") == "$NL_ID" ]] ||
    fail "id=$NL_ID, but the device index is $(cat "$NL_DEV/statistics/scsi_dev/indx")" || return
  grep -qx "reply: ok $NL_ID" "$NL_OUT.stdout" || fail "the ADDED answer was not accepted: $(tail -n1 "$NL_OUT.stdout")" || return
  # The effective value: > 0 means the kernel waited for that answer.
  [[ $(cat "$NL_DEV/attrib/nl_reply_supported") == 1 ]] ||
    fail "attrib/nl_reply_supported is $(cat "$NL_DEV/attrib/nl_reply_supported"), want 1"
}

nl_reconfig_size() {
  nl_need_dev || return
  local rc=0 line want="event: reconfig $NL_UIO_NAME minor=$NL_MINOR id=$NL_ID dev_size=33554432"
  nl_bounded "$NL_WRITE_LIMIT" nl_write "$NL_DEV/attrib/dev_size" 33554432 || rc=$?
  ((rc != 124)) || fail "dev_size write blocked for ${NL_WRITE_LIMIT}s" || return
  ((rc == 0)) || fail "dev_size write failed (exit $rc)" || return
  line=$(nl_wait_line "^event: reconfig " "$NL_OUT.stdout" 10) || fail "no RECONFIG event" || return
  echo "$line"
  [[ "$line" == "$want" ]] || fail "got '$line', want '$want'" || return
  [[ $(grep -cx "reply: ok $NL_ID" "$NL_OUT.stdout") == 2 ]] || fail "the RECONFIG answer was not accepted" || return
  [[ $(cat "$NL_DEV/attrib/dev_size") == 33554432 ]] || fail "attrib/dev_size is $(cat "$NL_DEV/attrib/dev_size")"
}

nl_removed() {
  nl_need_dev || return
  local rc=0 line want="event: removed $NL_UIO_NAME minor=$NL_MINOR id=$NL_ID" i
  nl_bounded "$NL_WRITE_LIMIT" rmdir "$NL_DEV" || rc=$?
  ((rc != 124)) || fail "rmdir blocked for ${NL_WRITE_LIMIT}s" || return
  ((rc == 0)) || fail "rmdir failed (exit $rc)" || return
  must "rmdir $NL_HBA" rmdir "$NL_HBA" || return
  line=$(nl_wait_line "^event: removed " "$NL_OUT.stdout" 10) || fail "no REMOVED event" || return
  echo "$line"
  [[ "$line" == "$want" ]] || fail "got '$line', want '$want'" || return
  [[ $(grep -cx "reply: ok $NL_ID" "$NL_OUT.stdout") == 3 ]] || fail "the REMOVED answer was not accepted" || return
  # Three events seen: the probe ends by itself.
  for ((i = 0; i < 100; i++)); do
    kill -0 "$NL_LISTEN_PID" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$NL_LISTEN_PID" 2> /dev/null; then
    fail "probe still running after its 3 events"
    return
  fi
  rc=0
  wait "$NL_LISTEN_PID" || rc=$?
  NL_LISTEN_PID=""
  cat "$NL_OUT.stdout"
  ((rc == 0)) || fail "probe exited $rc: $(stderr_tail "$NL_OUT.stderr")"
}

# With the flag cleared nothing waits: the probe's answer finds no pending
# wait, the kernel rejects it with ENODEV (and logs NL_UNAWAITED_LOG_RE).
nl_unawaited_reply() {
  local dev=$NL_HBA/nlnowait0 out pid line id rc=0 i
  out=$(nl_probe set-features 0 2>&1) || fail "set-features 0 failed: $out" || return
  echo "$out"
  "$NL_PROBE" listen --count 1 --timeout 60 > "$NL_OUT-nowait.stdout" 2> "$NL_OUT-nowait.stderr" &
  pid=$!
  NL_LISTEN_PID=$pid
  nl_wait_line '^listening$' "$NL_OUT-nowait.stdout" 10 > /dev/null ||
    fail "probe not listening after 10s: $(stderr_tail "$NL_OUT-nowait.stderr")" || return
  must "mkdir $dev" mkdir -p "$dev" || return
  nl_write "$dev/control" "dev_size=16777216,dev_config=nltest/nowait,hw_block_size=512" ||
    fail "writing control failed" || return
  nl_bounded "$NL_WRITE_LIMIT" nl_write "$dev/enable" 1 || rc=$?
  ((rc == 0)) || fail "enable failed or blocked (exit $rc)" || return
  line=$(nl_wait_line '^event: added ' "$NL_OUT-nowait.stdout" 10) || fail "no ADDED event" || return
  echo "$line"
  id=${line##*id=}
  line=$(nl_wait_line '^reply: ' "$NL_OUT-nowait.stdout" 10) || fail "no reply line" || return
  echo "$line"
  [[ "$line" == "reply: error $id the kernel rejected ADDED_DEVICE_DONE: No such device" ]] ||
    fail "want the answer rejected with ENODEV, got: $line" || return
  [[ $(cat "$dev/attrib/nl_reply_supported") == 0 ]] ||
    fail "attrib/nl_reply_supported is $(cat "$dev/attrib/nl_reply_supported"), want 0" || return
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  rc=0
  wait "$pid" || rc=$?
  NL_LISTEN_PID=""
  ((rc == 0)) || fail "probe exited $rc: $(stderr_tail "$NL_OUT-nowait.stderr")" || return
  rc=0
  nl_bounded "$NL_WRITE_LIMIT" rmdir "$dev" || rc=$?
  ((rc == 0)) || fail "rmdir failed or blocked (exit $rc)" || return
  must "rmdir $NL_HBA" rmdir "$NL_HBA" || return
  (($(klog_problems | grep -Ec "$NL_UNAWAITED_LOG_RE") > 0)) ||
    fail "the kernel did not log the unawaited answer"
}

# tcmu-serve with the reply flag set and no listener: it must neither hang
# in enable nor in rmdir.
nl_serve_no_hang() {
  local name=$1 out=$VM_RUN/tcmu-serve-$1 rc=0
  # serve_start reads it: bash locals are visible to callees.
  # shellcheck disable=SC2034
  local READY_TIMEOUT=20
  serve_start "$out" --backend mem --size 64MiB --export none --name "$name" || rc=1
  local pid=$SERVE_PID
  if ((rc == 0)); then
    [[ -d "$READY" ]] || fail "ready line names '$READY', not the backstore directory" || rc=1
  fi
  if ((rc == 0)); then
    [[ $(cat "$READY/attrib/nl_reply_supported") == -1 ]] ||
      fail "attrib/nl_reply_supported is $(cat "$READY/attrib/nl_reply_supported"), want -1" || rc=1
  fi
  if [[ -n "$pid" ]] && kill -0 "$pid" 2> /dev/null; then
    if ! serve_stop "$pid" TERM 20; then
      # Stuck in a netlink wait: free it so the suite can go on.
      nl_release
      kill -KILL "$pid" 2> /dev/null
      fail "tcmu-serve still running 20s after SIGTERM"
      return 1
    fi
    ((rc != 0)) && return 1
    ((SERVE_RC == 0)) || fail "exit status $SERVE_RC after SIGTERM: $(stderr_tail "$out.stderr")" || return
  fi
  ((rc == 0)) || return 1
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "configfs not clean: $(tr '\n' ' ' <<< "$left")"
}

nl_no_listener() {
  local out
  out=$(nl_probe set-features 1 2>&1) || fail "set-features 1 failed: $out" || return
  echo "$out"
  [[ -z "$(nl_listeners)" ]] || fail "a netlink listener is running: $(nl_listeners)" || return
  nl_serve_no_hang nlserve0
}

# The trap itself, so that the step above proves something: with the flag
# set and no listener, enable of a default device blocks; the module's
# escape hatch ends the wait with an error.
nl_trap_and_escape_hatch() {
  local dev=$NL_HBA/nltrap0 pid i rc=0 blocked=0
  [[ -z "$(nl_listeners)" ]] || fail "a netlink listener is running: $(nl_listeners)" || return
  must "mkdir $dev" mkdir -p "$dev" || return
  nl_write "$dev/control" "dev_size=16777216,dev_config=nltest/trap,hw_block_size=512" ||
    fail "writing control failed" || return
  echo "+ echo 1 > $dev/enable (background)"
  nl_write "$dev/enable" 1 &
  pid=$!
  sleep 3
  kill -0 "$pid" 2> /dev/null && blocked=1
  echo "enable blocked after 3s: $blocked"
  nl_release
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2> /dev/null; then
    fail "enable still blocked 10s after reset_netlink"
    return
  fi
  wait "$pid" || rc=$?
  echo "enable exited $rc"
  must "rmdir $dev" rmdir "$dev" || return
  must "rmdir $NL_HBA" rmdir "$NL_HBA" || return
  [[ $(cat "$NL_PARAMS/block_netlink") == unblocked ]] || fail "block_netlink left blocked" || return
  ((blocked == 1)) || fail "enable did not block: the trap did not reproduce" || return
  ((rc != 0)) || fail "enable succeeded after reset_netlink, want an error"
}

# A real tcmu-runner: it sets the flag at start-up and leaves it set.
nl_after_tcmu_runner() {
  local before after pid i rc=0
  command -v tcmu-runner > /dev/null || fail "tcmu-runner is not installed (harness packages: tcmu-runner dbus)" || return
  command -v dbus-daemon > /dev/null || fail "dbus-daemon is not installed (harness package: dbus)" || return
  must "set-features 0" "$NL_PROBE" set-features 0 || return
  mkdir -p /run/dbus /var/log
  if [[ ! -S /run/dbus/system_bus_socket ]]; then
    must "dbus-daemon --system" dbus-daemon --system --fork || return
  fi
  before=$(dmesg | grep -c 'tcmu daemon: command reply support 1')
  echo "+ tcmu-runner"
  tcmu-runner > "$VM_RUN/tcmu-runner.out" 2>&1 &
  pid=$!
  for ((i = 0; i < 200; i++)); do
    [[ -n "$(nl_listeners)" ]] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  [[ -n "$(nl_listeners)" ]] || rc=1
  kill -TERM "$pid" 2> /dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2> /dev/null && { kill -KILL "$pid"; fail "tcmu-runner still running 10s after SIGTERM"; return; }
  wait "$pid" || true
  cat "$VM_RUN/tcmu-runner.out"
  cp /var/log/tcmu-runner.log "$VM_RUN/" 2> /dev/null
  ((rc == 0)) || fail "tcmu-runner never joined the config group: $(stderr_tail "$VM_RUN/tcmu-runner.out")" || return
  after=$(dmesg | grep -c 'tcmu daemon: command reply support 1')
  ((after > before)) || fail "tcmu-runner did not send SET_FEATURES(1)" || return
  [[ -z "$(nl_listeners)" ]] || fail "a netlink listener is still running: $(nl_listeners)" || return
  nl_serve_no_hang nlrunner0
}

nl_cleanup() {
  local out
  if [[ -n "$NL_LISTEN_PID" ]]; then
    kill "$NL_LISTEN_PID" 2> /dev/null
    wait "$NL_LISTEN_PID" 2> /dev/null
    NL_LISTEN_PID=""
  fi
  [[ -f /run/dbus/pid ]] && kill "$(cat /run/dbus/pid)" 2> /dev/null && rm -f /run/dbus/pid /run/dbus/system_bus_socket
  if [[ -d "$NL_HBA" ]]; then
    find "$NL_HBA" -mindepth 1 -maxdepth 1 -type d -exec rmdir {} \; 2> /dev/null
    rmdir "$NL_HBA" 2> /dev/null
  fi
  # Later files start tcmu-serve with nl_reply_supported=-1, but other
  # tools they run might not: leave the module as it was at boot.
  out=$(nl_probe set-features 0 2>&1) || fail "set-features 0 failed: $out" || return
  echo "$out"
  [[ $(cat "$NL_PARAMS/block_netlink") == unblocked ]] || fail "block_netlink left blocked" || return
  [[ ! -e "$NL_HBA" ]] || fail "$NL_HBA left behind" || return
  [[ -z "$(nl_listeners)" ]] || fail "a netlink listener is still running: $(nl_listeners)"
}

# Kernel warnings since netlink_setup: only the expected ENODEV line.
nl_klog_clean() {
  local new unexpected
  new=$(klog_problems | tail -n +$((NL_KLOG_BASE + 1)))
  echo "$new"
  unexpected=$(grep -Ev "$NL_UNAWAITED_LOG_RE" <<< "$new")
  [[ -z "$unexpected" ]] ||
    fail "$(wc -l <<< "$unexpected") kernel warnings/errors, first: $(head -n 1 <<< "$unexpected")" || return
  # Keep the expected line out of later klog_clean steps, unless problems
  # of earlier files are still unreported.
  if ((NL_KLOG_BASE <= KLOG_BASE)); then
    # shellcheck disable=SC2034 # lib.sh's klog_clean reads it
    KLOG_BASE=$(klog_problems | wc -l)
  fi
}

step netlink_setup nl_setup
step netlink_added_replied nl_added
step netlink_reconfig_dev_size nl_reconfig_size
step netlink_removed_replied nl_removed
step netlink_unawaited_reply_rejected nl_unawaited_reply
step netlink_no_listener_serve_no_hang nl_no_listener
step netlink_trap_escape_hatch nl_trap_and_escape_hatch
step netlink_after_tcmu_runner_no_hang nl_after_tcmu_runner
step netlink_cleanup nl_cleanup
step netlink_kernel_log_clean nl_klog_clean
