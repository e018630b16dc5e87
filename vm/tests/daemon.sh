# shellcheck shell=bash
# Daemon mode and RECONFIG: one tcmu-serve process serves two devices added
# at run time through its control socket; one is removed while fio verifies
# on the other; the kernel's attribute changes (dev_size, emulate_write_cache,
# dev_config) reach the served LUN; SIGTERM removes everything.
# Sourced by vm/guest/suite inside the VM (helpers: vm/guest/lib.sh).

# Not under $VM_RUN: its 9p file system has no sockets.
DM_SOCK=/tmp/tcmu-serve-daemon.sock
DM_OUT=$VM_RUN/tcmu-serve-daemon
DM_IMG=/tmp/daemon-a.img
DM_PID=""
DM_A="" DM_B=""
DM_A_DIR=$CFS/core/user_0/dmnA

# dm_ctl REQUEST...: send a request to the daemon; its answer on stdout.
dm_ctl() {
  echo "+ tcmu-serve --control $DM_SOCK $*" >&2
  timeout 180 "$TCMU_SERVE" --control "$DM_SOCK" "$@"
}

dm_need() {
  [[ -n "$DM_PID" && -b "$DM_A" ]] || fail "skipped: the daemon or its first device is not up"
}

# dm_log_wait REGEX LIMIT: wait until the daemon's log has a matching line.
dm_log_wait() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -qE "$1" "$DM_OUT.stderr" && return 0
    sleep 0.1
  done
  fail "no log line /$1/ within $2 s: $(stderr_tail "$DM_OUT.stderr")"
}

# dm_attr_wait NAME VALUE LIMIT: wait until attrib/NAME of device A reads VALUE.
dm_attr_wait() {
  local i v
  for ((i = 0; i < $3 * 10; i++)); do
    v=$(cat "$DM_A_DIR/attrib/$1")
    [[ "$v" == "$2" ]] && return 0
    sleep 0.1
  done
  fail "attrib/$1 is '$v', want '$2'"
}

dm_start() {
  rm -f "$DM_IMG"
  RUST_LOG=info serve_start "$DM_OUT" --control "$DM_SOCK" || return
  DM_PID=$SERVE_PID
  [[ "$READY" == "$DM_SOCK" ]] || fail "ready line names '$READY', want the socket $DM_SOCK" || return
  [[ -S "$DM_SOCK" ]] || fail "no socket at $DM_SOCK" || return
  [[ "$(stat -c %a "$DM_SOCK")" == 600 ]] || fail "socket mode $(stat -c %a "$DM_SOCK"), want 600"
}

dm_add_two() {
  [[ -n "$DM_PID" ]] || fail "skipped: no daemon" || return
  local out
  out=$(dm_ctl add --backend "file:$DM_IMG" --create --size 256MiB --name dmnA) ||
    fail "add dmnA failed: $out" || return
  echo "$out"
  DM_A=${out#ready: }
  out=$(dm_ctl add --backend mem --size 128MiB --name dmnB) || fail "add dmnB failed: $out" || return
  echo "$out"
  DM_B=${out#ready: }
  [[ -b "$DM_A" && -b "$DM_B" && "$DM_A" != "$DM_B" ]] ||
    fail "want two disks, got '$DM_A' and '$DM_B'" || return
  [[ "$(blockdev --getsize64 "$DM_B")" == $((128 << 20)) ]] || fail "dmnB has the wrong size" || return
  out=$(dm_ctl list) || fail "list failed" || return
  echo "$out"
  { grep -qx "dmnA $DM_A" <<< "$out" && grep -qx "dmnB $DM_B" <<< "$out"; } ||
    fail "list does not show both devices: $out"
}

dm_bad_requests() {
  [[ -n "$DM_PID" ]] || fail "skipped: no daemon" || return
  local out rc=0
  out=$(dm_ctl add --backend mem --size 64MiB --name dmnA 2>&1) && rc=0 || rc=$?
  echo "$out"
  ((rc == 1)) && grep -q 'already served' <<< "$out" || fail "a second dmnA was not refused: $out" || return
  out=$(dm_ctl remove nosuch 2>&1) && rc=0 || rc=$?
  ((rc == 1)) && grep -q 'no device named' <<< "$out" || fail "removing an unknown device: $out" || return
  out=$(dm_ctl add --backend mem --size 64MiB --block-size 777 2>&1) && rc=0 || rc=$?
  ((rc == 1)) && grep -q 'invalid block size' <<< "$out" || fail "a bad add was not refused: $out" || return
  # Nothing was left behind by the refused adds.
  out=$(dm_ctl list)
  [[ "$(wc -l <<< "$out")" == 2 ]] || fail "list after refused adds: $out"
}

dm_remove_during_fio() {
  [[ -b "$DM_A" && -b "$DM_B" ]] || fail "skipped: no devices" || return
  local fio_out=$VM_RUN/fio-daemon.txt rc=0 out
  "${FIO_VERIFY[@]}" --name=daemon --filename="$DM_A" --iodepth=16 --size=48M --output="$fio_out" &
  local fio_pid=$!
  sleep 2
  kill -0 "$fio_pid" 2> /dev/null || fail "fio ended before the removal (too fast to test)" || return
  out=$(dm_ctl remove dmnB) || { kill "$fio_pid"; fail "remove dmnB failed: $out"; return; }
  [[ "$out" == "removed: dmnB" ]] || fail "remove answered '$out'" || return
  kill -0 "$fio_pid" 2> /dev/null || fail "fio on dmnA ended while dmnB was removed" || return
  wait_gone "$DM_B" 10 || fail "$DM_B still exists after remove" || return
  [[ ! -e "$CFS/core/user_0/dmnB" ]] || fail "backstore dmnB left in configfs" || return
  timeout 600 tail --pid="$fio_pid" -f /dev/null || fail "fio still running after 600 s" || return
  wait "$fio_pid" || rc=$?
  cat "$fio_out"
  ((rc == 0)) || fail "fio on dmnA exited $rc" || return
  ! grep -qiE 'verify: bad|crc32c: verify failed|err= *[1-9]' "$fio_out" || fail "fio reported errors" || return
  out=$(dm_ctl list)
  [[ "$out" == "dmnA $DM_A" ]] || fail "list after remove: $out" || return
  klog_clean
}

dm_tmr_notification() {
  dm_need || return
  [[ "$(cat "$DM_A_DIR/attrib/tmr_notification")" == 1 ]] || fail "tmr_notification is not 1"
}

dm_resize() {
  dm_need || return
  local out new=$((512 << 20))
  must "write dev_size" sh -c "echo $new > $DM_A_DIR/attrib/dev_size" || return
  dm_log_wait "size now $new bytes" 10 || return
  # The first command afterwards reports the change.
  if out=$(timeout 60 sg_turs -v "$DM_A" 2>&1); then
    fail "TEST UNIT READY did not report the change: $out"
    return
  fi
  echo "$out"
  grep -qi 'capacity data has changed' <<< "$out" || fail "no CAPACITY DATA HAS CHANGED: $out" || return
  must "TEST UNIT READY after the attention" timeout 60 sg_turs "$DM_A" || return
  out=$(timeout 60 sg_readcap "$DM_A" 2>&1) || fail "sg_readcap failed: $out" || return
  echo "$out"
  grep -q "Last LBA=$((new / 512 - 1)) " <<< "$out" || fail "READ CAPACITY does not show the new size" || return
  [[ "$(stat -c %s "$DM_IMG")" == "$new" ]] || fail "the image file was not grown" || return
  echo 1 > "/sys/block/${DM_A#/dev/}/device/rescan"
  [[ "$(blockdev --getsize64 "$DM_A")" == "$new" ]] || fail "the disk did not grow after a rescan" || return
  # The SCSI layer logs the attention as a warning when one of its own
  # commands meets it, which may be now or only when the disk goes away:
  # expected from here on, whenever it comes.
  KLOG_EXPECTED='Capacity data has changed'
}

dm_resize_refused() {
  dm_need || return
  local before
  before=$(cat "$DM_A_DIR/attrib/dev_size")
  # Not a whole number of blocks: refused, and the old size is written back.
  must "write dev_size 1000" sh -c "echo 1000 > $DM_A_DIR/attrib/dev_size" || return
  dm_log_wait 'refused dev_size 1000: not a whole' 10 || return
  dm_attr_wait dev_size "$before" 10 || return
  must "TEST UNIT READY" timeout 60 sg_turs "$DM_A"
}

# Caching page byte 2 (current) through MODE SENSE(6) with DBD: 04 = WCE.
dm_wce_byte() {
  timeout 60 sg_raw -b -r 64 "$DM_A" 1a 08 08 00 40 00 2> /dev/null | od -An -tx1 -v | tr -s ' \n' ' ' |
    awk '{ print $7 }'
}

dm_write_cache() {
  dm_need || return
  local b
  b=$(dm_wce_byte)
  [[ "$b" == 04 ]] || fail "WCE byte is '$b' before, want 04" || return
  must "emulate_write_cache=0" sh -c "echo 0 > $DM_A_DIR/attrib/emulate_write_cache" || return
  dm_log_wait 'write cache off' 10 || return
  b=$(dm_wce_byte)
  [[ "$b" == 00 ]] || fail "WCE byte is '$b' after emulate_write_cache=0" || return
  must "emulate_write_cache=1" sh -c "echo 1 > $DM_A_DIR/attrib/emulate_write_cache" || return
  dm_log_wait 'write cache on' 10 || return
  b=$(dm_wce_byte)
  [[ "$b" == 04 ]] || fail "WCE byte is '$b' after emulate_write_cache=1"
}

dm_dev_config_refused() {
  dm_need || return
  local before
  before=$(cat "$DM_A_DIR/attrib/dev_config")
  [[ "$before" == tcmu-rs/file ]] || fail "dev_config is '$before'" || return
  must "write dev_config" sh -c "echo -n tcmu-rs/other > $DM_A_DIR/attrib/dev_config" || return
  dm_log_wait 'refused dev_config "tcmu-rs/other"' 10 || return
  dm_attr_wait dev_config "$before" 10 || return
  must "TEST UNIT READY" timeout 60 sg_turs "$DM_A"
}

dm_stop() {
  [[ -n "$DM_PID" ]] || fail "skipped: no daemon" || return
  serve_stop "$DM_PID" TERM 60 || fail "the daemon still runs 60 s after SIGTERM" || return
  ((SERVE_RC == 0)) || fail "the daemon exited $SERVE_RC: $(stderr_tail "$DM_OUT.stderr")" || return
  [[ ! -e "$DM_SOCK" ]] || fail "socket left behind" || return
  [[ -z "$DM_A" ]] || wait_gone "$DM_A" 10 || fail "$DM_A still exists" || return
  local left
  left=$(cfs_leftovers)
  [[ -z "$left" ]] || fail "left in configfs: $left" || return
  rm -f "$DM_IMG"
  klog_clean
}

step daemon_start dm_start
step daemon_add_two_devices dm_add_two
step daemon_bad_requests_refused dm_bad_requests
step daemon_remove_one_while_fio_runs_on_the_other dm_remove_during_fio
step daemon_tmr_notification_on dm_tmr_notification
step reconfig_dev_size_resizes dm_resize
step reconfig_bad_dev_size_restored dm_resize_refused
step reconfig_write_cache dm_write_cache
step reconfig_dev_config_restored dm_dev_config_refused
step daemon_sigterm_removes_all dm_stop
# The resize's attention is no longer expected; a late report of it is
# already in the log, so the next file's check starts after it.
KLOG_EXPECTED=""
klog_mark
